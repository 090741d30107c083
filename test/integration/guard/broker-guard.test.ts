import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import argon2 from 'argon2';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import { AuthenticationChain } from '../../../authn/chain.js';
import type { Authenticator, AuthnOutcome, ConnectAttempt } from '../../../authn/types.js';
import { matchesClient, type BanEntry } from '../../../src/guard/blocklist.js';
import { guardConfigSchema, type GuardConfigInput } from '../../../src/guard/config.js';
import { Guard } from '../../../src/guard/guard.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectClient, endAll, rawConnect, waitClientClosed } from '../../helpers/mqtt-clients.js';
import { identity } from '../../unit/authz/helpers.js';

const MINUTE = 60_000;

/** A password step running real argon2, counting how often it was asked to verify. */
class Argon2Step implements Authenticator {
  readonly id = 'argon2-counting';
  readonly type = 'password-file';
  verifications = 0;
  constructor(private readonly users: Map<string, string>) {}
  async authenticate(attempt: ConnectAttempt): Promise<AuthnOutcome> {
    const hash = attempt.username === undefined ? undefined : this.users.get(attempt.username);
    if (hash === undefined || attempt.password === undefined) return { kind: 'ignore', detail: 'unknown user' };
    this.verifications += 1;
    if (await argon2.verify(hash, attempt.password.reveal()))
      return {
        kind: 'allow',
        identity: identity({ clientId: attempt.clientId, username: attempt.username, authenticator: this.id }),
      };
    return { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'wrong password' };
  }
}

/** Vouches for whatever User Name the CONNECT carries: a stand-in for a password step, without the hashing. */
class TrustedNameStep implements Authenticator {
  readonly id = 'trusted-name';
  readonly type = 'fake';
  async authenticate(attempt: ConnectAttempt): Promise<AuthnOutcome> {
    if (attempt.username === undefined) return { kind: 'ignore', detail: 'no username' };
    return {
      kind: 'allow',
      identity: identity({ clientId: attempt.clientId, username: attempt.username, authenticator: this.id }),
    };
  }
}

let dataDir: string;
let t: number;
let running: TestBroker[];
let guards: Guard[];

