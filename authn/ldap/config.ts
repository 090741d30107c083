import { z } from 'zod';

const ATTRIBUTE = /^[A-Za-z][A-Za-z0-9-]{0,63}$/;

/** Settings of an `ldap` authentication step (the registry adds `type`, `id`, `on_error`, `timeout_ms`, `when`). */
export const ldapSettingsSchema = z
  .object({
    url: z
      .string()
      // No user info: the URL names the step's circuit breaker in logs and `authn.backend_*` audit records, and
      // the bind identity belongs in `service_account` (whose password is read from a file and kept secret).
      .regex(/^ldaps?:\/\/[^/\s@]+\/?$/, 'ldap://host[:port] or ldaps://host[:port]')
      .describe('Directory URL: `ldaps://host:636`, or `ldap://host:389` with `start_tls: true`.'),
    start_tls: z
      .boolean()
      .default(false)
      .describe('Upgrade an `ldap://` connection with StartTLS before binding; a failed upgrade is an error.'),
    allow_plaintext: z
      .boolean()
      .default(false)
      .describe(
        'Permit `ldap://` without StartTLS (passwords cross the network in clear). Only for loopback test setups.',
      ),
    tls: z
      .object({
        ca_file: z
          .string()
          .optional()
          .describe('PEM CA bundle that signed the directory certificate; system CAs when unset.'),
        server_name: z
          .string()
          .optional()
          .describe('Name to verify the directory certificate against, when it differs from the URL host.'),
      })
      .strict()
      .prefault({})
      .describe('Certificate verification for ldaps:// and StartTLS. Verification cannot be switched off.'),
    connect_timeout_ms: z
      .number()
      .int()
      .min(100)
      .max(60_000)
      .default(3_000)
      .describe('TCP connect and TLS handshake deadline (LDAPS, the whole StartTLS upgrade).'),
    operation_timeout_ms: z
      .number()
      .int()
      .min(100)
      .max(60_000)
      .default(3_000)
      .describe('Deadline per LDAP operation (bind, search); a stalled directory then counts as a backend failure.'),
    pool: z
      .object({
        max_connections: z
          .number()
          .int()
          .min(1)
          .max(256)
          .default(4)
          .describe('Connections for user binds, and again for service-account searches.'),
        max_waiters: z
          .number()
          .int()
          .min(0)
          .max(100_000)
          .default(1_000)
          .describe(
            'Authentications allowed to wait for a connection; beyond it they fail at once (serverUnavailable).',
          ),
      })
      .strict()
      .prefault({}),
    user_dn_template: z
      .string()
      .refine((t) => t.includes('${username}'), 'must contain ${username}')
      .optional()
      .describe(
        'Bind mode: the user DN, e.g. `uid=${username},ou=people,dc=example,dc=com`; `${username}`/`${clientid}` are RFC 4514-escaped.',
      ),
    search: z
      .object({
        base_dn: z.string().min(1).describe('Where users live.'),
        filter: z
          .string()
          .default('(&(objectClass=inetOrgPerson)(uid=${username}))')
          .describe('RFC 4515 filter; `${username}`/`${clientid}` are escaped (`*`, `(`, `)`, `\\`, NUL).'),
        scope: z.enum(['one', 'sub']).default('sub').describe('Search scope under base_dn.'),
      })
      .strict()
      .optional()
      .describe(
        'Search-then-bind mode: find the user with the service account, then bind as them. Exactly one of user_dn_template and search.',
      ),
    service_account: z
      .object({
        dn: z.string().min(1).describe('Service account DN (read-only rights on users and groups).'),
        password: z.string().min(1).optional().describe('Its password. Prefer `password_file`.'),
        password_file: z.string().optional().describe('File holding the password (trailing newline ignored).'),
      })
      .strict()
      .refine(
        (s) => (s.password === undefined) !== (s.password_file === undefined),
        'set exactly one of password and password_file',
      )
      .optional()
      .describe('Required for `search`; when set in bind mode, groups are read with it instead of the user.'),
    user_not_found: z
      .enum(['deny', 'ignore'])
      .default('deny')
      .describe('Search mode, user absent: `deny` (badUserNameOrPassword) or `ignore` (the next step decides).'),
    groups: z
      .object({
        base_dn: z.string().min(1).describe('Where groups live.'),
        schemas: z
          .array(z.enum(['groupOfNames', 'groupOfUniqueNames', 'posixGroup', 'memberOf']))
          .min(1)
          .default(['groupOfNames'])
          .describe(
            'Membership schemas to read: groupOfNames/member, groupOfUniqueNames/uniqueMember, posixGroup/memberUid, memberOf on the user.',
          ),
        name_attribute: z.string().regex(ATTRIBUTE).default('cn').describe('Attribute naming a group.'),
        filter: z
          .string()
          .optional()
          .describe(
            'Custom group filter replacing the schema filters; `${dn}`, `${username}`, `${clientid}` are escaped.',
          ),
        max_groups: z.number().int().min(1).max(10_000).default(256).describe('Upper bound on groups read per user.'),
      })
      .strict()
      .optional()
      .describe('Group membership copied into the identity (`groups`), for policies.'),
    attributes: z
      .array(z.string().regex(ATTRIBUTE))
      .max(32)
      .default([])
      .describe('User attributes copied to the identity as `ldap.<attribute>` (first value).'),
    superuser_group: z.string().optional().describe('Group name whose members are superusers.'),
    cache: z
      .object({
        max_entries: z
          .number()
          .int()
          .min(0)
          .max(1_000_000)
          .default(10_000)
          .describe('Bound on cached binds and cached group lists (each).'),
        bind_ttl_ms: z
          .number()
          .int()
          .min(0)
          .max(86_400_000)
          .default(60_000)
          .describe(
            'How long a successful bind is reused; a removed or disabled user is refused after at most this long. 0 disables.',
          ),
        group_ttl_ms: z
          .number()
          .int()
          .min(0)
          .max(86_400_000)
          .default(60_000)
          .describe('How long a group lookup is reused.'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type LdapSettings = z.output<typeof ldapSettingsSchema>;

/**
 * Directory attributes that hold passwords, password hashes or private keys (OpenLDAP, 389-DS, Active Directory,
 * Samba, Kerberos). LDAP attribute names are case-insensitive.
 */
const CREDENTIAL_ATTRIBUTES: ReadonlySet<string> = new Set([
  'userpassword',
  'authpassword',
  'unicodepwd',
  'dbcspwd',
  'ntpwdhistory',
  'lmpwdhistory',
  'supplementalcredentials',
  'sambantpassword',
  'sambalmpassword',
  'sambapasswordhistory',
  'userpkcs12',
  'krbprincipalkey',
  'krbextradata',
  'olcrootpw',
]);

/**
 * Cross-field rules, kept out of the schema so the registry can `.extend()` it (zod refuses to extend refined
 * objects). Returns one problem per broken rule, as `key: message`.
 */
export function ldapSettingsProblems(s: LdapSettings): string[] {
  const problems: string[] = [];
  for (const name of s.attributes) {
    if (CREDENTIAL_ATTRIBUTES.has(name.toLowerCase()))
      problems.push(
        `attributes: ${name} holds credentials; copied into the identity it would reach policies, their ` +
          'explanations (`policy explain` prints attribute values) and the wills kept in the store',
      );
  }
  if ((s.user_dn_template === undefined) === (s.search === undefined)) {
    problems.push('search: set exactly one of user_dn_template and search');
  }
  if (s.search && !s.service_account) problems.push('service_account: search needs service_account');
  if (s.url.startsWith('ldaps:') && s.start_tls) problems.push('start_tls: start_tls is for ldap:// URLs');
  if (s.url.startsWith('ldap:') && !s.start_tls && !s.allow_plaintext) {
    problems.push(
      'url: ldap:// without start_tls sends passwords in clear; use ldaps://, start_tls: true, or allow_plaintext: true',
    );
  }
  return problems;
}
