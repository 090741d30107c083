import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { isClientInputError } from '../../src/sql-client-input-error.js';
import { pgDriver } from '../../src/sql-drivers.js';
import { raceAbort } from '../verify/race-abort.js';
import type { SqlBackend, SqlConnectionSettings } from './backend.js';

export class PostgresBackend implements SqlBackend {
  readonly #pool: pg.Pool;

  constructor(settings: SqlConnectionSettings) {
    this.#pool = new (pgDriver().Pool)({
      host: settings.host,
      port: settings.port,
      database: settings.database,
      user: settings.user,
      ...(settings.password !== undefined ? { password: settings.password } : {}),
      max: settings.poolSize,
      connectionTimeoutMillis: settings.connectTimeoutMs,
      query_timeout: settings.queryTimeoutMs,
      idleTimeoutMillis: 30_000,
      application_name: 'bulwark-authn',
      ...(settings.tls
        ? {
            ssl: {
              rejectUnauthorized: settings.tls.rejectUnauthorized,
              ...(settings.tls.caFile ? { ca: readFileSync(settings.tls.caFile, 'utf8') } : {}),
              ...(settings.tls.serverName ? { servername: settings.tls.serverName } : {}),
            },
          }
        : {}),
    });
    // An idle connection dropped by the server must not crash the broker; the next query reconnects.
    this.#pool.on('error', () => undefined);
  }

  async query(
    text: string,
    values: readonly (string | null)[],
    signal: AbortSignal,
  ): Promise<Record<string, unknown>[]> {
    const connecting = this.#pool.connect();
    let client: pg.PoolClient;
    try {
      client = await raceAbort(connecting, signal);
    } catch (error) {
      // If the connection arrives after we gave up, hand it back instead of leaking a pool slot.
      connecting.then(
        (c) => c.release(),
        () => undefined,
      );
      throw error;
    }
    let broken = false;
    try {
      const result = await raceAbort(client.query<Record<string, unknown>>({ text, values: [...values] }), signal);
      return result.rows;
    } catch (error) {
      // A timed-out or aborted query may still be running on that connection: discard it. A value the server
      // refused leaves the connection as it was.
      broken = !isClientInputError(error);
      throw error;
    } finally {
      client.release(broken);
    }
  }

  close(): Promise<void> {
    return this.#pool.end();
  }
}
