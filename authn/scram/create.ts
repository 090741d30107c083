import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { BulwarkError } from '../../src/errors.js';
import { ScramAuthenticator } from './authenticator.js';
import type { ScramSettings } from './config.js';
import type { ScramCredentialStore } from './credential-store.js';
import { ScramCredentialFile } from './file-store.js';
import { createMysqlScramStore, createPostgresScramStore } from './sql-store.js';
import { dataDirUnknownUserSecret, UNKNOWN_USER_SECRET_BYTES } from './unknown-user-secret.js';

function readSecretFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new BulwarkError(
      'BULWARK_ERR_CONFIG_INVALID',
      `cannot read ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}

/** Builds the store described by the settings. Relative paths resolve against `baseDir`. */
export function createScramStore(
  settings: ScramSettings,
  baseDir: string,
  wrap?: <T>(task: () => Promise<T>) => Promise<T>,
): ScramCredentialStore {
  const store = settings.store;
  if (store.type === 'file') return new ScramCredentialFile(resolve(baseDir, store.path), settings.min_iterations);
  let password = store.password ?? '';
  if (store.password_file !== undefined) {
    password = readSecretFile(resolve(baseDir, store.password_file), 'SCRAM store password_file')
      .toString('utf8')
      .replace(/\r?\n$/, '');
  }
  const options = {
    host: store.host,
    port: store.port,
    user: store.user,
    password,
    database: store.database,
    maxConnections: store.max_connections,
    queryTimeoutMs: store.query_timeout_ms,
    minIterations: settings.min_iterations,
    ...(store.ca_file !== undefined
      ? { ca: readSecretFile(resolve(baseDir, store.ca_file), 'CA file').toString('utf8') }
      : {}),
    ...(store.statement !== undefined ? { statement: store.statement } : {}),
    ...(wrap ? { wrap } : {}),
  };
  return store.type === 'postgres' ? createPostgresScramStore(options) : createMysqlScramStore(options);
}

/** What tells one store's users from another's: the credential file, or the database and its statement. */
function storeIdentity(settings: ScramSettings, baseDir: string): string {
  const store = settings.store;
  if (store.type === 'file') return `file\0${resolve(baseDir, store.path)}`;
  return `${store.type}\0${store.user}@${store.host}:${store.port}/${store.database}\0${store.statement ?? ''}`;
}

/**
 * The data directory's one secret, made particular to a store. Every SCRAM step of the broker reads the same file;
 * with its bytes as they are, a name unknown to two steps' stores would get the same fake salt from both, while a
 * name real in one of them gets two different salts: comparing the steps (two listeners) would tell them apart.
 * Steps on the same store still agree, as their real users do.
 */
function perStoreSecret(secret: Buffer, identity: string): Buffer {
  return createHmac('sha512', secret).update(`bulwark scram unknown-user store\0${identity}`).digest();
}

/**
 * `dataDir`: where the unknown-user secret is kept when `unknown_user_secret_file` is not set; without one (an
 * embedding with no data directory) the secret is random per process.
 */
export function createScramAuthenticator(
  settings: ScramSettings,
  id: string,
  baseDir: string,
  wrap?: <T>(task: () => Promise<T>) => Promise<T>,
  dataDir?: string,
): ScramAuthenticator {
  let unknownUserSecret: Buffer | undefined;
  if (settings.unknown_user_secret_file !== undefined) {
    unknownUserSecret = readSecretFile(resolve(baseDir, settings.unknown_user_secret_file), 'unknown_user_secret_file');
    if (unknownUserSecret.length < UNKNOWN_USER_SECRET_BYTES) {
      throw new BulwarkError(
        'BULWARK_ERR_CONFIG_INVALID',
        `unknown_user_secret_file must hold at least ${UNKNOWN_USER_SECRET_BYTES} bytes`,
      );
    }
  } else if (dataDir !== undefined) {
    unknownUserSecret = perStoreSecret(dataDirUnknownUserSecret(dataDir), storeIdentity(settings, baseDir));
  }
  return new ScramAuthenticator({
    id,
    store: createScramStore(settings, baseDir, wrap),
    mechanisms: settings.mechanisms,
    minIterations: settings.min_iterations,
    ...(settings.unknown_user_iterations !== undefined
      ? { unknownUserIterations: settings.unknown_user_iterations }
      : {}),
    ...(unknownUserSecret ? { unknownUserSecret } : {}),
  });
}