beforeEach(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'bw-guard-broker-'));
  t = Date.parse('2026-01-01T00:00:00Z');
  running = [];
  guards = [];
});
afterEach(async () => {
  for (const broker of running) await broker.stop();
  // A guard's block list may still be saving into the data directory (a purge, a ban): it must finish first.
  for (const guard of guards) await guard.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

/**
 * A real broker with the guard in its CONNECT pipeline, guard events going to the broker's audit sink, and new bans
 * disconnecting matching live clients: the wiring the broker does in production.
 */
async function brokerWithGuard(config: GuardConfigInput = {}, extra: Parameters<typeof startBroker>[0] = {}) {
  // The guard exists before the broker it is given to; events go to the broker's audit sink once it does.
  const late: { broker?: TestBroker } = {};
  const early: AuditEvent[] = [];
  const guard = await Guard.open({
    config: guardConfigSchema.parse(config),
    dataDir,
    now: () => t,
    onEvent: (e) => (late.broker ? late.broker.audit.record(e) : early.push(e)),
  });
  guards.push(guard);
  guard.onBanAdded((entry: BanEntry) =>
    late.broker?.server.broker.disconnectBanned((client) => matchesClient(entry, client, t), entry.reason),
  );
  const broker = await startBroker({ ...extra, guard });
  late.broker = broker;
  for (const e of early) broker.audit.record(e);
  running.push(broker);
  return { broker, guard };
}

async function connackOf(port: number, clientId: string, version: 4 | 5 = 5, extra = {}): Promise<number | undefined> {
  const { client, connack } = await rawConnect(port, clientId, version, extra);
  client.end();
  return version === 5 ? connack.reasonCode : connack.returnCode;
}

describe('abuse protection in a running broker', () => {
  it('bans a client reconnecting in a loop with 0x8A and lets it back after the ban time', async () => {
    const { broker } = await startedForLoop();
    const codes: Array<number | undefined> = [];
    while (codes.length < 20 && codes.at(-1) !== 0x8a) {
      codes.push(await connackOf(broker.port, 'looping-device'));
      t += 1000;
    }
    // Client ids are counted after authentication: the 16th login trips the ban. The broker refuses that login
    // itself if it honours recordAuthResult's answer, otherwise the block list refuses the 17th at the first step.
    expect(codes.slice(0, 15)).toEqual(Array(15).fill(0));
    expect([16, 17]).toContain(codes.length);
    expect(codes.at(-1)).toBe(0x8a);
    expect(await connackOf(broker.port, 'looping-device', 4)).toBe(5);
    const detected = await broker.waitForAudit('guard.flapping_detected');
    expect(detected.guard).toMatchObject({
      dimension: 'client_id',
      key: 'looping-device',
      count: 16,
      window_ms: MINUTE,
    });
    await broker.waitForAudit('guard.blocked');
    t += 5 * MINUTE;
    expect(await connackOf(broker.port, 'looping-device')).toBe(0);
  });

  async function startedForLoop() {
    // Only the client-id dimension: every test client comes from 127.0.0.1, and this test is about one client.
    return brokerWithGuard({ flapping: { address: { enabled: false }, network: { enabled: false } } });
  }

  it('still catches a client that rotates its client id on every attempt', async () => {
    const { broker, guard } = await brokerWithGuard({ flapping: { network: { enabled: false } } });
    const codes: Array<number | undefined> = [];
    for (let i = 0; i < 16; i += 1) codes.push(await connackOf(broker.port, `rotating-${i}`));
    expect(codes[14]).toBe(0);
    expect(codes[15]).toBe(0x8a);
    expect(guard.list()).toEqual([
      expect.objectContaining({ kind: 'address', value: '127.0.0.1', by: 'guard:flapping' }),
    ]);
    expect(await connackOf(broker.port, 'brand-new-id')).toBe(0x8a);
  });

  it('in dry-run mode bans nothing but records what it would have banned', async () => {
    const { broker, guard } = await brokerWithGuard({ flapping: { dry_run: true } });
    for (let i = 0; i < 20; i += 1) expect(await connackOf(broker.port, 'looping-device')).toBe(0);
    expect(guard.list()).toEqual([]);
    const detected = await broker.waitForAudit('guard.flapping_detected');
    expect(detected.guard?.dry_run).toBe(true);
    expect(broker.audit.events.some((e) => e.event.action === 'guard.banned')).toBe(false);
  });

  describe('brute-force throttling', () => {
    let users: Map<string, string>;
    beforeAll(async () => {
      const hash = await argon2.hash('correct horse battery', {
        type: argon2.argon2id,
        memoryCost: 19_456,
        timeCost: 2,
        parallelism: 1,
      });
      users = new Map([['alice', hash]]);
    });

    it('refuses wrong-password retries with 0x9F without running argon2, then 0x8A once it escalates', async () => {
      const step = new Argon2Step(users);
      const authenticator = new AuthenticationChain({
        steps: [{ authenticator: step, onError: 'deny', timeoutMs: 5000 }],
        anonymous: false,
      });
      // alice may connect once the guard lets her through (the default policy admits only anonymous local clients).
      const policy = join(dataDir, 'users.policy.yaml');
      writeFileSync(
        policy,
        'rules:\n  - name: users-connect\n    allow: connect\n    subjects: { anonymous: false }\n',
      );
      const { broker } = await brokerWithGuard(
        { flapping: { enabled: false } },
        {
          authenticator,
          config: { authentication: { anonymous: false }, authorization: { watch: false, policy_files: [policy] } },
        },
      );
      const login = (password: string) =>
        connackOf(broker.port, 'alice-phone', 5, { username: 'alice', password: Buffer.from(password) });
      const codes: Array<number | undefined> = [];
      for (let i = 0; i < 5; i += 1) codes.push(await login(`guess-${i}`));
      expect(codes).toEqual(Array(5).fill(0x86));
      expect(step.verifications).toBe(5);
      for (let i = 0; i < 10; i += 1) codes.push(await login('correct horse battery'));
      expect(codes.slice(5)).toEqual(Array(10).fill(0x9f));
      expect(step.verifications).toBe(5);
      const throttled = await broker.waitForAudit('guard.throttled');
      expect(throttled.guard).toMatchObject({ dimension: 'username', key: 'alice', count: 5 });
      expect(JSON.stringify(broker.audit.events)).not.toContain('guess-');
      // Two more lockouts within the day escalate to a ban.
      for (let round = 0; round < 2; round += 1) {
        t += 2 * 60 * MINUTE;
        for (let i = 0; i < 5; i += 1) await login('wrong');
      }
      expect(await login('correct horse battery')).toBe(0x8a);
      expect(step.verifications).toBe(15);
      t += 2 * 60 * MINUTE;
      expect(await login('correct horse battery')).toBe(0);
    });
  });

  it('disconnects every live client a new ban matches, on each dimension, and nobody else', async () => {
    // Live clients are matched by their verified identity: these users are vouched for by a step, and anyone else
    // gets in anonymously.
    const policy = join(dataDir, 'all.policy.yaml');
    writeFileSync(policy, 'rules:\n  - name: all-connect\n    allow: connect\n    subjects: all\n');
    const { broker, guard } = await brokerWithGuard(
      {},
      {
        authenticator: new AuthenticationChain({
          steps: [{ authenticator: new TrustedNameStep(), onError: 'deny', timeoutMs: 5000 }],
          anonymous: true,
        }),
        config: { authorization: { watch: false, policy_files: [policy] } },
      },
    );
    const connect = (clientId: string, username: string) =>
      connectClient(broker.url, { clientId, username, protocolVersion: 5 }).then((c) => c.client);
    const a = await connect('meter-1', 'meter');
    const b = await connect('meter-2', 'meter');
    const c = await connect('thermo-1', 'thermo');
    const d = await connect('lamp-1', 'lamp');
    try {
      guard.ban({ kind: 'username', value: 'meter', reason: 'stolen credential', until: null }, 'cli:0@unix-socket');
      await Promise.all([waitClientClosed(a), waitClientClosed(b)]);
      expect([c.connected, d.connected]).toEqual([true, true]);
      guard.ban({ kind: 'client_id_regex', value: '^thermo-', reason: '', until: null }, 'cli:0@unix-socket');
      await waitClientClosed(c);
      expect(d.connected).toBe(true);
      guard.ban({ kind: 'cidr', value: '127.0.0.0/8', reason: '', until: t + MINUTE }, 'cli:0@unix-socket');
      await waitClientClosed(d);
      expect(await connackOf(broker.port, 'anyone')).toBe(0x8a);
    } finally {
      await endAll(a, b, c, d);
    }
  });

  it('keeps bans across a restart and lets them expire on schedule', async () => {
    const first = await brokerWithGuard();
    first.guard.ban({ kind: 'client_id', value: 'banned-forever', reason: '', until: null }, 'cli:0@unix-socket');
    first.guard.ban(
      { kind: 'client_id', value: 'banned-briefly', reason: '', until: t + 10 * MINUTE },
      'cli:0@unix-socket',
    );
    await first.guard.stop();
    await first.broker.stop();
    running.pop();
    const second = await brokerWithGuard();
    expect(await connackOf(second.broker.port, 'banned-forever')).toBe(0x8a);
    expect(await connackOf(second.broker.port, 'banned-briefly')).toBe(0x8a);
    t += 10 * MINUTE;
    expect(second.guard.purgeExpired().map((e) => e.value)).toEqual(['banned-briefly']);
    expect((await second.broker.waitForAudit('guard.ban_expired')).guard?.key).toBe('banned-briefly');
    expect(await connackOf(second.broker.port, 'banned-briefly')).toBe(0);
    expect(await connackOf(second.broker.port, 'banned-forever')).toBe(0x8a);
  });
});
