import { readFileSync } from 'node:fs';
import type mysql from 'mysql2/promise';
import { isClientInputError } from '../../src/sql-client-input-error.js';
import { mysqlDriver } from '../../src/sql-drivers.js';
import { raceAbort } from '../verify/race-abort.js';
import type { SqlBackend, SqlConnectionSettings } from './backend.js';

export class MysqlBackend implements SqlBackend {
  readonly #pool: mysql.Pool;
  readonly #queryTimeoutMs: number;

  constructor(settings: SqlConnectionSettings) {
    this.#queryTimeoutMs = settings.queryTimeoutMs;
    this.#pool = mysqlDriver().createPool({
      host: settings.host,
      port: settings.port,
      database: settings.database,
      user: settings.user,
      ...(settings.password !== undefined ? { password: settings.password } : {}),
      connectionLimit: settings.poolSize,
      connectTimeout: settings.connectTimeoutMs,
      waitForConnections: true,
      // Bounded by the shared SQL pool in front of it; this queue never grows beyond that.
      queueLimit: 0,
      multipleStatements: false,
      supportBigNumbers: true,
      ...(settings.tls
        ? {
            ssl: {
              rejectUnauthorized: settings.tls.rejectUnauthorized,
              ...(settings.tls.caFile ? { ca: readFileSync(settings.tls.caFile, 'utf8') } : {}),
            },
          }
        : {}),
    });
    this.#pool.on('connection', (c) => c.on('error', () => undefined));
  }

  async query(
    text: string,
    values: readonly (string | null)[],
    signal: AbortSignal,
  ): Promise<Record<string, unknown>[]> {
    const connecting = this.#pool.getConnection();
    let conn: mysql.PoolConnection;
    try {
      conn = await raceAbort(connecting, signal);
    } catch (error) {
      connecting.then(
        (c) => c.release(),
        () => undefined,
      );
      throw error;
    }
    try {
      // A server-side prepared statement: the values travel apart from the SQL text. `query()` with values would
      // splice them into the text with client-side backslash escaping, which the server reads differently under
      // sql_mode NO_BACKSLASH_ESCAPES (a quote in a user name then ends the string literal).
      const [rows] = await raceAbort(
        conn.execute<mysql.RowDataPacket[]>({ sql: text, timeout: this.#queryTimeoutMs }, [...values]),
        signal,
      );
      conn.release();
      return rows as Record<string, unknown>[];
    } catch (error) {
      // The server refused a value and the connection is fine; anything else (a timed-out query may still be
      // running on it) destroys the connection rather than returning it to the pool.
      if (isClientInputError(error)) conn.release();
      else conn.destroy();
      throw error;
    }
  }

  close(): Promise<void> {
    return this.#pool.end();
  }
}
