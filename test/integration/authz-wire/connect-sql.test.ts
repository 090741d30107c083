import { randomBytes } from 'node:crypto';
import type { IDisconnectPacket } from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';
import { startPolicyBroker, type PolicyBroker } from '../../helpers/policy-broker.js';
import { RawClient, connectPacket } from '../../helpers/raw-client.js';
import { burstOfPublishes, settledUnsent } from '../../helpers/read-pause.js';
import { until } from '../../helpers/until.js';
import type { SqlServiceInfo } from '../../helpers/services/types.js';

const POLICY = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
  - name: chat
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['chat/#']
`;

/** A client of the test database, a fresh ACL table, and a broker that asks the table (no row cache) before the policy. */
interface AclFixture {
  db: pg.Client;
  table: string;
  pb: PolicyBroker;
}

async function startAclFixture(prefix: string, source: Record<string, unknown> = {}): Promise<AclFixture> {
  const info = inject('postgres');
  // The harness could not start the database: fail with its reason rather than pass silently.
  if ('missing' in info) throw new Error(`postgres unavailable: ${info.missing}`);
  const s: SqlServiceInfo = info;
  const table = `${prefix}_${randomBytes(4).toString('hex')}`;
  const db = new pg.Client({ host: s.host, port: s.port, user: s.user, password: s.password, database: s.database });
  await db.connect();
  await db.query(
    `CREATE TABLE ${table} (clientid VARCHAR(64), permission VARCHAR(8) NOT NULL, action VARCHAR(32) NOT NULL, topic VARCHAR(255))`,
  );
  const pb = await startPolicyBroker({
    policy: POLICY,
    authorization: {
      sources: [
        {
          type: 'postgres',
          id: 'acl-db',
          host: s.host,
          port: s.port,
          user: s.user,
          password: s.password,
          database: s.database,
          query: `SELECT permission, action, topic FROM ${table} WHERE clientid = \${clientid}`,
          cache_ttl_ms: 0,
          ...source,
        },
        { type: 'file' },
      ],
    },
  });
  return { db, table, pb };
}

async function stopAclFixture(f: AclFixture | undefined): Promise<void> {
  await f?.pb.stop();
  await f?.db.query(`DROP TABLE IF EXISTS ${f.table}`).catch(() => undefined);
  await f?.db.end();
}

/**
 * A PostgreSQL ACL source in front of the policy file, with no row cache: every connect check after a policy change
 * is a query, so the broker's re-check is asynchronous, as it is for any SQL cache miss.
 */
describe('connect rows in a PostgreSQL ACL table', () => {
  let fixture: AclFixture;
  let db: pg.Client;
  let table: string;
  let pb: PolicyBroker;
  const clients: Connected[] = [];

  beforeAll(async () => {
    fixture = await startAclFixture('connect_acl');
    ({ db, table, pb } = fixture);
    await db.query(`INSERT INTO ${table} VALUES ('sql-banned', 'deny', 'connect', NULL)`);
  });

  afterAll(async () => {
    await endAll(...clients.map((c) => c.client));
    await stopAclFixture(fixture);
  });

  it('refuses at CONNECT a client a deny connect row names, naming the row', async () => {
    const error = await connectClient(pb.broker.url, { clientId: 'sql-banned', protocolVersion: 5 }).then(
      () => undefined,
      (e: { code?: number }) => e,
    );
    expect(error?.code).toBe(0x87);
    const denied = await pb.broker.waitForAudit('authz.connect_denied', (e) => e.mqtt?.client_id === 'sql-banned');
    expect(denied.authz).toMatchObject({ rule: 'acl-db:1', rule_name: 'row-1', source: 'acl-db', action: 'connect' });
  });

  it('disconnects a connected client once a deny connect row exists and the policy changes (asynchronous check)', async () => {
    const doomed = await connectClient(pb.broker.url, { clientId: 'sql-doomed', protocolVersion: 5 });
    clients.push(doomed);
    const keeper = await connectClient(pb.broker.url, { clientId: 'sql-keeper', protocolVersion: 5 });
    clients.push(keeper);
    await keeper.client.subscribeAsync('chat/#', { qos: 1 });
    await db.query(`INSERT INTO ${table} VALUES ('sql-doomed', 'deny', 'connect', NULL)`);
    const disconnect = new Promise<IDisconnectPacket>((resolve) => doomed.client.once('disconnect', resolve));
    pb.rewrite(`${POLICY}\n# reviewed\n`);
    await pb.broker.server.reloadPolicy('cli');
    expect((await disconnect).reasonCode).toBe(0x87);
    const revoked = await pb.broker.waitForAudit('authz.connection_revoked', (e) => e.mqtt?.client_id === 'sql-doomed');
    expect(revoked.authz).toMatchObject({ rule: 'acl-db:1', source: 'acl-db', action: 'connect' });
    // A row of another client does not touch this one, which keeps its subscription.
    const publisher = await connectClient(pb.broker.url, { clientId: 'sql-pub', protocolVersion: 5 });
    clients.push(publisher);
    await publisher.client.publishAsync('chat/after', 'x', { qos: 1 });
    await keeper.received.waitForTopic('chat/after');
    expect(keeper.client.connected).toBe(true);
  });
});

