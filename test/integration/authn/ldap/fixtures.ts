import { readFileSync } from 'node:fs';
import { Client } from 'ldapts';
import { inject } from 'vitest';
import { LdapAuthenticator, type LdapAuthenticatorOptions } from '../../../../authn/ldap/authenticator.js';
import { Secret } from '../../../../authn/secret.js';
import type { ConnectAttempt } from '../../../../authn/types.js';
import { SLAPD_SEED } from '../../../helpers/services/slapd.js';
import type { LdapServiceInfo } from '../../../helpers/services/types.js';

const provided = inject('slapd');
export const slapd: LdapServiceInfo | undefined = 'missing' in provided ? undefined : provided;
if ('missing' in provided) console.warn(`[skip] ${provided.missing}`);

export { SLAPD_SEED };

/** A bind-mode authenticator on plain LDAP, with overrides. Timeouts are short so failure tests are quick. */
export function ldapOptions(overrides: Partial<LdapAuthenticatorOptions> = {}): LdapAuthenticatorOptions {
  const info = slapd;
  if (!info) throw new Error('slapd missing');
  return {
    id: 'ldap',
    connection: { url: info.url, startTls: false, tls: {}, connectTimeoutMs: 1000, operationTimeoutMs: 1000 },
    pool: { maxConnections: 2, maxWaiters: 100 },
    lookup: { kind: 'bind', dnTemplate: SLAPD_SEED.userDnTemplate },
    userNotFound: 'deny',
    attributes: [],
    cache: { maxEntries: 100, bindTtlMs: 0, groupTtlMs: 0 },
    ...overrides,
  };
}

export const service = {
  dn: SLAPD_SEED.service.dn,
  password: new Secret(SLAPD_SEED.service.password),
};

export const searchLookup = {
  kind: 'search' as const,
  baseDn: SLAPD_SEED.peopleDn,
  filter: '(&(objectClass=inetOrgPerson)(uid=${username}))',
  scope: 'sub' as const,
};

export function caPem(): Buffer {
  return readFileSync(slapd?.caFile ?? '');
}

export function login(username: string | undefined, password: string | undefined, clientId = 'c1'): ConnectAttempt {
  return {
    listener: 'test',
    clientId,
    username,
    password: password === undefined ? undefined : new Secret(password),
    protocolVersion: 5,
    peer: { address: '127.0.0.1', port: 40000 },
    tls: undefined,
    authMethod: undefined,
    authData: undefined,
  };
}

export const deadline = (ms = 5000): AbortSignal => AbortSignal.timeout(ms);

/** Tracks authenticators so each test file closes its pools. */
export const made: LdapAuthenticator[] = [];
export function make(overrides: Partial<LdapAuthenticatorOptions> = {}): LdapAuthenticator {
  const a = new LdapAuthenticator(ldapOptions(overrides));
  made.push(a);
  return a;
}

/** Directory administration as the rootdn, for tests that add and remove users. */
export async function asRoot<T>(task: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ url: slapd?.url ?? '', timeout: 5000 });
  try {
    await client.bind(slapd?.bindDn ?? '', slapd?.bindPassword ?? '');
    return await task(client);
  } finally {
    await client.unbind().catch(() => undefined);
  }
}
