import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import { Secret, constantTimeEqual } from '../../../authn/secret.js';
import type { Authenticator, AuthnOutcome, ConnectAttempt } from '../../../authn/types.js';
import type { GuardClient } from '../../../src/guard/ban-entry.js';
import { guardConfigSchema, type GuardConfigInput } from '../../../src/guard/config.js';
import { Guard } from '../../../src/guard/guard.js';
import { identity } from '../authz/helpers.js';

const MINUTE = 60_000;

/** A password authenticator implementing the real interface that counts how often the costly verification ran. */
class CountingVerifier implements Authenticator {
  readonly id = 'counting';
  readonly type = 'password-file';
  calls = 0;
  constructor(private readonly passwords: Record<string, string>) {}
  async authenticate(attempt: ConnectAttempt): Promise<AuthnOutcome> {
    this.calls += 1;
    const expected = attempt.username === undefined ? undefined : this.passwords[attempt.username];
    const given = attempt.password?.reveal() ?? Buffer.alloc(0);
    if (expected !== undefined && constantTimeEqual(Buffer.from(expected), given))
      return {
        kind: 'allow',
        identity: identity({ clientId: attempt.clientId, username: attempt.username, authenticator: this.id }),
      };
    return { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'wrong password' };
  }
}

/** The lead's CONNECT order: guard check, then the verifier, then the verdict back to the guard. */
async function connect(guard: Guard, verifier: Authenticator, client: GuardClient, password: string) {
  const decision = guard.checkConnect(client);
  if (decision.kind === 'refuse') return decision.reason;
  const attempt: ConnectAttempt = {
    listener: 'tcp',
    clientId: client.clientId,
    username: client.username,
    password: new Secret(password),
    protocolVersion: 5,
    peer: { address: client.address, port: 50000 },
    tls: undefined,
    authMethod: undefined,
    authData: undefined,
  };
  const outcome = await verifier.authenticate(attempt, AbortSignal.timeout(1000));
  guard.recordAuthResult(client, outcome.kind === 'allow');
  return outcome.kind === 'allow' ? 'success' : 'badUserNameOrPassword';
}

