import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { authorizationConfigSchema } from '../../../authz/config.js';
import { createAuthorization, type AuthorizationSubsystem } from '../../../authz/create.js';
import type { AccessAction, AuthzDecision } from '../../../authz/types.js';
import { jsonLogSink } from '../../helpers/json-log-sink.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';
import type { SqlServiceInfo } from '../../helpers/services/types.js';
import { identity, request } from '../../unit/authz/helpers.js';

/** Outside latin1 (and MySQL's latin1, which is cp1252 and does hold €): neither table can compare it. */
const UNREPRESENTABLE = 'ユーザー€';

/** The policy file behind the SQL source allows everything: whatever reaches it is let in. */
const ALLOW_ALL = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
  - name: everything
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['#']
`;

/** Rows of the single-byte ACL table: `mallory` is kept off every topic, `plain` gets its own subtree. */
const ROWS: ReadonlyArray<readonly [string | null, string | null, string, string, string | null]> = [
  ['mallory', null, 'deny', 'all', '#'],
  ['plain', null, 'allow', 'all', 'sensors/plain/#'],
  ['plain', null, 'deny', 'publish', 'sensors/plain/secret'],
];

interface Backend {
  type: 'postgres' | 'mysql';
  info: ReturnType<typeof inject<'postgres'>>;
  /** The single-byte database (PostgreSQL) or the shared one with a latin1 table (MariaDB). */
  database(db: SqlServiceInfo): string;
  exec(db: SqlServiceInfo, sql: string[]): Promise<void>;
  createTable(table: string): string;
  insert(table: string): string;
}

const backends: Backend[] = [
  {
    type: 'postgres',
    info: inject('postgres'),
    database: () => 'bulwark_latin1',
    async exec(db, sql) {
      const c = new pg.Client({
        host: db.host,
        port: db.port,
        user: db.user,
        password: db.password,
        database: 'bulwark_latin1',
      });
      await c.connect();
      try {
        for (const s of sql) await c.query(s);
      } finally {
        await c.end();
      }
    },
    createTable: (t) => `CREATE TABLE ${t} (username text, clientid text, permission text, action text, topic text)`,
    insert: (t) =>
      `INSERT INTO ${t} VALUES ${ROWS.map((r) => `(${r.map((v) => (v === null ? 'NULL' : `'${v}'`)).join(', ')})`).join(', ')}`,
  },
  {
    type: 'mysql',
    info: inject('mariadb'),
    database: (db) => db.database,
    async exec(db, sql) {
      const c = await mysql.createConnection({
        host: db.host,
        port: db.port,
        user: db.user,
        password: db.password,
        database: db.database,
      });
      try {
        for (const s of sql) await c.query(s);
      } finally {
        await c.end();
      }
    },
    createTable: (t) =>
      `CREATE TABLE ${t} (username varchar(64), clientid varchar(64), permission varchar(8), action varchar(32), topic varchar(255)) CHARACTER SET latin1 COLLATE latin1_swedish_ci`,
    insert: (t) =>
      `INSERT INTO ${t} VALUES ${ROWS.map((r) => `(${r.map((v) => (v === null ? 'NULL' : `'${v}'`)).join(', ')})`).join(', ')}`,
  },
];

for (const b of backends) {
  for (const onError of ['next', 'deny'] as const) {
    describe(`${b.type} ACL source (on_error: ${onError}): a client identity the table cannot hold`, () => {
      const table = `authz_latin1_${randomBytes(4).toString('hex')}`;
      const sourceId = `acl-${b.type}`;
      let lines: Array<Record<string, unknown>> = [];
      let raw: string[] = [];
      let dir: TempDir;
      let db: SqlServiceInfo;
      let sub: AuthorizationSubsystem;

      beforeAll(async () => {
        // The harness could not start the database: fail with its reason rather than pass silently.
        if ('missing' in b.info) throw new Error(`${b.type} unavailable: ${b.info.missing}`);
        db = b.info;
        await b.exec(db, [b.createTable(table), b.insert(table)]);
        dir = tempDir('bulwark-authz-latin1-');
        const policy = dir.write('site.policy.yaml', ALLOW_ALL);
        const captured = jsonLogSink();
        lines = captured.logs;
        raw = captured.raw;
        const logger = pino({ level: 'debug' }, captured.sink);
        sub = createAuthorization(
          authorizationConfigSchema.parse({
            policy_files: [policy],
            watch: false,
            sources: [
              {
                type: b.type,
                id: sourceId,
                host: db.host,
                port: db.port,
                user: db.user,
                password: db.password,
                database: b.database(db),
                query: `SELECT permission, action, topic FROM ${table} WHERE username = \${username} OR clientid = \${clientid}`,
                on_error: onError,
              },
              { type: 'file' },
            ],
          }),
          { baseDir: dir.path, logger },
        );
        await sub.start();
      });

      afterAll(async () => {
        await sub?.stop();
        if (db) await b.exec(db, [`DROP TABLE IF EXISTS ${table}`]).catch(() => undefined);
        dir?.cleanup();
      });

      const refused = (): Partial<AuthzDecision> => ({
        allowed: false,
        rule: { source: sourceId, name: 'identity-not-representable' },
        reason: `denied by ${sourceId}: the table cannot hold this client's identity`,
      });

      const ask = async (
        who: { username: string; clientId: string },
        action: AccessAction,
        topic: string,
      ): Promise<AuthzDecision> =>
        sub.authorizer.check(request(action, action === 'connect' ? '' : topic, { identity: identity(who) }));

      it('a client id it cannot hold denies every request, although the next source would allow', async () => {
        // mallory's deny row would be skipped if the refusal handed the request to the policy file.
        const mallory = { username: 'mallory', clientId: UNREPRESENTABLE };
        expect(await ask(mallory, 'publish', 'sensors/x')).toMatchObject(refused());
        expect(await ask(mallory, 'subscribe', '#')).toMatchObject(refused());
        expect(await ask(mallory, 'connect', '')).toMatchObject(refused());
      });

      it('so does a user name it cannot hold', async () => {
        expect(await ask({ username: UNREPRESENTABLE, clientId: 'u-1' }, 'publish', 'sensors/x')).toMatchObject(
          refused(),
        );
      });

      it('is not reported as a source failure, and the log carries no value of the client', () => {
        expect(lines.filter((l) => l.event === 'authz.source_failed')).toEqual([]);
        const refusals = lines.filter((l) => l.event === 'authz.sql_input_refused');
        expect(refusals.length).toBeGreaterThan(0);
        for (const l of refusals) expect(l).toMatchObject({ level: 20, source: sourceId });
        expect(raw.filter((l) => l.includes(UNREPRESENTABLE) || l.includes('\\u30e6'))).toEqual([]);
      });

      it('an ordinary client is still judged by its rows, and by the next source where none match', async () => {
        // More refusals in a row than the breaker's threshold (5): answers of a working database, never failures,
        // so no client can make the source fail fast for everyone.
        for (let i = 0; i < 8; i++) {
          expect(
            await ask({ username: 'mallory', clientId: `${UNREPRESENTABLE}-${i}` }, 'publish', 's/x'),
          ).toMatchObject(refused());
        }
        expect(lines.filter((l) => l.event === 'authz.source_unavailable')).toEqual([]);
        const plain = { username: 'plain', clientId: 'plain-1' };
        expect(await ask(plain, 'publish', 'sensors/plain/temp')).toMatchObject({
          allowed: true,
          rule: { source: sourceId, name: 'row-1' },
        });
        expect(await ask(plain, 'publish', 'sensors/plain/secret')).toMatchObject({
          allowed: false,
          rule: { source: sourceId, name: 'row-2' },
        });
        expect(await ask(plain, 'publish', 'elsewhere/x')).toMatchObject({
          allowed: true,
          rule: { source: 'file', name: 'everything' },
        });
        expect(await ask({ username: 'mallory', clientId: 'm-1' }, 'publish', 'sensors/x')).toMatchObject({
          allowed: false,
          rule: { source: sourceId, name: 'row-1' },
        });
      });
    });
  }
}

