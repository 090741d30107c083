import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import {
  argonHash,
  closedPort,
  CODES,
  mosquittoPasswdHash,
  OPEN_POLICY,
  SecretLedger,
  tryConnect,
  writeUsers,
} from '../../helpers/authn-wire.js';
import type { TestBroker } from '../../helpers/broker.js';
import { rawConnect, runMosquitto } from '../../helpers/mqtt-clients.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';
import { startPostgres } from '../../helpers/services/postgres.js';
import type { SqlServiceInfo, Started } from '../../helpers/services/types.js';
import { createPgTable, freeze, seedUsers, tableName, thaw } from '../authn/sql-fixtures.js';

const ledger = new SecretLedger();
let dir: TempDir;
let policy: string;
let primaryFile: string;
let secondaryFile: string;
const pw = {
  alice: ledger.password('alice'),
  aliceInSecondary: ledger.password('alice2'),
  bob: ledger.password('bob'),
  legacy: ledger.password('legacy'),
  wrong: ledger.password('wrong'),
};

/** A password-file step; `unknown_user: ignore` so the chain moves on for names it does not hold. */
const fileStep = (id: string, file: string) => ({
  type: 'password-file',
  id,
  file,
  unknown_user: 'ignore',
  watch: false,
});

const brokerWith = (authentication: Record<string, unknown>, listener?: Record<string, unknown>) =>
  ledger.broker({
    config: { authentication, authorization: { watch: false, policy_files: [policy] } },
    ...(listener ? { listener } : {}),
  });

const lastDecision = (broker: TestBroker, clientId: string): AuditEvent | undefined =>
  broker.audit.events.filter((e) => e.event.action.startsWith('authn.') && e.mqtt?.client_id === clientId).at(-1);

let seq = 0;
const cid = (): string => `authn-wire-${++seq}`;

beforeAll(async () => {
  dir = tempDir('bulwark-authn-wire-');
  policy = dir.write('open.policy.yaml', OPEN_POLICY);
  primaryFile = writeUsers(dir, 'primary.yaml', {
    alice: { hash: await argonHash(pw.alice), groups: ['lab'] },
    legacy: { hash: mosquittoPasswdHash(dir, 'legacy', pw.legacy) },
  });
  secondaryFile = writeUsers(dir, 'secondary.yaml', {
    alice: { hash: await argonHash(pw.aliceInSecondary) },
    bob: { hash: await argonHash(pw.bob) },
  });
});

afterAll(async () => {
  for (const b of ledger.brokers) await b.stop();
  dir?.cleanup();
});