async function harness(config: GuardConfigInput = {}) {
  let t = Date.parse('2026-01-01T00:00:00Z');
  const events: AuditEvent[] = [];
  // Flapping off: these tests isolate the throttle.
  const guard = await Guard.open({
    config: guardConfigSchema.parse({ flapping: { enabled: false }, ...config }),
    dataDir: undefined,
    now: () => t,
    onEvent: (e) => events.push(e),
  });
  const verifier = new CountingVerifier({ alice: 'correct horse', bob: 'battery staple' });
  return {
    guard,
    verifier,
    events,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

const attacker: GuardClient = { clientId: 'probe', username: 'alice', address: '203.0.113.66' };

describe('brute-force throttling', () => {
  it('refuses a username after five wrong passwords without running the verifier', async () => {
    const h = await harness();
    const answers: string[] = [];
    for (let i = 0; i < 5; i += 1) answers.push(await connect(h.guard, h.verifier, attacker, `guess-${i}`));
    expect(answers).toEqual(Array(5).fill('badUserNameOrPassword'));
    expect(h.verifier.calls).toBe(5);
    for (let i = 0; i < 20; i += 1) answers.push(await connect(h.guard, h.verifier, attacker, 'correct horse'));
    expect(answers.slice(5)).toEqual(Array(20).fill('connectionRateExceeded'));
    expect(h.verifier.calls).toBe(5);
    const throttled = h.events.filter((e) => e.event.action === 'guard.throttled');
    expect(throttled.map((e) => e.guard?.dimension)).toEqual(['username']);
    expect(throttled[0]?.guard).toMatchObject({ key: 'alice', count: 5, window_ms: 5 * MINUTE });
    expect(throttled[0]?.event.reason).not.toContain('guess');
  });

  it('returns the refusal event for the CONNECT step to record', async () => {
    const h = await harness();
    for (let i = 0; i < 5; i += 1) await connect(h.guard, h.verifier, attacker, 'nope');
    const decision = h.guard.checkConnect(attacker);
    expect(decision).toMatchObject({
      kind: 'refuse',
      reason: 'connectionRateExceeded',
      event: { event: { action: 'guard.throttle_refused', outcome: 'failure', code: 'connectionRateExceeded' } },
    });
  });

  it('lets the key try again once the lockout is over, and escalates repeat lockouts to a ban', async () => {
    const h = await harness();
    const lockoutLengths: number[] = [];
    for (let round = 0; round < 3; round += 1) {
      for (let i = 0; i < 5; i += 1) await connect(h.guard, h.verifier, attacker, 'wrong');
      const last = h.events.at(-1);
      lockoutLengths.push(Date.parse(last?.guard?.until ?? '') - Date.parse('2026-01-01T00:00:00Z'));
      const refusal = h.guard.checkConnect(attacker);
      expect(refusal.kind === 'refuse' && refusal.reason).toBe(round < 2 ? 'connectionRateExceeded' : 'banned');
      h.advance(2 * 60 * MINUTE);
      expect(h.guard.checkConnect(attacker).kind).toBe('pass');
    }
    const lock = h.events.filter((e) => e.actor === 'guard:throttle' && e.guard?.dimension === 'username');
    expect(lock.map((e) => e.event.action)).toEqual(['guard.throttled', 'guard.throttled', 'guard.banned']);
    // First lockout 1m, second 2m (doubled), third a 1h ban; each measured from its own start.
    expect(lock.map((e) => e.labels?.offence)).toEqual(['1', '2', '3']);
    expect(lockoutLengths[0]).toBe(MINUTE);
  });

  it('resets a username after a successful login', async () => {
    const h = await harness();
    for (let i = 0; i < 4; i += 1) await connect(h.guard, h.verifier, attacker, 'typo');
    expect(await connect(h.guard, h.verifier, attacker, 'correct horse')).toBe('success');
    for (let i = 0; i < 4; i += 1) await connect(h.guard, h.verifier, attacker, 'typo');
    expect(h.guard.checkConnect(attacker).kind).toBe('pass');
  });

  it('locks out an address spraying many usernames, but spares clients already known there', async () => {
    const h = await harness();
    expect(
      await connect(
        h.guard,
        h.verifier,
        { clientId: 'bob-1', username: 'bob', address: '203.0.113.66' },
        'battery staple',
      ),
    ).toBe('success');
    for (let i = 0; i < 20; i += 1)
      await connect(
        h.guard,
        h.verifier,
        { clientId: `spray-${i}`, username: `user${i}`, address: '203.0.113.66' },
        'Summer2026!',
      );
    const callsBefore = h.verifier.calls;
    expect(h.guard.checkConnect({ clientId: 'spray-x', username: 'user99', address: '203.0.113.66' })).toMatchObject({
      kind: 'refuse',
      reason: 'connectionRateExceeded',
    });
    expect(
      await connect(
        h.guard,
        h.verifier,
        { clientId: 'bob-1', username: 'bob', address: '203.0.113.66' },
        'battery staple',
      ),
    ).toBe('success');
    expect(h.verifier.calls).toBe(callsBefore + 1);
    expect(h.events.some((e) => e.event.action === 'guard.throttled' && e.guard?.dimension === 'ip')).toBe(true);
  });

  it('with spare_known_clients off, locks out every client of the address', async () => {
    const h = await harness({ throttle: { spare_known_clients: false } });
    await connect(
      h.guard,
      h.verifier,
      { clientId: 'bob-1', username: 'bob', address: '203.0.113.66' },
      'battery staple',
    );
    for (let i = 0; i < 20; i += 1)
      await connect(
        h.guard,
        h.verifier,
        { clientId: `spray-${i}`, username: `user${i}`, address: '203.0.113.66' },
        'x',
      );
    expect(h.guard.checkConnect({ clientId: 'bob-1', username: 'bob', address: '203.0.113.66' }).kind).toBe('refuse');
  });

  it('does not reset an address counter on success, so one valid account cannot launder a spray', async () => {
    const h = await harness();
    const bob = { clientId: 'bob-1', username: 'bob', address: '203.0.113.66' };
    for (let i = 0; i < 20; i += 1) {
      await connect(h.guard, h.verifier, bob, 'battery staple');
      await connect(h.guard, h.verifier, { clientId: `s${i}`, username: `user${i}`, address: '203.0.113.66' }, 'x');
    }
    expect(h.guard.checkConnect({ clientId: 's-next', username: 'user-next', address: '203.0.113.66' }).kind).toBe(
      'refuse',
    );
  });

  it('leaves other addresses and usernames alone', async () => {
    const h = await harness();
    for (let i = 0; i < 5; i += 1) await connect(h.guard, h.verifier, attacker, 'wrong');
    expect(h.guard.checkConnect({ clientId: 'b', username: 'bob', address: '203.0.113.66' }).kind).toBe('pass');
    expect(h.guard.checkConnect({ clientId: 'b', username: 'bob', address: '192.0.2.1' }).kind).toBe('pass');
  });

  it('counts nothing when disabled', async () => {
    const h = await harness({ throttle: { enabled: false } });
    for (let i = 0; i < 50; i += 1) await connect(h.guard, h.verifier, attacker, 'wrong');
    expect(h.verifier.calls).toBe(50);
  });

  it('lists active lockouts and lets an operator lift one', async () => {
    const h = await harness();
    for (let i = 0; i < 5; i += 1) await connect(h.guard, h.verifier, attacker, 'wrong');
    expect(h.guard.throttled()).toEqual([
      expect.objectContaining({ dimension: 'username', key: 'alice', reason: 'connectionRateExceeded' }),
    ]);
    expect(h.guard.releaseThrottle('username', 'alice', 'cli:0@unix-socket')).toBe(true);
    expect(h.guard.checkConnect(attacker).kind).toBe('pass');
  });

  it('lets a user whose password is guessed elsewhere still log in from her usual address', async () => {
    const h = await harness();
    const home = { clientId: 'alice-phone', username: 'alice', address: '198.51.100.10' };
    expect(await connect(h.guard, h.verifier, home, 'correct horse')).toBe('success');
    for (let i = 0; i < 5; i += 1) await connect(h.guard, h.verifier, attacker, `guess-${i}`);
    expect(h.guard.checkConnect(attacker)).toMatchObject({ kind: 'refuse', reason: 'connectionRateExceeded' });
    expect(await connect(h.guard, h.verifier, home, 'correct horse')).toBe('success');
  });

  it('revokes the known status on a failure, so a guesser behind the same NAT is throttled', async () => {
    const h = await harness();
    const home = { clientId: 'alice-phone', username: 'alice', address: '198.51.100.10' };
    await connect(h.guard, h.verifier, home, 'correct horse');
    const neighbour = { clientId: 'other', username: 'alice', address: '198.51.100.10' };
    for (let i = 0; i < 5; i += 1) await connect(h.guard, h.verifier, neighbour, `guess-${i}`);
    const calls = h.verifier.calls;
    expect(h.guard.checkConnect(neighbour).kind).toBe('refuse');
    expect(await connect(h.guard, h.verifier, neighbour, 'guess-6')).toBe('connectionRateExceeded');
    expect(h.verifier.calls).toBe(calls);
  });
});
