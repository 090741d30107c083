import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';
import { PacketLog, publishNoWait, subscribeCodes } from '../../helpers/packet-log.js';
import { startPolicyBroker, type PolicyBroker } from '../../helpers/policy-broker.js';
import type { SqlServiceInfo } from '../../helpers/services/types.js';

/** Outside latin1 (and MySQL's latin1, which is cp1252 and does hold €): neither table can compare it. */
const UNREPRESENTABLE = 'ユーザー€';
const REASON = "denied by acl-latin1: the table cannot hold this client's identity";

type Row = readonly [
  username: string | null,
  clientid: string | null,
  permission: string,
  action: string,
  topic: string,
];

/** The single-byte table: `mallory` is kept off every topic, `plain` gets its own subtree minus one topic. */
const LATIN1_ROWS: readonly Row[] = [
  ['mallory', null, 'deny', 'all', '#'],
  ['plain', null, 'allow', 'all', 'sensors/plain/#'],
  ['plain', null, 'deny', 'publish', 'sensors/plain/secret'],
];

/** The second (UTF-8) table allows everyone everything: whatever the first source hands on is let in. */
const UTF8_ROWS: readonly Row[] = [
  ['mallory', null, 'allow', 'all', '#'],
  [UNREPRESENTABLE, null, 'allow', 'all', '#'],
  ['plain', null, 'allow', 'all', '#'],
];

const values = (rows: readonly Row[]): string =>
  rows.map((r) => `(${r.map((v) => (v === null ? 'NULL' : `'${v}'`)).join(', ')})`).join(', ');

const COLUMNS =
  'username varchar(64), clientid varchar(64), permission varchar(8), action varchar(32), topic varchar(255)';

interface Backend {
  type: 'postgres' | 'mysql';
  service: 'postgres' | 'mariadb';
  /** Database of the single-byte table: PostgreSQL's LATIN1 database; MariaDB's shared one (a latin1 table). */
  latin1Database(db: SqlServiceInfo): string;
  /** Runs statements in `database`. */
  exec(db: SqlServiceInfo, database: string, sql: string[]): Promise<void>;
  /** Table options: the single-byte table, and one that holds any name (MariaDB's default may be latin1). */
  latin1Table: string;
  utf8Table: string;
}

const backends: Backend[] = [
  {
    type: 'postgres',
    service: 'postgres',
    latin1Database: () => 'bulwark_latin1',
    async exec(db, database, sql) {
      const c = new pg.Client({ host: db.host, port: db.port, user: db.user, password: db.password, database });
      await c.connect();
      try {
        for (const s of sql) await c.query(s);
      } finally {
        await c.end();
      }
    },
    latin1Table: '',
    utf8Table: '',
  },
  {
    type: 'mysql',
    service: 'mariadb',
    latin1Database: (db) => db.database,
    async exec(db, database, sql) {
      const c = await mysql.createConnection({
        host: db.host,
        port: db.port,
        user: db.user,
        password: db.password,
        database,
      });
      try {
        for (const s of sql) await c.query(s);
      } finally {
        await c.end();
      }
    },
    latin1Table: ' CHARACTER SET latin1 COLLATE latin1_swedish_ci',
    utf8Table: ' CHARACTER SET utf8mb4 COLLATE utf8mb4_bin',
  },
];