/**
 * A connected client's PUBLISH waits on its authorization check while the ACL table is locked. The broker stops
 * reading that client meanwhile (its data waits in its own socket, not in the broker), does not count the pause
 * against the client's keep alive, and delivers everything once the check answers.
 */
describe('a publish waiting on a locked PostgreSQL ACL table', () => {
  const PACKETS = 64;
  const PAYLOAD_BYTES = 512 * 1024;
  let fixture: AclFixture;
  let db: pg.Client;
  let table: string;
  let pb: PolicyBroker;
  let subscriber: Connected | undefined;

  beforeAll(async () => {
    fixture = await startAclFixture('publish_acl', { timeout_ms: 30_000 });
    ({ db, table, pb } = fixture);
  });

  afterAll(async () => {
    await subscriber?.client.endAsync(true);
    await stopAclFixture(fixture);
  });

  it('stops reading the client, keeps it past its keep alive, and delivers all 32 MiB in order', async () => {
    subscriber = await connectClient(pb.broker.url, { clientId: 'sql-bp-sub', protocolVersion: 5 });
    await subscriber.client.subscribeAsync('chat/bp', { qos: 0 });
    const timedOut = (): boolean =>
      pb.broker.logs.some((l) => l.msg === 'disconnecting client: keep alive timeout' && l.clientId === 'sql-bp-pub');
    const publisher = await RawClient.connect(pb.broker.port, 4);
    publisher.send(connectPacket('sql-bp-pub', { keepalive: 1 }));
    expect((await publisher.next('connack')).returnCode).toBe(0);

    await db.query('BEGIN');
    await db.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    try {
      publisher.sendBytes(Buffer.concat(burstOfPublishes('chat/bp', PACKETS, PAYLOAD_BYTES)));
      const unsent = await settledUnsent(() => publisher.socket.writableLength);
      expect(unsent).toBeGreaterThan((PACKETS * PAYLOAD_BYTES) / 2);
      // Past one and a half keep alive periods (and the broker's 250 ms timer): the client sent all along, the
      // broker was the one not reading, so it must not be disconnected for silence.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect(timedOut()).toBe(false);
      expect(publisher.closed).toBe(false);
    } finally {
      await db.query('COMMIT');
    }
    const delivered = await until(
      () => {
        const got = subscriber!.received.messages.filter((m) => m.topic === 'chat/bp');
        return got.length === PACKETS && got;
      },
      `${PACKETS} deliveries`,
      30_000,
    );
    expect(delivered.map((m) => Buffer.from(m.packet.payload).readUInt32BE(0))).toEqual([...Array(PACKETS).keys()]);
    expect(publisher.closed).toBe(false);
    expect(timedOut()).toBe(false);
    publisher.end();
  }, 60_000);
});