describe('the chain over the wire', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await brokerWith({
      anonymous: false,
      steps: [fileStep('primary', primaryFile), fileStep('secondary', secondaryFile)],
    });
  });

  for (const v of [5, 4] as const) {
    describe(`MQTT ${v === 5 ? '5' : '3.1.1'}`, () => {
      it('accepts a correct argon2id password and audits which step allowed it', async () => {
        const clientId = cid();
        const r = await tryConnect(broker.url, { protocolVersion: v, clientId, username: 'alice', password: pw.alice });
        expect(r.code).toBe(0);
        await r.client.endAsync();
        expect(lastDecision(broker, clientId)).toMatchObject({
          event: { action: 'authn.allowed', outcome: 'success' },
          user: { name: 'alice', groups: ['lab'] },
          authn: { by: 'primary' },
        });
      });

      it('refuses a wrong password as bad user name or password', async () => {
        const clientId = cid();
        const r = await tryConnect(broker.url, { protocolVersion: v, clientId, username: 'alice', password: pw.wrong });
        expect(r.code).toBe(CODES.badUserNameOrPassword[v]);
        expect(lastDecision(broker, clientId)).toMatchObject({
          event: { action: 'authn.denied', code: 'badUserNameOrPassword' },
          authn: { by: 'primary' },
        });
      });

      it('stops at the first deny: a password only the later step knows is refused, and the later step is never asked', async () => {
        const clientId = cid();
        const r = await tryConnect(broker.url, {
          protocolVersion: v,
          clientId,
          username: 'alice',
          password: pw.aliceInSecondary,
        });
        expect(r.code).toBe(CODES.badUserNameOrPassword[v]);
        expect(lastDecision(broker, clientId)?.authn?.steps?.map((s) => s.id)).toEqual(['primary']);
      });

      it('asks the next step when the first ignores, and the later allow decides', async () => {
        const clientId = cid();
        const r = await tryConnect(broker.url, { protocolVersion: v, clientId, username: 'bob', password: pw.bob });
        expect(r.code).toBe(0);
        await r.client.endAsync();
        const decisions = broker.audit.events.filter(
          (x) => x.event.action.startsWith('authn.') && x.mqtt?.client_id === clientId,
        );
        // One event per decision, naming every step consulted, not one per step.
        expect(decisions).toHaveLength(1);
        const e = decisions[0];
        expect(e?.authn?.by).toBe('secondary');
        expect(e?.authn?.steps?.map((s) => [s.id, s.answer])).toEqual([
          ['primary', 'ignore'],
          ['secondary', 'allow'],
        ]);
      });

      it('refuses a client every step ignores as not authorized when anonymous is off', async () => {
        const clientId = cid();
        const r = await tryConnect(broker.url, { protocolVersion: v, clientId, username: 'carol', password: pw.wrong });
        expect(r.code).toBe(CODES.notAuthorized[v]);
        const noCreds = await tryConnect(broker.url, { protocolVersion: v, clientId: cid() });
        expect(noCreds.code).toBe(CODES.notAuthorized[v]);
      });
    });
  }

  for (const v of [5, 4] as const) {
    it(`refuses an empty password as bad user name or password without asking later steps (MQTT ${v === 5 ? '5' : '3.1.1'})`, async () => {
      const clientId = cid();
      const { client, connack } = await rawConnect(broker.port, clientId, v, {
        username: 'bob',
        password: Buffer.alloc(0),
      });
      client.end();
      expect(v === 5 ? connack.reasonCode : connack.returnCode).toBe(CODES.badUserNameOrPassword[v]);
      expect(lastDecision(broker, clientId)?.authn?.steps?.map((s) => s.id)).toEqual(['primary']);
    });
  }

  it('skips a step whose when.listeners does not name this listener', async () => {
    const scoped = await brokerWith({
      anonymous: false,
      steps: [{ ...fileStep('other-only', secondaryFile), when: { listeners: ['other'] } }],
    });
    const clientId = cid();
    const r = await tryConnect(scoped.url, { protocolVersion: 5, clientId, username: 'bob', password: pw.bob });
    expect(r.code).toBe(0x87);
    expect(lastDecision(scoped, clientId)?.authn?.steps?.[0]?.answer).toBe('skipped');
  });

  it('publishes with mosquitto_pub using an imported mosquitto_passwd hash and an argon2id hash, in both versions', async () => {
    for (const version of ['5', '311']) {
      for (const [user, password] of [
        ['legacy', pw.legacy],
        ['alice', pw.alice],
      ] as const) {
        const ok = await runMosquitto('mosquitto_pub', [
          ...['-h', '127.0.0.1', '-p', String(broker.port), '-V', version, '-i', cid()],
          ...['-u', user, '-P', password, '-t', 'wire/test', '-m', 'hello', '-q', '1'],
        ]);
        ledger.extra.push(ok.stdout, ok.stderr);
        expect(ok.code, `${user} over ${version}: ${ok.stderr}`).toBe(0);
      }
      const bad = await runMosquitto('mosquitto_pub', [
        ...['-h', '127.0.0.1', '-p', String(broker.port), '-V', version, '-i', cid()],
        ...['-u', 'legacy', '-P', pw.wrong, '-t', 'wire/test', '-m', 'hello'],
      ]);
      ledger.extra.push(bad.stdout, bad.stderr);
      expect(bad.code).not.toBe(0);
    }
    const legacyAllowed = broker.audit.events.filter(
      (e) => e.event.action === 'authn.allowed' && e.user?.name === 'legacy',
    );
    expect(legacyAllowed.map((e) => e.mqtt?.protocol_version).sort()).toEqual([4, 5]);
  });
});