for (const b of backends) {
  describe(`a real broker with a ${b.type} ACL table that cannot hold every client identity`, () => {
    const info = inject(b.service);
    const latin1 = `wire_latin1_${randomBytes(4).toString('hex')}`;
    const utf8 = `wire_utf8_${randomBytes(4).toString('hex')}`;
    let db: SqlServiceInfo;
    const brokers: PolicyBroker[] = [];
    const clients: Connected[] = [];

    const source = (id: string, database: string, table: string, onError: 'deny' | 'next') => ({
      type: b.type,
      id,
      host: db.host,
      port: db.port,
      user: db.user,
      password: db.password,
      database,
      query: `SELECT permission, action, topic FROM ${table} WHERE username = \${username} OR clientid = \${clientid}`,
      on_error: onError,
    });

    beforeAll(async () => {
      // The harness could not start the database: fail with its reason rather than pass silently.
      if ('missing' in info) throw new Error(`${b.service} unavailable: ${info.missing}`);
      db = info;
      await b.exec(db, b.latin1Database(db), [
        `CREATE TABLE ${latin1} (${COLUMNS})${b.latin1Table}`,
        `INSERT INTO ${latin1} VALUES ${values(LATIN1_ROWS)}`,
      ]);
      await b.exec(db, db.database, [
        `CREATE TABLE ${utf8} (${COLUMNS})${b.utf8Table}`,
        `INSERT INTO ${utf8} VALUES ${values(UTF8_ROWS)}`,
      ]);
    });

    afterAll(async () => {
      await endAll(...clients.map((c) => c.client));
      for (const pb of brokers) await pb.stop();
      if (!db) return;
      await b.exec(db, b.latin1Database(db), [`DROP TABLE IF EXISTS ${latin1}`]).catch(() => undefined);
      await b.exec(db, db.database, [`DROP TABLE IF EXISTS ${utf8}`]).catch(() => undefined);
    });

    describe('topic checks: the latin1 source (on_error: next) before a source that allows everything', () => {
      let pb: PolicyBroker;
      const password = 'pw-123456';

      beforeAll(async () => {
        pb = await startPolicyBroker({
          // The policy file only lets everyone connect; topics are the tables' business.
          policy: 'version: 1\nrules:\n  - name: everyone-connects\n    allow: connect\n    subjects: all\n',
          users: { mallory: { password }, plain: { password }, [UNREPRESENTABLE]: { password } },
          authorization: {
            sources: [
              { type: 'file' },
              source('acl-latin1', b.latin1Database(db), latin1, 'next'),
              source('acl-utf8', db.database, utf8, 'deny'),
            ],
          },
        });
        brokers.push(pb);
      });

      async function client(username: string, clientId: string): Promise<{ c: Connected; log: PacketLog }> {
        const c = await connectClient(pb.broker.url, { clientId, username, password, protocolVersion: 5 });
        clients.push(c);
        return { c, log: new PacketLog(c.client) };
      }

      async function pubackCode(c: Connected, log: PacketLog, topic: string): Promise<number> {
        const id = await publishNoWait(c.client, topic, 'x', { qos: 1 });
        return (await log.ack('puback', id!)).reasonCode ?? 0;
      }

      it('a client id the table cannot hold: PUBACK and SUBACK 0x87, audited with the reason', async () => {
        // Were the refusal a source failure, on_error: next would skip mallory's deny row and the UTF-8 table allow.
        const clientId = `${UNREPRESENTABLE}-1`;
        const { c, log } = await client('mallory', clientId);
        expect(await pubackCode(c, log, 'sensors/x')).toBe(0x87);
        const denied = await pb.broker.waitForAudit('authz.publish_denied', (e) => e.mqtt?.client_id === clientId);
        expect(denied.event).toMatchObject({ outcome: 'failure', code: 'notAuthorized', reason: REASON });
        expect(denied.authz).toEqual({
          action: 'publish',
          rule: 'identity-not-representable',
          rule_name: 'identity-not-representable',
          source: 'acl-latin1',
        });
        expect(denied.mqtt).toMatchObject({ topic: 'sensors/x', qos: 1, reason_code: 0x87, username: 'mallory' });
        expect(await subscribeCodes(c.client, log, { '#': { qos: 1 } })).toEqual([0x87]);
        const sub = await pb.broker.waitForAudit('authz.subscribe_denied', (e) => e.mqtt?.client_id === clientId);
        expect(sub.event.reason).toBe(REASON);
      });

      it('a user name the table cannot hold is denied the same way', async () => {
        const { c, log } = await client(UNREPRESENTABLE, 'u-1');
        expect(await pubackCode(c, log, 'sensors/x')).toBe(0x87);
        const denied = await pb.broker.waitForAudit('authz.publish_denied', (e) => e.mqtt?.client_id === 'u-1');
        expect(denied.event.reason).toBe(REASON);
      });

      it('an ordinary client on the same broker is judged by its rows', async () => {
        const { c, log } = await client('plain', 'plain-1');
        expect(await pubackCode(c, log, 'sensors/plain/temp')).toBe(0);
        expect(await pubackCode(c, log, 'sensors/plain/secret')).toBe(0x87);
        const denied = await pb.broker.waitForAudit('authz.publish_denied', (e) => e.mqtt?.client_id === 'plain-1');
        expect(denied.authz).toMatchObject({ rule: 'acl-latin1:2', rule_name: 'row-2', source: 'acl-latin1' });
        // No row of plain's matches: the next source decides, as before.
        expect(await pubackCode(c, log, 'elsewhere/x')).toBe(0);
      });

      it('nothing was reported as a source failure; the refusals were logged at debug, without the values', () => {
        const logs = pb.broker.logs;
        expect(logs.filter((l) => l.event === 'authz.source_failed')).toEqual([]);
        const refusals = logs.filter((l) => l.event === 'authz.sql_input_refused');
        expect(refusals.length).toBeGreaterThan(0);
        for (const l of refusals) {
          expect(l).toMatchObject({ level: 20, source: 'acl-latin1' });
          expect(JSON.stringify(l)).not.toContain(UNREPRESENTABLE);
        }
      });
    });

    describe('connect checks: the latin1 source (on_error: next) first', () => {
      let pb: PolicyBroker;

      beforeAll(async () => {
        pb = await startPolicyBroker({
          policy: `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
  - name: everything
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['#']
`,
          authorization: { sources: [source('acl-latin1', b.latin1Database(db), latin1, 'next'), { type: 'file' }] },
        });
        brokers.push(pb);
      });

      it('refuses the CONNECT of a client id the table cannot hold with 0x87, naming the reason', async () => {
        const error = await connectClient(pb.broker.url, { clientId: UNREPRESENTABLE, protocolVersion: 5 }).then(
          () => undefined,
          (e: { code?: number }) => e,
        );
        expect(error?.code).toBe(0x87);
        const denied = await pb.broker.waitForAudit(
          'authz.connect_denied',
          (e) => e.mqtt?.client_id === UNREPRESENTABLE,
        );
        expect(denied.event.reason).toBe(REASON);
        expect(denied.authz).toMatchObject({ action: 'connect', source: 'acl-latin1' });
        clients.push(await connectClient(pb.broker.url, { clientId: 'ordinary-1', protocolVersion: 5 }));
        expect(pb.broker.logs.filter((l) => l.event === 'authz.source_failed')).toEqual([]);
      });
    });
  });
}
