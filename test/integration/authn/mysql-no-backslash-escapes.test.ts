import { createHash } from 'node:crypto';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createBuiltinRegistry } from '../../../authn/builtin.js';
import type { AuthenticationChain } from '../../../authn/chain.js';
import { createMysqlScramStore, type ScramSqlStore } from '../../../authn/scram/sql-store.js';
import { Secret } from '../../../authn/secret.js';
import { VerificationServices } from '../../../authn/verify/services.js';
import { silentLogger } from '../../../src/log.js';
import type { SqlServiceInfo } from '../../helpers/services/types.js';
import { attempt } from '../../unit/authn/fakes.js';
import { createMysqlTable, seedUsers, tableName } from './sql-fixtures.js';

const info = inject('mariadb');
const missing = 'missing' in info ? info.missing : undefined;

/**
 * Under sql_mode NO_BACKSLASH_ESCAPES a backslash is an ordinary character, so a client that escapes `'` as `\'`
 * and splices the value into the SQL text lets the quote end the string literal. A session takes the global mode
 * when it opens: the global mode is switched only while the steps open their one pooled connection, then restored
 * (other test files share this MariaDB).
 */
async function withGlobalNoBackslashEscapes(db: SqlServiceInfo, open: () => Promise<unknown>): Promise<void> {
  const root = await mysql.createConnection({ socketPath: db.adminSocket ?? '', user: 'root' });
  try {
    const [[saved]] = await root.query<mysql.RowDataPacket[]>('SELECT @@GLOBAL.sql_mode AS mode');
    await root.query("SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',NO_BACKSLASH_ESCAPES')");
    try {
      await open();
    } finally {
      await root.query('SET GLOBAL sql_mode = ?', [String(saved?.['mode'] ?? '')]);
    }
  } finally {
    await root.end();
  }
}

const hex = (text: string | Buffer): string => `0x${Buffer.from(text).toString('hex')}`;

describe.skipIf(missing || !(info as SqlServiceInfo).adminSocket)(
  'mysql steps under sql_mode NO_BACKSLASH_ESCAPES',
  () => {
    const db = info as SqlServiceInfo;
    const table = tableName();
    let chain: AuthenticationChain;
    let scram: ScramSqlStore;

    beforeAll(async () => {
      await createMysqlTable(db, table, await seedUsers());
      chain = createBuiltinRegistry().parseAndBuild(
        {
          steps: [
            {
              type: 'mysql',
              host: db.host,
              port: db.port,
              database: db.database,
              user: db.user,
              password: db.password,
              pool_size: 1,
              query: `SELECT password_hash, algorithm, salt, is_superuser, \`groups\` FROM ${table} WHERE username = \${username}`,
            },
          ],
        },
        { verification: new VerificationServices(), onEvent: () => undefined, logger: silentLogger, baseDir: '.' },
      );
      await chain.start();
      scram = createMysqlScramStore({
        host: db.host,
        port: db.port,
        user: db.user,
        password: db.password,
        database: db.database,
        maxConnections: 1,
        queryTimeoutMs: 3000,
        statement: `SELECT password_hash AS salt, 4096 AS iterations, password_hash AS stored_key, password_hash AS server_key FROM ${table} WHERE username = ? AND algorithm = ?`,
      });
      await withGlobalNoBackslashEscapes(db, async () => {
        await chain.authenticate(attempt({ username: 'nobody', password: new Secret('x') }));
        await scram.lookup('nobody', 'SCRAM-SHA-256', AbortSignal.timeout(5000));
      });
    });
    afterAll(async () => {
      await chain?.stop();
      await scram?.stop();
    });

    it('a user name that closes the string literal is only data: no forged row logs in as superuser', async () => {
      const salt = 'forged-salt';
      const digest = createHash('sha256').update(salt).update('x').digest('hex');
      const username = `' UNION SELECT ${hex(digest)},${hex('sha256')},${hex(salt)},1,${hex('admins')} -- `;
      const r = await chain.authenticate(attempt({ username, password: new Secret('x') }));
      expect(r).toMatchObject({ kind: 'deny', reason: 'notAuthorized', decidedBy: 'chain' });
      expect(r.steps[0]).toMatchObject({ answer: 'ignore', detail: 'no row for user' });
    });

    it('the seeded users still log in through the prepared statement', async () => {
      const r = await chain.authenticate(attempt({ username: 'sha-user', password: new Secret('sql-sha-pw') }));
      expect(r.kind).toBe('allow');
    });

    it('the SCRAM store returns no credential for a user name that closes the string literal', async () => {
      const key = Buffer.alloc(32, 7);
      const username = `' UNION SELECT ${hex(key)},4096,${hex(key)},${hex(key)} -- `;
      expect(await scram.lookup(username, 'SCRAM-SHA-256', AbortSignal.timeout(5000))).toBeUndefined();
    });
  },
);