describe('anonymous and per-listener chains', () => {
  for (const v of [5, 4] as const) {
    it(`admits a client every step ignores as anonymous when the chain allows it (MQTT ${v === 5 ? '5' : '3.1.1'}), without its unverified user name`, async () => {
      const broker = await brokerWith({ anonymous: true, steps: [fileStep('primary', primaryFile)] });
      const clientId = cid();
      const r = await tryConnect(broker.url, { protocolVersion: v, clientId, username: 'mallory', password: pw.wrong });
      expect(r.code).toBe(0);
      await r.client.endAsync();
      const e = lastDecision(broker, clientId);
      expect(e?.authn?.by).toBe('anonymous');
      // A name nobody verified is not the identity's user name.
      expect(e?.user?.groups).toEqual([]);
    });
  }

  it("uses the listener's own chain instead of the global one", async () => {
    const broker = await brokerWith(
      { anonymous: true, steps: [] },
      { authentication: { anonymous: false, steps: [fileStep('listener-file', secondaryFile)] } },
    );
    expect((await tryConnect(broker.url, { protocolVersion: 5, clientId: cid() })).code).toBe(0x87);
    const r = await tryConnect(broker.url, { protocolVersion: 5, clientId: cid(), username: 'bob', password: pw.bob });
    expect(r.code).toBe(0);
    await r.client.endAsync();
  });
});

describe('a password changed in the file while the broker runs', () => {
  it('refuses the old password and accepts the new one without a restart, though the old one was cached', async () => {
    const oldPw = ledger.password('old');
    const newPw = ledger.password('new');
    const file = writeUsers(dir, 'live.yaml', { carol: { hash: await argonHash(oldPw) } });
    const broker = await brokerWith({
      anonymous: false,
      steps: [{ type: 'password-file', id: 'live', file, unknown_user: 'deny', watch: true, reload_debounce_ms: 20 }],
    });
    const login = (password: string, v: 4 | 5 = 5) =>
      tryConnect(broker.url, { protocolVersion: v, clientId: cid(), username: 'carol', password });
    for (let i = 0; i < 2; i++) {
      const r = await login(oldPw);
      expect(r.code).toBe(0);
      await r.client.endAsync();
    }
    // Written next to the file and renamed over it, as editors and `bulwark passwd` do.
    const next = writeUsers(dir, 'live.yaml.tmp', { carol: { hash: await argonHash(newPw) } });
    renameSync(next, file);
    await broker.waitForAudit('credentials.reloaded');
    expect((await login(oldPw)).code).toBe(0x86);
    expect((await login(oldPw, 4)).code).toBe(4);
    const r = await login(newPw);
    expect(r.code).toBe(0);
    await r.client.endAsync();
  });
});

