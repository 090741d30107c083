import { z } from 'zod';
import { breakerFailureThreshold, breakerResetMs } from '../authn/registry.js';
import { databaseTlsSchema } from '../authn/sql/config.js';
import { compileQuery } from './sources/sql.js';

const onError = z
  .enum(['deny', 'next'])
  .default('deny')
  .describe('When the source throws or times out: `deny` (fail closed) or `next` (ask the next source).');

const fileSource = z
  .object({
    type: z.literal('file').describe('The policy files listed in `policy_files`.'),
    id: z.string().min(1).default('file').describe('Name of the source in decisions and audit records.'),
    on_error: onError,
  })
  .strict();

const jwtSource = z
  .object({
    type: z.literal('jwt').describe("ACL rules carried in the client's JWT (identity.aclRules), policy-file grammar."),
    id: z.string().min(1).default('jwt').describe('Name of the source in decisions and audit records.'),
    on_error: onError.describe('When the claim does not parse: `deny` (fail closed) or `next`.'),
  })
  .strict();

const sqlShape = (type: 'postgres' | 'mysql', defaultPort: number) => ({
  type: z.literal(type).describe(type === 'postgres' ? 'PostgreSQL ACL table.' : 'MySQL or MariaDB ACL table.'),
  id: z.string().min(1).default(type).describe('Name of the source in decisions and audit records.'),
  host: z.string().min(1).default('127.0.0.1').describe('Database host.'),
  port: z.number().int().min(1).max(65_535).default(defaultPort).describe('Database port.'),
  database: z.string().min(1).describe('Database name.'),
  user: z.string().min(1).describe('Database user (give it SELECT on the ACL table only).'),
  password_file: z
    .string()
    .optional()
    .describe('File holding the database password (first line). Preferred over `password`, which sits in the config.'),
  password: z.string().optional().describe('Database password inline; prefer `password_file`.'),
  pool_size: z.number().int().min(1).max(256).default(4).describe('Connections kept open.'),
  tls: databaseTlsSchema.optional().describe('Connect over TLS.'),
  query: z
    .string()
    .min(1)
    // The same check as at start, so that `bulwark config check` names the query's line.
    .superRefine((query, ctx) => {
      const compiled = compileQuery(query, 'postgres');
      if (!compiled.ok) ctx.addIssue({ code: 'custom', message: compiled.message });
    })
    .describe(
      'Parameterised query with ${username}, ${clientid}, ${peerhost} (sent as parameters, never spliced). Returns rows with permission (allow|deny), action (connect; or publish|subscribe|receive|all, or a comma list of these), topic (policy-file filter grammar, placeholders allowed; ignored for connect rows), and optionally qos (0-2 or a comma list) and retain (boolean). `all` does not include connect.',
    ),
  cache_ttl_ms: z
    .number()
    .int()
    .min(0)
    .max(86_400_000)
    .default(30_000)
    .describe('How long fetched rows answer checks without asking the database again; 0 asks every time.'),
  cache_max_entries: z
    .number()
    .int()
    .min(1)
    .max(10_000_000)
    .default(10_000)
    .describe('Bound on cached (username, client id, peer address) row sets.'),
  timeout_ms: z
    .number()
    .int()
    .min(1)
    .max(60_000)
    .default(2_000)
    .describe('Deadline for one lookup; on expiry `on_error` applies.'),
  breaker_failure_threshold: breakerFailureThreshold.describe(
    'Consecutive failed lookups (unreachable, timed out, refused login, server error) after which the source fails fast: lookups are not sent, `on_error` applies at once, and `authz.source_unavailable` is audited once.',
  ),
  breaker_reset_ms: breakerResetMs.describe(
    'How long the source fails fast before one probe lookup; its success closes the breaker (`authz.source_recovered`), its failure starts another period.',
  ),
  on_error: onError.describe(
    'When the database is unreachable, fails or times out, or a row is malformed: `deny` (fail closed) or `next` (ask the next source). A client id or user name the table cannot hold is not a failure: it denies, whatever this says.',
  ),
});

export const authzSourceSchema = z.discriminatedUnion('type', [
  fileSource,
  jwtSource,
  z.object(sqlShape('postgres', 5432)).strict(),
  z.object(sqlShape('mysql', 3306)).strict(),
]);

export const authorizationConfigSchema = z
  .object({
    policy_files: z
      .array(z.string().min(1))
      .default([])
      .describe(
        'Policy files, evaluated together as one policy in this order. Each file may have a `*.cases.yaml` sibling. Empty: the shipped policies/default.policy.yaml (local mode).',
      ),
    sources: z
      .array(authzSourceSchema)
      .min(1)
      .default([{ type: 'file', id: 'file', on_error: 'deny' }])
      .describe('Sources consulted in order; the first allow or deny wins; no answer means deny.'),
    watch: z.boolean().default(true).describe('Reload the policy when a policy or cases file changes.'),
    reload_debounce_ms: z
      .number()
      .int()
      .min(0)
      .max(60_000)
      .default(250)
      .describe('Quiet period after the last file change before reloading.'),
    run_cases_on_reload: z
      .boolean()
      .default(true)
      .describe("Run the files' own cases before swapping a new policy in; a failing case rejects the reload."),
    cache_max_entries: z
      .number()
      .int()
      .min(0)
      .max(10_000_000)
      .default(100_000)
      .describe('Bound on cached decisions across all clients; 0 disables the decision cache.'),
  })
  .strict()
  .describe('Authorization: policy files, SQL and JWT sources, decision cache and reload.');

export type AuthorizationConfig = z.output<typeof authorizationConfigSchema>;
export type AuthzSourceConfig = z.output<typeof authzSourceSchema>;
