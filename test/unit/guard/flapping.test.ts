import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import type { GuardClient } from '../../../src/guard/ban-entry.js';
import { guardConfigSchema, type GuardConfigInput } from '../../../src/guard/config.js';
import { FlappingDetector } from '../../../src/guard/flapping.js';
import { Guard, type GuardDecision } from '../../../src/guard/guard.js';

const MINUTE = 60_000;

async function harness(config: GuardConfigInput = {}) {
  let t = Date.parse('2026-01-01T00:00:00Z');
  const events: AuditEvent[] = [];
  const guard = await Guard.open({
    config: guardConfigSchema.parse(config),
    dataDir: undefined,
    now: () => t,
    onEvent: (e) => events.push(e),
  });
  return {
    guard,
    events,
    advance: (ms: number) => {
      t += ms;
    },
    actions: () => events.map((e) => e.event.action),
  };
}

/** `n` CONNECTs one second apart, each with valid credentials; returns every decision. */
function connectLoop(
  h: Awaited<ReturnType<typeof harness>>,
  n: number,
  client: (i: number) => GuardClient,
): GuardDecision[] {
  const decisions: GuardDecision[] = [];
  for (let i = 0; i < n; i += 1) {
    // The broker's order: the guard's check, authentication (always successful here), the verdict back.
    const checked = h.guard.checkConnect(client(i));
    decisions.push(checked.kind === 'refuse' ? checked : h.guard.recordAuthResult(client(i), true));
    h.advance(1000);
  }
  return decisions;
}

const loopClient: GuardClient = { clientId: 'looper', username: 'dev', address: '198.51.100.7' };

