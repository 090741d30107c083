import { createHash } from 'node:crypto';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import { createBuiltinRegistry } from '../../../authn/builtin.js';
import type { AuthenticationChain } from '../../../authn/chain.js';
import { createVerificationServices } from '../../../authn/config.js';
import { verificationConfigSchema } from '../../../authn/registry.js';
import { Secret } from '../../../authn/secret.js';
import { silentLogger } from '../../../src/log.js';
import type { SqlServiceInfo } from '../../helpers/services/types.js';
import { attempt } from '../../unit/authn/fakes.js';
import { tableName } from './sql-fixtures.js';

/** Outside latin1: a latin1 column cannot compare it, a LATIN1 database cannot even receive it. */
const UNREPRESENTABLE = 'ユーザー€';
const sha = (salt: string, password: string): string =>
  createHash('sha256').update(salt).update(password).digest('hex');

/** Tables in a single-byte character set: PostgreSQL's LATIN1 database, a latin1 MariaDB table. */
const backends = [
  {
    type: 'postgres',
    info: inject('postgres'),
    database: 'bulwark_latin1',
    async create(db: SqlServiceInfo, database: string, table: string): Promise<void> {
      const c = new pg.Client({ host: db.host, port: db.port, user: db.user, password: db.password, database });
      await c.connect();
      try {
        await c.query(
          `CREATE TABLE ${table} (username text PRIMARY KEY, password_hash text, algorithm text, salt text)`,
        );
        await c.query(`INSERT INTO ${table} VALUES ('latin', $1, 'sha256', 's')`, [sha('s', 'latin-pw')]);
      } finally {
        await c.end();
      }
    },
  },
  {
    type: 'mysql',
    info: inject('mariadb'),
    database: undefined,
    async create(db: SqlServiceInfo, _database: string, table: string): Promise<void> {
      const c = await mysql.createConnection({
        host: db.host,
        port: db.port,
        user: db.user,
        password: db.password,
        database: db.database,
      });
      try {
        await c.query(
          `CREATE TABLE ${table} (username varchar(64) PRIMARY KEY, password_hash varchar(128), algorithm varchar(16), salt varchar(16)) CHARACTER SET latin1 COLLATE latin1_swedish_ci`,
        );
        await c.execute(`INSERT INTO ${table} VALUES ('latin', ?, 'sha256', 's')`, [sha('s', 'latin-pw')]);
      } finally {
        await c.end();
      }
    },
  },
] as const;

for (const b of backends) {
  const missing = 'missing' in b.info ? b.info.missing : undefined;

  describe.skipIf(missing)(`${b.type}: a user name the database cannot compare`, () => {
    const db = b.info as SqlServiceInfo;
    const events: AuditEvent[] = [];
    let chain: AuthenticationChain;

    beforeAll(async () => {
      const table = tableName();
      const database = b.database ?? db.database;
      await b.create(db, database, table);
      // A breaker that opens on the first failure: any failure counted would show at once.
      const verification = createVerificationServices(
        verificationConfigSchema.parse({
          cache_max_entries: 0,
          breaker_failure_threshold: 1,
          breaker_reset_ms: 60_000,
        }),
        (e) => events.push(e),
      );
      chain = createBuiltinRegistry().parseAndBuild(
        {
          steps: [
            {
              type: b.type,
              host: db.host,
              port: db.port,
              database,
              user: db.user,
              password: db.password,
              query: `SELECT password_hash, algorithm, salt FROM ${table} WHERE username = \${username}`,
            },
          ],
        },
        { verification, onEvent: (e) => events.push(e), logger: silentLogger, baseDir: '.' },
      );
      await chain.start();
    });
    afterAll(async () => {
      await chain?.stop();
    });

    it('is a deny with bad user name or password, and never opens the breaker for the other users', async () => {
      for (let i = 0; i < 3; i++) {
        const r = await chain.authenticate(attempt({ username: UNREPRESENTABLE, password: new Secret('x') }));
        expect(r).toMatchObject({ kind: 'deny', reason: 'badUserNameOrPassword', decidedBy: b.type });
        expect(r.steps[0]).toMatchObject({ answer: 'deny', detail: 'the database cannot compare this user name' });
      }
      const ok = await chain.authenticate(attempt({ username: 'latin', password: new Secret('latin-pw') }));
      expect(ok.kind).toBe('allow');
      expect(events.filter((e) => e.event.action === 'authn.backend_unavailable')).toEqual([]);
    });
  });
}
