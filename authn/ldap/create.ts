import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { BulwarkError } from '../../src/errors.js';
import { Secret } from '../secret.js';
import { LdapAuthenticator, type LdapAuthenticatorOptions } from './authenticator.js';
import { ldapSettingsProblems, type LdapSettings } from './config.js';

function readConfigFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new BulwarkError(
      'BULWARK_ERR_CONFIG_INVALID',
      `ldap: cannot read ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}

/** Maps validated settings to the authenticator. Relative paths resolve against `baseDir`. */
export function ldapOptionsFromSettings(
  settings: LdapSettings,
  id: string,
  baseDir: string,
  extra: Pick<LdapAuthenticatorOptions, 'breaker' | 'now'> = {},
): LdapAuthenticatorOptions {
  const problems = ldapSettingsProblems(settings);
  if (problems.length > 0) {
    throw new BulwarkError('BULWARK_ERR_CONFIG_INVALID', `ldap step "${id}": ${problems.join('; ')}`);
  }
  const tls = {
    ...(settings.tls.ca_file !== undefined
      ? { ca: readConfigFile(resolve(baseDir, settings.tls.ca_file), 'tls.ca_file') }
      : {}),
    ...(settings.tls.server_name !== undefined ? { servername: settings.tls.server_name } : {}),
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2' as const,
  };
  const sa = settings.service_account;
  const service = sa
    ? {
        dn: sa.dn,
        password: new Secret(
          sa.password_file !== undefined
            ? readConfigFile(resolve(baseDir, sa.password_file), 'service_account.password_file')
                .toString('utf8')
                .replace(/\r?\n$/, '')
            : (sa.password ?? ''),
        ),
      }
    : undefined;
  const search = settings.search;
  return {
    id,
    connection: {
      url: settings.url,
      startTls: settings.start_tls,
      tls,
      connectTimeoutMs: settings.connect_timeout_ms,
      operationTimeoutMs: settings.operation_timeout_ms,
    },
    pool: { maxConnections: settings.pool.max_connections, maxWaiters: settings.pool.max_waiters },
    lookup: search
      ? { kind: 'search', baseDn: search.base_dn, filter: search.filter, scope: search.scope }
      : { kind: 'bind', dnTemplate: settings.user_dn_template ?? '' },
    ...(service ? { service } : {}),
    userNotFound: settings.user_not_found,
    ...(settings.groups
      ? {
          groups: {
            baseDn: settings.groups.base_dn,
            schemas: settings.groups.schemas,
            nameAttribute: settings.groups.name_attribute,
            filter: settings.groups.filter,
            maxGroups: settings.groups.max_groups,
          },
        }
      : {}),
    attributes: settings.attributes,
    ...(settings.superuser_group !== undefined ? { superuserGroup: settings.superuser_group } : {}),
    cache: {
      maxEntries: settings.cache.max_entries,
      bindTtlMs: settings.cache.bind_ttl_ms,
      groupTtlMs: settings.cache.group_ttl_ms,
    },
    ...extra,
  };
}

export function createLdapAuthenticator(
  settings: LdapSettings,
  id: string,
  baseDir: string,
  extra: Pick<LdapAuthenticatorOptions, 'breaker' | 'now'> = {},
): LdapAuthenticator {
  return new LdapAuthenticator(ldapOptionsFromSettings(settings, id, baseDir, extra));
}
