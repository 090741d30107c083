import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import { matchesClient, type BanEntry, type BanKind, type GuardClient } from '../../../src/guard/blocklist.js';
import { defaultGuardConfig, guardConfigSchema } from '../../../src/guard/config.js';
import { Guard } from '../../../src/guard/guard.js';

async function harness() {
  let t = Date.parse('2026-01-01T00:00:00Z');
  const events: AuditEvent[] = [];
  const guard = await Guard.open({
    config: defaultGuardConfig(),
    dataDir: undefined,
    now: () => t,
    onEvent: (e) => events.push(e),
  });
  return { guard, events, advance: (ms: number) => (t += ms), now: () => t };
}

const live: GuardClient[] = [
  { clientId: 'c-plain', username: 'u-plain', address: '192.0.2.10' },
  { clientId: 'c-user', username: 'mallory', address: '192.0.2.11' },
  { clientId: 'c-addr', username: 'u-addr', address: '::ffff:198.51.100.5' },
  { clientId: 'c-net6', username: 'u-net6', address: '2001:db8:7::1' },
  { clientId: 'tmp-123', username: 'u-regex', address: '192.0.2.12' },
  { clientId: 'c-cert', username: undefined, address: '192.0.2.13', certFingerprint: 'AA'.repeat(32) },
  { clientId: 'c-jwt', username: 'svc', address: '192.0.2.14', jwtSubject: 'svc-account-9' },
];

