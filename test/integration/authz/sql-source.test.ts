import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import { Secret } from '../../../authn/secret.js';
import { ChainAuthorizer } from '../../../authz/authorizer.js';
import { authorizationConfigSchema } from '../../../authz/config.js';
import { createAuthorization, type AuthorizationSubsystem } from '../../../authz/create.js';
import { SqlAclSource, type SqlAclSourceOptions, type SqlDialect } from '../../../authz/sources/sql.js';
import type { AccessRequest } from '../../../authz/types.js';
import { jsonLogSink } from '../../helpers/json-log-sink.js';
import type { SqlServiceInfo } from '../../helpers/services/types.js';
import { identity, request } from '../../unit/authz/helpers.js';

interface Row {
  username: string | null;
  clientid: string | null;
  permission: string;
  action: string;
  topic: string;
  qos: number | null;
  retain: boolean | null;
}

const rows: Row[] = [
  {
    username: 'alice',
    clientid: null,
    permission: 'allow',
    action: 'all',
    topic: 'sensors/${username}/#',
    qos: null,
    retain: null,
  },
  {
    username: 'alice',
    clientid: null,
    permission: 'deny',
    action: 'publish',
    topic: 'sensors/alice/secret',
    qos: null,
    retain: null,
  },
  {
    username: null,
    clientid: 'gw-1',
    permission: 'allow',
    action: 'publish',
    topic: 'gateways/${clientid}/up',
    qos: 1,
    retain: false,
  },
];

/** One SQL table in the shared test database, and a way to change it. */
interface Db {
  exec(sql: string, values?: unknown[]): Promise<void>;
  close(): Promise<void>;
}

async function pgDb(info: SqlServiceInfo): Promise<Db> {
  const client = new pg.Client({
    host: info.host,
    port: info.port,
    user: info.user,
    password: info.password,
    database: info.database,
  });
  await client.connect();
  return {
    exec: async (sql, values) => {
      await client.query(sql, values);
    },
    close: () => client.end(),
  };
}

