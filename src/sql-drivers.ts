import { createRequire } from 'node:module';
import type pg from 'pg';
import type mysql from 'mysql2/promise';

const require = createRequire(import.meta.url);

/**
 * The SQL drivers, loaded when the first PostgreSQL or MySQL backend, SCRAM store or audit mirror is built rather
 * than at start-up: together about 7 MB of an idle broker's resident memory, and most brokers configure neither.
 * Both are CommonJS, so `require` loads them synchronously where a constructor needs them, and caches them after
 * the first call.
 */
export function pgDriver(): typeof pg {
  return require('pg') as typeof pg;
}

export function mysqlDriver(): typeof mysql {
  return require('mysql2/promise') as typeof mysql;
}