describe('guard', () => {
  // The last column is `guard.dimension` as docs/audit.md lists it: an address is `ip`.
  it.each<[BanKind, string, string, string]>([
    ['client_id', 'c-plain', 'c-plain', 'client_id'],
    ['username', 'mallory', 'c-user', 'username'],
    ['address', '198.51.100.5', 'c-addr', 'ip'],
    ['cidr', '2001:db8::/32', 'c-net6', 'cidr'],
    ['client_id_regex', '^tmp-', 'tmp-123', 'client_id_regex'],
    ['username_regex', '^u-re', 'tmp-123', 'username_regex'],
    ['fingerprint', 'aa'.repeat(32), 'c-cert', 'fingerprint'],
    ['jwt_sub', 'svc-account-9', 'c-jwt', 'jwt_sub'],
  ])(
    'tells onBanAdded listeners about a %s ban so the broker can disconnect exactly the clients it matches',
    async (kind, value, victim, dimension) => {
      const h = await harness();
      const disconnected: string[] = [];
      h.guard.onBanAdded((entry: BanEntry) => {
        for (const client of live) if (matchesClient(entry, client, h.now())) disconnected.push(client.clientId);
      });
      const added = h.guard.ban({ kind, value, reason: 'incident 7', until: null }, 'cli:0@unix-socket');
      expect(added.kind).toBe('added');
      expect(disconnected).toEqual([victim]);
      expect(h.events).toEqual([
        expect.objectContaining({
          event: expect.objectContaining({ action: 'guard.banned', reason: 'incident 7' }),
          actor: 'cli:0@unix-socket',
          guard: expect.objectContaining({ dimension }),
        }),
      ]);
    },
  );

  it('refuses a banned CONNECT with the event the CONNECT step records', async () => {
    const h = await harness();
    h.guard.ban({ kind: 'address', value: '192.0.2.10', reason: 'abuse', until: null }, 'cli:0@unix-socket');
    const decision = h.guard.checkConnect({ clientId: 'anything', address: '192.0.2.10' });
    expect(decision).toMatchObject({
      kind: 'refuse',
      reason: 'banned',
      event: {
        event: { action: 'guard.blocked', outcome: 'failure', code: 'banned' },
        client: { ip: '192.0.2.10' },
        mqtt: { client_id: 'anything' },
        guard: { dimension: 'ip', key: '192.0.2.10' },
      },
    });
  });

  it('checks the block list again once authentication revealed the JWT subject', async () => {
    const h = await harness();
    h.guard.ban({ kind: 'jwt_sub', value: 'svc-account-9', reason: '', until: null }, 'cli:0@unix-socket');
    const before = { clientId: 'c-jwt', username: 'svc', address: '192.0.2.14' };
    expect(h.guard.checkConnect(before).kind).toBe('pass');
    expect(h.guard.checkBlocklist({ ...before, jwtSubject: 'svc-account-9' }).kind).toBe('refuse');
  });

  it('checks a user name an exchange revealed against the block list and the throttle, counting nothing', async () => {
    const h = await harness();
    const named = (username: string): GuardClient => ({ clientId: 'scram-1', username, address: '192.0.2.30' });
    for (let i = 0; i < 5; i++) h.guard.recordAuthResult(named('bob'), false);
    expect(h.guard.checkUsername(named('bob'))).toMatchObject({ kind: 'refuse', reason: 'connectionRateExceeded' });
    h.guard.ban({ kind: 'username', value: 'carol', reason: '', until: null }, 'cli:0@unix-socket');
    expect(h.guard.checkUsername(named('carol'))).toMatchObject({ kind: 'refuse', reason: 'banned' });
    // Checking is not connecting: a hundred checks count no flapping attempt for the address.
    for (let i = 0; i < 100; i++) expect(h.guard.checkUsername(named('dora')).kind).toBe('pass');
    expect(h.guard.checkConnect({ clientId: 'scram-1', address: '192.0.2.30' }).kind).toBe('pass');
  });

  it('records unbans and expiries with the actor', async () => {
    const h = await harness();
    h.guard.ban({ kind: 'username', value: 'a', reason: '', until: null }, 'cli:0@unix-socket');
    h.guard.ban({ kind: 'username', value: 'b', reason: '', until: h.now() + 1000 }, 'cli:0@unix-socket');
    expect(h.guard.unban('username', 'a', 'cli:1000@unix-socket')?.value).toBe('a');
    expect(h.guard.unban('username', 'a', 'cli:1000@unix-socket')).toBeUndefined();
    expect(h.guard.purgeExpired()).toEqual([]);
    h.advance(1000);
    expect(h.guard.purgeExpired().map((e) => e.value)).toEqual(['b']);
    expect(h.events.slice(2).map((e) => [e.event.action, e.actor, e.guard?.key])).toEqual([
      ['guard.unbanned', 'cli:1000@unix-socket', 'a'],
      ['guard.ban_expired', 'broker', 'b'],
    ]);
    expect(h.guard.list()).toEqual([]);
  });

  it('imports entries keeping their author and times, and skips the invalid ones', async () => {
    const h = await harness();
    const outcome = h.guard.importEntries(
      [
        {
          kind: 'cidr',
          value: '10.0.0.0/8',
          by: 'soc-team',
          reason: 'internal only',
          created: '2025-12-01T00:00:00.000Z',
          until: null,
        },
        {
          kind: 'client_id_regex',
          value: '(a+)+',
          by: 'soc-team',
          reason: '',
          created: '2025-12-01T00:00:00.000Z',
          until: null,
        },
      ],
      'cli:0@unix-socket',
    );
    expect(outcome.added).toBe(1);
    expect(outcome.skipped).toEqual([expect.objectContaining({ kind: 'client_id_regex' })]);
    expect(h.guard.list()).toEqual([
      {
        kind: 'cidr',
        value: '10.0.0.0/8',
        by: 'soc-team',
        reason: 'internal only',
        created: '2025-12-01T00:00:00.000Z',
        until: null,
      },
    ]);
  });

  it('keeps working when the event sink throws', async () => {
    const guard = await Guard.open({
      config: guardConfigSchema.parse({}),
      dataDir: undefined,
      onEvent: () => {
        throw new Error('sink down');
      },
    });
    expect(guard.ban({ kind: 'username', value: 'x', reason: '', until: null }, 't').kind).toBe('added');
    expect(guard.checkConnect({ clientId: 'c', username: 'x', address: '192.0.2.1' }).kind).toBe('refuse');
  });

  it('exports a config schema whose defaults follow EMQX on every flapping dimension', () => {
    const config = defaultGuardConfig();
    for (const dimension of ['client_id', 'username', 'address'] as const)
      expect(config.flapping[dimension]).toEqual({ enabled: true, max_attempts: 15, window: 60_000 });
    expect(config.flapping.ban_duration).toBe(300_000);
    expect(() => guardConfigSchema.parse({ flapping: { ban_duration: '300' } })).toThrow(/duration/);
    expect(() => guardConfigSchema.parse({ throttle: { unknown_key: 1 } })).toThrow();
  });

  it('records each refusal once: itself by default, or only in the decision when the caller records it', async () => {
    for (const recordRefusals of [true, false]) {
      const events: AuditEvent[] = [];
      const guard = await Guard.open({
        config: defaultGuardConfig(),
        dataDir: undefined,
        recordRefusals,
        onEvent: (e) => events.push(e),
      });
      guard.ban({ kind: 'username', value: 'x', reason: '', until: null }, 't');
      const decision = guard.checkConnect({ clientId: 'c', username: 'x', address: '192.0.2.1' });
      expect(decision.kind).toBe('refuse');
      expect(events.filter((e) => e.event.action === 'guard.blocked')).toHaveLength(recordRefusals ? 1 : 0);
    }
  });

  it('purges expired entries on its timer once started, and stops purging when stopped', async () => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    const events: AuditEvent[] = [];
    const guard = await Guard.open({
      config: guardConfigSchema.parse({ blocklist: { purge_interval: '20ms' } }),
      dataDir: undefined,
      now: () => t,
      onEvent: (e) => events.push(e),
    });
    guard.ban({ kind: 'client_id', value: 'brief', reason: '', until: t + 1000 }, 'cli:0@unix-socket');
    guard.start();
    t += 1000;
    for (let i = 0; i < 200 && !events.some((e) => e.event.action === 'guard.ban_expired'); i += 1)
      await new Promise((resolve) => setTimeout(resolve, 10));
    await guard.stop();
    expect(events.map((e) => e.event.action)).toEqual(['guard.banned', 'guard.ban_expired']);
    expect(guard.list()).toEqual([]);
  });
});