async function mysqlDb(info: SqlServiceInfo): Promise<Db> {
  const conn = await mysql.createConnection({
    host: info.host,
    port: info.port,
    user: info.user,
    password: info.password,
    database: info.database,
  });
  return {
    exec: async (sql, values) => {
      await conn.query(sql, values);
    },
    close: () => conn.end(),
  };
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const address = server.address();
  await new Promise<void>((res) => server.close(() => res()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

const dialects = [
  { type: 'postgres', service: 'postgres', open: pgDb, retainType: 'boolean', sleep: 'pg_sleep(1)' },
  { type: 'mysql', service: 'mariadb', open: mysqlDb, retainType: 'boolean', sleep: '(SELECT SLEEP(1) AS s) AS slow' },
] as const;

for (const d of dialects) {
  describe(`${d.type} ACL source against a real ${d.service}`, () => {
    const info = inject(d.service);
    const table = `authz_acl_${randomBytes(4).toString('hex')}`;
    const query = `SELECT permission, action, topic, qos, retain FROM ${table} WHERE username = \${username} OR clientid = \${clientid}`;
    let db: Db;
    let dir: string;
    let sub: AuthorizationSubsystem;

    const service = (): SqlServiceInfo => {
      // The harness could not start the database: fail with its reason rather than pass silently.
      if ('missing' in info) throw new Error(`${d.service} unavailable: ${info.missing}`);
      return info;
    };

    type SourceOverrides = { query?: string; host?: string; port?: number; poolSize?: number; ttl?: number } & Partial<
      Pick<
        SqlAclSourceOptions,
        'now' | 'queryTimeoutMs' | 'breaker' | 'maxQueuedLookups' | 'onAvailabilityChange' | 'logger'
      >
    >;
    const source = (over: SourceOverrides = {}) => {
      const s = service();
      const { query: text, host, port, poolSize, ttl, ...options } = over;
      return new SqlAclSource({
        id: d.type,
        dialect: d.type as SqlDialect,
        query: text ?? query,
        connection: {
          host: host ?? s.host,
          port: port ?? s.port,
          user: s.user,
          password: new Secret(s.password),
          database: s.database,
          ...(poolSize === undefined ? {} : { poolSize }),
        },
        cacheTtlMs: ttl ?? 60_000,
        cacheMaxEntries: 100,
        queryTimeoutMs: 5_000,
        ...options,
      });
    };
    /** The ACL query, taking `seconds` per run (the sleep sits in FROM, so it runs once per query). */
    const slowQuery = (seconds: string) =>
      `SELECT permission, action, topic FROM ${table}, ${d.sleep.replace('1', seconds)} WHERE username = \${username}`;

    beforeAll(async () => {
      const s = service();
      db = await d.open(s);
      await db.exec(
        `CREATE TABLE ${table} (username VARCHAR(64), clientid VARCHAR(64), permission VARCHAR(8) NOT NULL, action VARCHAR(32) NOT NULL, topic VARCHAR(255) NOT NULL, qos INTEGER, retain ${d.retainType})`,
      );
      for (const r of rows) {
        await db.exec(
          d.type === 'postgres'
            ? `INSERT INTO ${table} VALUES ($1, $2, $3, $4, $5, $6, $7)`
            : `INSERT INTO ${table} VALUES (?, ?, ?, ?, ?, ?, ?)`,
          [r.username, r.clientid, r.permission, r.action, r.topic, r.qos, r.retain],
        );
      }
      dir = mkdtempSync(join(tmpdir(), 'bulwark-authz-sql-'));
      const policy = join(dir, 'site.policy.yaml');
      writeFileSync(
        policy,
        "rules:\n  - name: public-read\n    allow: [subscribe, receive]\n    subjects: all\n    topics: ['public/#']\n",
      );
      const passwordFile = join(dir, 'db-password');
      writeFileSync(passwordFile, `${s.password}\n`);
      sub = createAuthorization(
        authorizationConfigSchema.parse({
          policy_files: [policy],
          watch: false,
          sources: [
            {
              type: d.type,
              host: s.host,
              port: s.port,
              user: s.user,
              password_file: passwordFile,
              database: s.database,
              query,
            },
            { type: 'file' },
          ],
        }),
        { baseDir: dir },
      );
      await sub.start();
    });

    afterAll(async () => {
      await sub?.stop();
      await db?.exec(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
      await db?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const alice = identity({ username: 'alice', clientId: 'alice-1' });

    it('allows from a row with a placeholder: first as a promise, then synchronously from the cache', async () => {
      const req = request('publish', 'sensors/alice/temp', { identity: alice });
      const first = sub.authorizer.check(req);
      expect(first).toBeInstanceOf(Promise);
      expect(await first).toMatchObject({ allowed: true, rule: { source: d.type, name: 'row-1' } });
      const again = sub.authorizer.check({ ...req, topic: 'sensors/alice/humidity' });
      expect(again).not.toBeInstanceOf(Promise);
      expect(again).toMatchObject({ allowed: true });
    });

    it('a deny row wins over an allow row', async () => {
      const d2 = await sub.authorizer.check(request('publish', 'sensors/alice/secret', { identity: alice }));
      expect(d2).toMatchObject({ allowed: false, rule: { name: 'row-2' } });
    });

    it('selects rows by client id, with qos and retain conditions', async () => {
      const gw = identity({ username: undefined, clientId: 'gw-1', anonymous: true });
      expect(
        await sub.authorizer.check(request('publish', 'gateways/gw-1/up', { identity: gw, qos: 1 })),
      ).toMatchObject({
        allowed: true,
      });
      expect(
        (await sub.authorizer.check(request('publish', 'gateways/gw-1/up', { identity: gw, qos: 2 }))).allowed,
      ).toBe(false);
      expect(
        (await sub.authorizer.check(request('publish', 'gateways/gw-1/up', { identity: gw, qos: 1, retain: true })))
          .allowed,
      ).toBe(false);
    });

    it('a client without rows falls through to the policy file', async () => {
      const bob = identity({ username: 'bob', clientId: 'bob-1' });
      expect(await sub.authorizer.check(request('subscribe', 'public/#', { identity: bob }))).toMatchObject({
        allowed: true,
        rule: { source: 'file', name: 'public-read' },
      });
      expect((await sub.authorizer.check(request('publish', 'sensors/alice/temp', { identity: bob }))).allowed).toBe(
        false,
      );
    });

    it('an injection attempt in the username is only ever data', async () => {
      const evil = identity({ username: "x' OR '1'='1", clientId: "y' OR 1=1 -- " });
      expect((await sub.authorizer.check(request('publish', 'sensors/alice/temp', { identity: evil }))).allowed).toBe(
        false,
      );
      const s = source();
      await s.start();
      try {
        expect(await s.authorize(request('publish', 'sensors/alice/temp', { identity: evil }))).toEqual({
          kind: 'nomatch',
        });
      } finally {
        await s.stop();
      }
    });

    it('a changed table is read again once the cache TTL has passed', async () => {
      let now = 0;
      const s = source({ ttl: 1_000, now: () => now });
      await s.start();
      const carol = identity({ username: 'carol', clientId: 'carol-1' });
      const req: AccessRequest = request('publish', 'carol/x', { identity: carol });
      try {
        expect(await s.authorize(req)).toEqual({ kind: 'nomatch' });
        await db.exec(
          d.type === 'postgres'
            ? `INSERT INTO ${table} (username, permission, action, topic) VALUES ($1, 'allow', 'publish', 'carol/#')`
            : `INSERT INTO ${table} (username, permission, action, topic) VALUES (?, 'allow', 'publish', 'carol/#')`,
          ['carol'],
        );
        expect(s.authorize(req)).toEqual({ kind: 'nomatch' });
        now += 1_000;
        expect(await s.authorize(req)).toMatchObject({ kind: 'allow' });
      } finally {
        await s.stop();
      }
    });

    it('an unreachable database denies (fail closed); with on_error: next the next source decides', async () => {
      const port = await closedPort();
      const down = source({ port });
      await down.start();
      const fallback = {
        source: { id: 'file', authorize: () => ({ kind: 'allow', rule: { source: 'file', name: 'x' } }) as const },
        onError: 'deny' as const,
        timeoutMs: 1_000,
        cacheable: true,
      };
      try {
        const closed = new ChainAuthorizer([
          { source: down, onError: 'deny', timeoutMs: 5_000, cacheable: false },
          fallback,
        ]);
        expect(await closed.check(request('publish', 'sensors/alice/x', { identity: alice }))).toMatchObject({
          allowed: false,
          rule: { source: d.type, name: 'source-error' },
        });
        const open = new ChainAuthorizer([
          { source: down, onError: 'next', timeoutMs: 5_000, cacheable: false },
          fallback,
        ]);
        expect((await open.check(request('publish', 'sensors/alice/x', { identity: alice }))).allowed).toBe(true);
      } finally {
        await down.stop();
      }
    });

    it('a failing database opens a breaker: lookups fail fast without reaching it, said once, and a probe recovers', async () => {
      const s = service();
      // In front of the real database: refuses every connection while `up` is false, forwards once it is true.
      let up = false;
      let connections = 0;
      const open = new Set<Socket>();
      const forwarder = createServer((client) => {
        connections++;
        open.add(client);
        client.on('close', () => open.delete(client));
        if (!up) {
          client.destroy();
          return;
        }
        const upstream = connect(s.port, s.host);
        open.add(upstream);
        upstream.on('close', () => open.delete(upstream));
        client.on('error', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
        client.pipe(upstream).pipe(client);
      });
      await new Promise<void>((res) => forwarder.listen(0, '127.0.0.1', res));
      let now = 1_000_000;
      const availability: AuditEvent[] = [];
      const captured = jsonLogSink();
      const logger = pino({ level: 'info' }, captured.sink);
      const flaky = source({
        host: '127.0.0.1',
        port: (forwarder.address() as AddressInfo).port,
        breaker: { failureThreshold: 2, resetMs: 10_000 },
        onAvailabilityChange: (event) => availability.push(event),
        now: () => now,
        logger,
      });
      await flaky.start();
      const chain = new ChainAuthorizer([{ source: flaky, onError: 'deny', timeoutMs: 5_000, cacheable: false }], {
        logger,
      });
      const ask = (clientId: string) =>
        chain.check(request('publish', 'sensors/alice/x', { identity: identity({ username: 'alice', clientId }) }));
      const failed = () => captured.logs.filter((l) => l.event === 'authz.source_failed').length;
      try {
        for (const clientId of ['a-1', 'a-2']) {
          expect(await ask(clientId)).toMatchObject({ allowed: false, rule: { name: 'source-error' } });
        }
        const reached = connections;
        expect(reached).toBeGreaterThanOrEqual(2);
        expect(availability.map((e) => e.event.action)).toEqual(['authz.source_unavailable']);
        expect(availability[0]).toMatchObject({ authz: { source: d.type }, event: { outcome: 'failure' } });
        expect(failed()).toBe(2);
        // Open: denied as before (on_error: deny), but the database is not asked and the log is not written again.
        for (const clientId of ['a-3', 'a-4', 'a-5']) {
          expect(await ask(clientId)).toMatchObject({ allowed: false, rule: { name: 'source-error' } });
        }
        expect(connections).toBe(reached);
        expect(failed()).toBe(2);
        expect(captured.logs.filter((l) => l.event === 'authz.source_unavailable')).toHaveLength(1);
        // The database is back; after the reset period one probe finds it and the rows decide again.
        up = true;
        now += 10_000;
        expect(await ask('a-6')).toMatchObject({ allowed: true });
        expect(availability.map((e) => e.event.action)).toEqual(['authz.source_unavailable', 'authz.source_recovered']);
      } finally {
        await flaky.stop();
        for (const socket of open) socket.destroy();
        await new Promise<void>((res) => forwarder.close(() => res()));
      }
    });

    it('a flood of new identities is refused beyond the pool and its queue, and never opens the breaker', async () => {
      const availability: AuditEvent[] = [];
      const captured = jsonLogSink();
      const logger = pino({ level: 'info' }, captured.sink);
      // One connection and one waiting lookup; each query takes 0.3 s, and a single failure would open the breaker.
      // Lookups beyond those two are refused at once, as overload: not failures of the database.
      const busy = source({
        query: slowQuery('0.3'),
        poolSize: 1,
        queryTimeoutMs: 3_000,
        breaker: { failureThreshold: 1, resetMs: 60_000 },
        maxQueuedLookups: 1,
        onAvailabilityChange: (event) => availability.push(event),
        logger,
      });
      await busy.start();
      const chain = new ChainAuthorizer([{ source: busy, onError: 'deny', timeoutMs: 5_000, cacheable: false }], {
        logger,
      });
      try {
        const decisions = await Promise.all(
          ['f-1', 'f-2', 'f-3', 'f-4', 'f-5'].map((clientId) =>
            chain.check(request('publish', 'sensors/alice/x', { identity: identity({ username: 'alice', clientId }) })),
          ),
        );
        // The first two were answered by the table; the other three found the connection and the queue taken.
        expect(decisions.map((d) => d.allowed)).toEqual([true, true, false, false, false]);
        for (const refused of decisions.slice(2)) expect(refused.rule).toMatchObject({ name: 'source-error' });
        expect(availability).toEqual([]);
        expect(captured.logs.filter((l) => l.event === 'authz.source_saturated')).toHaveLength(1);
        expect(captured.logs.filter((l) => l.event === 'authz.source_failed')).toEqual([]);
      } finally {
        await busy.stop();
      }
    });

    it('a lookup whose wait for a connection outlives its deadline is saturation, not a failure logged per request', async () => {
      const captured = jsonLogSink();
      const logger = pino({ level: 'info' }, captured.sink);
      // One connection, 0.6 s per query, a 1 s deadline: the first two lookups hold the connection for 1.2 s between
      // them, so the third, queued behind both, reaches its deadline while still waiting.
      const busy = source({
        query: slowQuery('0.6'),
        poolSize: 1,
        queryTimeoutMs: 1_000,
        breaker: { failureThreshold: 1, resetMs: 60_000 },
        maxQueuedLookups: 10,
        logger,
      });
      await busy.start();
      const chain = new ChainAuthorizer([{ source: busy, onError: 'deny', timeoutMs: 5_000, cacheable: false }], {
        logger,
      });
      try {
        const decisions = await Promise.all(
          ['w-1', 'w-2', 'w-3'].map((clientId) =>
            chain.check(request('publish', 'sensors/alice/x', { identity: identity({ username: 'alice', clientId }) })),
          ),
        );
        expect(decisions.map((d) => d.allowed)).toEqual([true, true, false]);
        expect(decisions[2]?.rule).toMatchObject({ name: 'source-error' });
        // A flood of such waits would otherwise write one warning per request: the log the bound is there to spare.
        expect(captured.logs.filter((l) => l.event === 'authz.source_failed')).toEqual([]);
        expect(captured.logs.filter((l) => l.event === 'authz.source_saturated')).toHaveLength(1);
        expect(busy.available).toBe(true);
      } finally {
        await busy.stop();
      }
    });

    it('lookups still waiting for a connection when the source stops do not open its breaker', async () => {
      const availability: AuditEvent[] = [];
      // One connection, 0.3 s per query, two failures open the breaker: the two lookups waiting behind the first.
      // (The first may fail too: MariaDB's pool ends the connection a query runs on. That one is not counted here.)
      const busy = source({
        query: slowQuery('0.3'),
        poolSize: 1,
        queryTimeoutMs: 3_000,
        breaker: { failureThreshold: 2, resetMs: 60_000 },
        onAvailabilityChange: (event) => availability.push(event),
      });
      await busy.start();
      const lookups = ['s-1', 's-2', 's-3'].map((clientId) =>
        Promise.resolve(
          busy.authorize(
            request('publish', 'sensors/alice/x', { identity: identity({ username: 'alice', clientId }) }),
          ),
        ).catch(() => undefined),
      );
      await busy.stop();
      await Promise.all(lookups);
      // The closed pool the waiting lookups found says nothing about the database: no outage recorded.
      expect(availability).toEqual([]);
      expect(busy.available).toBe(true);
    });

    it('a query slower than the deadline denies with a timeout', async () => {
      const slow = source({
        query: slowQuery('1'),
      });
      await slow.start();
      try {
        const chain = new ChainAuthorizer([{ source: slow, onError: 'deny', timeoutMs: 100, cacheable: false }]);
        expect(await chain.check(request('publish', 'sensors/alice/x', { identity: alice }))).toMatchObject({
          allowed: false,
          rule: { name: 'source-timeout' },
        });
      } finally {
        await slow.stop();
      }
    });
  });
}