describe('postgres ACL source: a client identity the table cannot hold costs the server no new connection', () => {
  const info = inject('postgres');
  const hex = randomBytes(4).toString('hex');
  const table = `authz_pool_${hex}`;
  const seen = `authz_backends_${hex}`;
  let dir: TempDir;
  let sub: AuthorizationSubsystem;
  const postgres = backends[0]!;

  beforeAll(async () => {
    if ('missing' in info) throw new Error(`postgres unavailable: ${info.missing}`);
    // Each query that runs notes the backend (server process) it ran on; one refused for its values never runs.
    await postgres.exec(info, [
      postgres.createTable(table),
      postgres.insert(table),
      `CREATE TABLE ${seen} (pid int PRIMARY KEY)`,
      `CREATE FUNCTION note_${hex}() RETURNS boolean LANGUAGE sql VOLATILE AS ` +
        `'INSERT INTO ${seen} VALUES (pg_backend_pid()) ON CONFLICT DO NOTHING; SELECT true'`,
    ]);
    dir = tempDir('bulwark-authz-pool-');
    sub = createAuthorization(
      authorizationConfigSchema.parse({
        policy_files: [dir.write('site.policy.yaml', ALLOW_ALL)],
        watch: false,
        sources: [
          {
            type: 'postgres',
            id: 'acl-pool',
            host: info.host,
            port: info.port,
            user: info.user,
            password: info.password,
            database: 'bulwark_latin1',
            pool_size: 1,
            query: `SELECT permission, action, topic FROM ${table} WHERE note_${hex}() AND (username = \${username} OR clientid = \${clientid})`,
          },
          { type: 'file' },
        ],
      }),
      { baseDir: dir.path },
    );
    await sub.start();
  });

  afterAll(async () => {
    await sub?.stop();
    if (!('missing' in info))
      await postgres
        .exec(info, [
          `DROP TABLE IF EXISTS ${table}`,
          `DROP TABLE IF EXISTS ${seen}`,
          `DROP FUNCTION IF EXISTS note_${hex}`,
        ])
        .catch(() => undefined);
    dir?.cleanup();
  });

  it('keeps its one pooled connection through refusals of new, unrepresentable client ids', async () => {
    for (let i = 0; i < 8; i++) {
      // A fresh client id each time, as an attacker would send: no cached answer.
      const bad = await sub.authorizer.check(
        request('publish', 't', { identity: identity({ username: 'x', clientId: `${UNREPRESENTABLE}-${i}` }) }),
      );
      expect(bad).toMatchObject({ allowed: false, rule: { name: 'identity-not-representable' } });
      await sub.authorizer.check(
        request('publish', 't', { identity: identity({ username: 'plain', clientId: `ok-${i}` }) }),
      );
    }
    const backendsUsed: number[] = [];
    const c = new pg.Client({ ...(info as SqlServiceInfo), database: 'bulwark_latin1' });
    await c.connect();
    try {
      const { rows } = await c.query<{ pid: number }>(`SELECT pid FROM ${seen}`);
      for (const r of rows) backendsUsed.push(r.pid);
    } finally {
      await c.end();
    }
    // Eight allowed lookups, each after a refusal, all on the pool's one connection.
    expect(backendsUsed).toHaveLength(1);
  });
});
