import { isClientInputError } from '../../src/sql-client-input-error.js';
import { mysqlDriver, pgDriver } from '../../src/sql-drivers.js';
import type { ScramCredentialStore } from './credential-store.js';
import { decodeScramCredential } from './credential-format.js';
import {
  isScramMechanism,
  mechanismParams,
  MIN_ITERATIONS,
  type ScramCredential,
  type ScramMechanism,
} from './mechanism.js';

/** Runs one parameterised statement; values travel as parameters, never spliced into the SQL text. */
export type SqlQuery = (statement: string, params: readonly string[]) => Promise<readonly Record<string, unknown>[]>;

export const DEFAULT_POSTGRES_STATEMENT =
  'SELECT salt, iterations, stored_key, server_key FROM mqtt_scram_credentials WHERE username = $1 AND mechanism = $2';
export const DEFAULT_MYSQL_STATEMENT =
  'SELECT salt, iterations, stored_key, server_key FROM mqtt_scram_credentials WHERE username = ? AND mechanism = ?';

function bytes(value: unknown): Buffer | undefined {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (typeof value === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(value)) return Buffer.from(value, 'base64');
  return undefined;
}

/**
 * Turns a row into a credential. Accepts either one `credential` column in the file's text layout, or the
 * columns `salt`, `iterations`, `stored_key`, `server_key` (bytea/BLOB or base64 text). A row that does not
 * decode is a misconfiguration and throws (the chain reports serverUnavailable), rather than passing as "no user".
 */
export function credentialFromRow(
  row: Record<string, unknown>,
  mechanism: ScramMechanism,
  minIterations: number,
): ScramCredential {
  if (typeof row.credential === 'string') {
    const decoded = decodeScramCredential(row.credential, minIterations);
    if (!decoded.ok) throw new Error(`SCRAM credential row does not decode: ${decoded.error}`);
    if (decoded.credential.mechanism !== mechanism) throw new Error('SCRAM credential row has the wrong mechanism');
    return decoded.credential;
  }
  const salt = bytes(row.salt);
  const storedKey = bytes(row.stored_key);
  const serverKey = bytes(row.server_key);
  const iterations = typeof row.iterations === 'string' ? Number(row.iterations) : row.iterations;
  const { length } = mechanismParams(mechanism);
  if (!salt || salt.length < 8 || storedKey?.length !== length || serverKey?.length !== length) {
    throw new Error('SCRAM credential row needs salt (>= 8 bytes), stored_key and server_key of the hash length');
  }
  if (typeof iterations !== 'number' || !Number.isInteger(iterations) || iterations < minIterations) {
    throw new Error(`SCRAM credential row has an iteration count below ${minIterations}`);
  }
  return { mechanism, salt, iterations, storedKey, serverKey };
}

/** A store over any SQL database. The statement gets `(username, mechanism)` as its two parameters. */
export class ScramSqlStore implements ScramCredentialStore {
  constructor(
    readonly kind: string,
    private readonly query: SqlQuery,
    private readonly statement: string,
    private readonly minIterations: number = MIN_ITERATIONS,
    private readonly close?: () => Promise<void>,
  ) {}

  async lookup(username: string, mechanism: ScramMechanism, signal: AbortSignal): Promise<ScramCredential | undefined> {
    if (!isScramMechanism(mechanism)) return undefined;
    signal.throwIfAborted();
    const rows = await this.query(this.statement, [username, mechanism]);
    if (rows.length === 0) return undefined;
    // Two rows for one user is ambiguous; refuse to pick one.
    if (rows.length > 1) throw new Error('SCRAM credential query returned more than one row');
    return credentialFromRow(rows[0] ?? {}, mechanism, this.minIterations);
  }

  async stop(): Promise<void> {
    await this.close?.();
  }
}

export interface SqlConnectionOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** CA bundle (PEM) to verify the server; TLS is used when set. */
  ca?: string;
  maxConnections: number;
  queryTimeoutMs: number;
  statement?: string;
  minIterations?: number;
  /** Wraps every query, e.g. in the broker's circuit breaker for this database. */
  wrap?: <T>(task: () => Promise<T>) => Promise<T>;
}

function wrapped(query: SqlQuery, wrap: SqlConnectionOptions['wrap']): SqlQuery {
  // A user name the database cannot compare (outside a latin1 column's character set, say) is a user it does not
  // hold: the exchange then fails like one for an unknown user, and the breaker in `wrap` never counts it.
  const answered: SqlQuery = (statement, params) =>
    query(statement, params).catch((error: unknown) => {
      if (isClientInputError(error)) return [];
      throw error;
    });
  return wrap ? (statement, params) => wrap(() => answered(statement, params)) : answered;
}

export function createPostgresScramStore(options: SqlConnectionOptions): ScramSqlStore {
  const pool = new (pgDriver().Pool)({
    host: options.host,
    port: options.port,
    user: options.user,
    password: options.password,
    database: options.database,
    max: options.maxConnections,
    connectionTimeoutMillis: options.queryTimeoutMs,
    query_timeout: options.queryTimeoutMs,
    ...(options.ca ? { ssl: { ca: options.ca, rejectUnauthorized: true } } : {}),
  });
  // An idle client losing its server must not crash the process; the next query reports the failure.
  pool.on('error', () => undefined);
  const query: SqlQuery = async (statement, params) => (await pool.query(statement, [...params])).rows;
  return new ScramSqlStore(
    'postgres',
    wrapped(query, options.wrap),
    options.statement ?? DEFAULT_POSTGRES_STATEMENT,
    options.minIterations,
    async () => {
      await pool.end();
    },
  );
}

export function createMysqlScramStore(options: SqlConnectionOptions): ScramSqlStore {
  const pool = mysqlDriver().createPool({
    host: options.host,
    port: options.port,
    user: options.user,
    password: options.password,
    database: options.database,
    connectionLimit: options.maxConnections,
    connectTimeout: options.queryTimeoutMs,
    ...(options.ca ? { ssl: { ca: options.ca, rejectUnauthorized: true } } : {}),
  });
  const query: SqlQuery = async (statement, params) => {
    // Prepared on the server: client-side escaping is unsafe under sql_mode NO_BACKSLASH_ESCAPES.
    const [rows] = await pool.execute({ sql: statement, timeout: options.queryTimeoutMs }, [...params]);
    return Array.isArray(rows) ? (rows as Record<string, unknown>[]) : [];
  };
  return new ScramSqlStore(
    'mysql',
    wrapped(query, options.wrap),
    options.statement ?? DEFAULT_MYSQL_STATEMENT,
    options.minIterations,
    async () => {
      await pool.end();
    },
  );
}