describe('flapping detection', () => {
  it('bans a client reconnecting in a loop on its 16th attempt in a minute, then lets it back after five minutes', async () => {
    // Client id alone: with the address counted too, the address would trip first (the same 16 attempts).
    const h = await harness({ flapping: { address: { enabled: false }, network: { enabled: false } } });
    const decisions = connectLoop(h, 16, () => loopClient);
    expect(decisions.slice(0, 15).every((d) => d.kind === 'pass')).toBe(true);
    const sixteenth = decisions[15];
    expect(sixteenth).toMatchObject({ kind: 'refuse', reason: 'banned' });
    expect(h.actions()).toContain('guard.flapping_detected');
    const detected = h.events.find(
      (e) => e.event.action === 'guard.flapping_detected' && e.guard?.dimension === 'client_id',
    );
    expect(detected?.guard).toMatchObject({ key: 'looper', count: 16, window_ms: MINUTE, dry_run: false });
    expect(h.events.find((e) => e.event.action === 'guard.banned')?.actor).toBe('guard:flapping');
    // Still banned just before the ban ends, even from the same client id on a new address.
    h.advance(5 * MINUTE - 2000);
    expect(h.guard.checkConnect({ ...loopClient, address: '203.0.113.1' })).toMatchObject({
      kind: 'refuse',
      reason: 'banned',
    });
    h.advance(2000);
    expect(h.guard.checkConnect(loopClient)).toEqual({ kind: 'pass' });
  });

  it('catches rotating client ids from one address on the address dimension', async () => {
    const h = await harness({ flapping: { username: { enabled: false } } });
    const decisions = connectLoop(h, 16, (i) => ({
      clientId: `rotating-${i}`,
      username: undefined,
      address: '198.51.100.9',
    }));
    expect(decisions[15]).toMatchObject({ kind: 'refuse', reason: 'banned' });
    const entry = h.guard.list()[0];
    expect(entry).toMatchObject({ kind: 'address', value: '198.51.100.9', by: 'guard:flapping' });
    expect(h.guard.checkConnect({ clientId: 'fresh-id', address: '198.51.100.9' }).kind).toBe('refuse');
    // The records say `ip`, the dimension docs/audit.md and audit/schema.json name, for SIEM rules.
    const recorded = h.events.filter((e) => e.event.action.startsWith('guard.'));
    expect(recorded.map((e) => [e.event.action, e.guard?.dimension, e.guard?.key])).toEqual(
      expect.arrayContaining([
        ['guard.flapping_detected', 'ip', '198.51.100.9'],
        ['guard.banned', 'ip', '198.51.100.9'],
        ['guard.blocked', 'ip', '198.51.100.9'],
      ]),
    );
    expect(recorded.some((e) => e.guard?.dimension === 'address')).toBe(false);
  });

  it('catches rotating addresses within one /24 and one /64 on the network dimension', async () => {
    const h = await harness({ flapping: { network: { max_attempts: 20 } } });
    const v4 = connectLoop(h, 21, (i) => ({ clientId: `c${i}`, address: `198.51.100.${i + 1}` }));
    expect(v4[20]).toMatchObject({ kind: 'refuse', reason: 'banned' });
    expect(h.guard.list().map((e) => `${e.kind}=${e.value}`)).toContain('cidr=198.51.100.0/24');
    const v6 = connectLoop(h, 21, (i) => ({ clientId: `d${i}`, address: `2001:db8:1:2::${(i + 1).toString(16)}` }));
    expect(v6[20]).toMatchObject({ kind: 'refuse' });
    expect(h.guard.list().map((e) => `${e.kind}=${e.value}`)).toContain('cidr=2001:db8:1:2::/64');
    expect(h.guard.checkConnect({ clientId: 'z', address: '2001:db8:1:2:ffff::1' }).kind).toBe('refuse');
    expect(h.guard.checkConnect({ clientId: 'z', address: '2001:db8:1:3::1' }).kind).toBe('pass');
  });

  it('doubles the ban on each repeat offence up to the cap', async () => {
    const h = await harness({
      flapping: {
        max_ban_duration: '15m',
        username: { enabled: false },
        address: { enabled: false },
        network: { enabled: false },
      },
    });
    const lengths: number[] = [];
    for (let offence = 0; offence < 4; offence += 1) {
      connectLoop(h, 16, () => loopClient);
      const entry = h.guard.list()[0];
      if (entry === undefined || entry.until === null) throw new Error('expected a timed ban');
      lengths.push(Date.parse(entry.until) - Date.parse(entry.created));
      h.guard.unban('client_id', 'looper', 'test');
    }
    expect(lengths).toEqual([5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 15 * MINUTE]);
  });

  it('forgets past offences after offence_memory', async () => {
    const h = await harness({
      flapping: {
        offence_memory: '1h',
        address: { enabled: false },
        network: { enabled: false },
        username: { enabled: false },
      },
    });
    connectLoop(h, 16, () => loopClient);
    h.guard.unban('client_id', 'looper', 'test');
    h.advance(2 * 60 * MINUTE);
    connectLoop(h, 16, () => loopClient);
    const entry = h.guard.list()[0];
    expect(entry !== undefined && entry.until !== null && Date.parse(entry.until) - Date.parse(entry.created)).toBe(
      5 * MINUTE,
    );
  });

  it('in dry-run mode records what it would ban, once per burst, and bans nothing', async () => {
    const h = await harness({ flapping: { dry_run: true } });
    const decisions = connectLoop(h, 40, () => loopClient);
    expect(decisions.every((d) => d.kind === 'pass')).toBe(true);
    expect(h.guard.list()).toEqual([]);
    expect(h.actions()).not.toContain('guard.banned');
    const detected = h.events.filter((e) => e.event.action === 'guard.flapping_detected');
    // 40 attempts, one second apart: the counter restarts after each report, so two reports per dimension.
    expect(detected.filter((e) => e.guard?.dimension === 'client_id')).toHaveLength(2);
    expect(detected.every((e) => e.guard?.dry_run === true && e.event.reason?.includes('would ban'))).toBe(true);
  });

  it('does not count attempts spread wider than the window', async () => {
    const h = await harness();
    for (let i = 0; i < 100; i += 1) {
      expect(h.guard.checkConnect(loopClient).kind).toBe('pass');
      h.advance(5000);
    }
  });

  it('skips the address and network dimensions for exempt networks but still counts client ids', async () => {
    const h = await harness({ exempt_networks: ['10.0.0.0/8'] });
    const rotating = connectLoop(h, 30, (i) => ({ clientId: `hc-${i}`, address: '10.1.1.1' }));
    expect(rotating.every((d) => d.kind === 'pass')).toBe(true);
    const looping = connectLoop(h, 16, () => ({ clientId: 'same', address: '10.1.1.1' }));
    expect(looping[15]?.kind).toBe('refuse');
  });

  it('tracks a bounded number of keys per dimension', () => {
    const config = guardConfigSchema.parse({ flapping: { max_tracked_keys: 100 } }).flapping;
    const detector = new FlappingDetector(config);
    const t = 1_000_000;
    let addressDetections = 0;
    for (let i = 0; i < 1000; i += 1)
      addressDetections += detector
        .record({ clientId: `c${i}`, address: '192.0.2.1' }, t)
        .filter((d) => d.dimension === 'address').length;
    // The address counter was not pushed out by the flood of client ids: it is its own bounded map, and it
    // restarts after each detection, so every 16th attempt is one.
    expect(addressDetections).toBe(Math.floor(1000 / 16));
    expect(detector.count('client_id', 'c0', t)).toBe(0);
    expect(detector.count('client_id', 'c999', t)).toBe(1);
  });

  it('counts client ids and usernames only after authentication, so nobody can get a victim banned', async () => {
    // Throttling off: it would (rightly, and only temporarily) lock the guessed username; this is about bans.
    const h = await harness({ throttle: { enabled: false } });
    const victim = { clientId: 'victim-device', username: 'victim' };
    for (let i = 0; i < 100; i += 1) {
      // An attacker without the password, from many addresses so the address dimension stays quiet.
      const attempt = { ...victim, address: `10.${i}.0.1` };
      if (h.guard.checkConnect(attempt).kind === 'pass') h.guard.recordAuthResult(attempt, false);
    }
    expect(h.guard.list()).toEqual([]);
    expect(h.actions()).not.toContain('guard.flapping_detected');
    expect(h.guard.checkConnect({ ...victim, address: '192.0.2.200' }).kind).toBe('pass');
  });
});