describe('a backend that cannot be reached', () => {
  const sqlStep = async (extra: Record<string, unknown> = {}) => ({
    type: 'postgres',
    id: 'db',
    host: '127.0.0.1',
    port: await closedPort(),
    database: 'nothing',
    user: 'nobody',
    password: ledger.password('db'),
    connect_timeout_ms: 300,
    query_timeout_ms: 300,
    query: 'SELECT password_hash FROM users WHERE username = ${username}',
    ...extra,
  });

  for (const v of [5, 4] as const) {
    it(`fails closed with server unavailable (MQTT ${v === 5 ? '5' : '3.1.1'}) even though a later step would allow`, async () => {
      const broker = await brokerWith({
        anonymous: false,
        steps: [await sqlStep(), fileStep('secondary', secondaryFile)],
      });
      const clientId = cid();
      const r = await tryConnect(broker.url, { protocolVersion: v, clientId, username: 'bob', password: pw.bob });
      expect(r.code).toBe(CODES.serverUnavailable[v]);
      expect(lastDecision(broker, clientId)).toMatchObject({
        event: { code: 'serverUnavailable' },
        authn: { by: 'db', steps: [{ id: 'db', answer: 'error' }] },
      });
    });
  }

  it('with on_error: next, moves on to the next step, which decides', async () => {
    const broker = await brokerWith({
      anonymous: false,
      steps: [await sqlStep({ on_error: 'next' }), fileStep('secondary', secondaryFile)],
    });
    const clientId = cid();
    const r = await tryConnect(broker.url, { protocolVersion: 4, clientId, username: 'bob', password: pw.bob });
    expect(r.code).toBe(0);
    await r.client.endAsync();
    expect(lastDecision(broker, clientId)?.authn?.by).toBe('secondary');
  });
});

describe('a dedicated PostgreSQL frozen mid-test, then thawed', () => {
  let started: Started<SqlServiceInfo>;
  let broker: TestBroker;
  let sqlDir: TempDir;
  let user: { username: string; password: string };

  beforeAll(async () => {
    sqlDir = tempDir('bulwark-authn-wire-pg-');
    started = await startPostgres(join(sqlDir.path, 'pg'));
    if ('missing' in started) return;
    const db = started.info;
    const table = tableName();
    const users = await seedUsers();
    for (const u of users) ledger.secret(u.password);
    ledger.secret(db.password);
    await createPgTable(db, table, users);
    user = users.find((u) => u.username === 'bcrypt-user')!;
    broker = await ledger.broker({
      config: {
        authentication: {
          anonymous: false,
          // No cache, so every CONNECT reaches the database; a low threshold so the breaker opens in this test.
          verification: { cache_max_entries: 0, breaker_failure_threshold: 2, breaker_reset_ms: 300 },
          steps: [
            {
              type: 'postgres',
              id: 'pg',
              host: db.host,
              port: db.port,
              database: db.database,
              user: db.user,
              password: db.password,
              connect_timeout_ms: 400,
              query_timeout_ms: 400,
              query: `SELECT password_hash, algorithm, salt, is_superuser, groups FROM ${table} WHERE username = \${username}`,
            },
          ],
        },
        authorization: { watch: false, policy_files: [policy] },
      },
    });
  }, 90_000);

  afterAll(async () => {
    if (started && 'stop' in started) await started.stop();
    sqlDir?.cleanup();
  }, 60_000);

  it('answers server unavailable in both versions while frozen, and accepts again after it thaws without a restart', async (ctx) => {
    if ('missing' in started) return ctx.skip(started.missing);
    const login = (v: 4 | 5) =>
      tryConnect(broker.url, { protocolVersion: v, clientId: cid(), username: user.username, password: user.password });
    const before = await login(5);
    expect(before.code).toBe(0);
    await before.client.endAsync();

    const frozen = freeze(started.info.pid);
    try {
      expect((await login(5)).code).toBe(0x88);
      expect((await login(4)).code).toBe(3);
      await broker.waitForAudit('authn.backend_unavailable');
    } finally {
      thaw(frozen);
    }

    let code = -1;
    for (let i = 0; i < 100 && code !== 0; i++) {
      const r = await login(i % 2 === 0 ? 4 : 5);
      code = r.code;
      if (code === 0) await r.client.endAsync();
      else await new Promise((r2) => setTimeout(r2, 50));
    }
    expect(code).toBe(0);
    await broker.waitForAudit('authn.backend_recovered');
  }, 60_000);
});

describe('secrets', () => {
  it('never appear in any log line or audit event these tests produced', () => {
    expect(ledger.brokers.length).toBeGreaterThan(0);
    expect(ledger.corpus().length).toBeGreaterThan(20);
    expect(ledger.leaks()).toEqual([]);
  });
});
