import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditActionName, AuditEvent } from '../../../audit/events.js';
import { auditRecordSchema } from '../../../audit/record-schema.js';
import { RefusalLimiter, type RefusalLimiterOptions } from '../../../audit/refusal-limiter.js';

const T0 = Date.parse('2026-11-25T10:00:00.000Z');

function refusal(action: AuditActionName, ip: string, code = 'ECONNRESET', listener = 'mqtts'): AuditEvent {
  return {
    event: { action, outcome: 'failure', reason: 'handshake failed', code },
    client: { ip, port: 40000 },
    mqtt: { listener },
  };
}

function limiter(options: Partial<RefusalLimiterOptions> = {}) {
  const clock = { now: T0 };
  const summaries: AuditEvent[] = [];
  const l = new RefusalLimiter({
    burst: 3,
    windowMs: 60_000,
    maxKeys: 100,
    now: () => clock.now,
    onSummary: (e) => summaries.push(e),
    ...options,
  });
  return { l, clock, summaries };
}

/** Every refusal is either admitted (recorded) or in exactly one summary: recorded + suppressed = refused. */
function accounted(admitted: number, summaries: AuditEvent[]): number {
  return admitted + summaries.reduce((n, s) => n + (s.audit?.suppressed ?? 0), 0);
}

afterEach(() => {
  vi.useRealTimers();
});

describe('RefusalLimiter', () => {
  it('records the first burst of a key, counts the rest, and writes one summary whose counts add up', () => {
    const { l, clock, summaries } = limiter();
    let admitted = 0;
    for (let i = 0; i < 250; i++) {
      clock.now = T0 + i * 100;
      if (l.admit(refusal('tls.handshake_refused', '198.51.100.7'))) admitted++;
    }
    expect(admitted).toBe(3);
    expect(summaries).toEqual([]);
    clock.now = T0 + 60_000;
    l.sweep();
    expect(summaries).toHaveLength(1);
    const s = summaries[0]!;
    expect(s.event).toMatchObject({ action: 'audit.refusals_suppressed', outcome: 'failure', code: 'ECONNRESET' });
    expect(s.client).toEqual({ ip: '198.51.100.7' });
    expect(s.mqtt).toEqual({ listener: 'mqtts' });
    expect(s.audit).toEqual({
      action: 'tls.handshake_refused',
      suppressed: 247,
      recorded: 3,
      window_start: '2026-11-25T10:00:00.000Z',
      window_end: '2026-11-25T10:01:00.000Z',
      reason: 'window_end',
    });
    expect(accounted(admitted, summaries)).toBe(250);
    expect(l.size).toBe(0);
  });

  it('keeps keys apart by action, address, reason code and listener', () => {
    const { l, clock, summaries } = limiter({ burst: 1 });
    const variants = [
      refusal('tls.handshake_refused', '192.0.2.1'),
      refusal('guard.blocked', '192.0.2.1'),
      refusal('tls.handshake_refused', '192.0.2.2'),
      refusal('tls.handshake_refused', '192.0.2.1', 'CERT_HAS_EXPIRED'),
      refusal('tls.handshake_refused', '192.0.2.1', 'ECONNRESET', 'wss'),
    ];
    for (const v of variants) expect(l.admit(v)).toBe(true);
    for (const v of variants) expect(l.admit(v)).toBe(false);
    clock.now += 60_000;
    l.sweep();
    expect(summaries).toHaveLength(5);
    expect(summaries.every((s) => s.audit?.suppressed === 1 && s.audit.recorded === 1)).toBe(true);
  });

  it('a refusal after the window ends closes it with its summary and starts a new window with a fresh burst', () => {
    const { l, clock, summaries } = limiter();
    const e = refusal('guard.blocked', '203.0.113.9', 'banned', 'test');
    let admitted = 0;
    for (let i = 0; i < 10; i++) if (l.admit(e)) admitted++;
    clock.now = T0 + 60_000;
    for (let i = 0; i < 5; i++) if (l.admit(e)) admitted++;
    expect(summaries).toHaveLength(1);
    expect(summaries[0]!.audit).toMatchObject({
      suppressed: 7,
      recorded: 3,
      window_end: '2026-11-25T10:01:00.000Z',
      reason: 'window_end',
    });
    expect(admitted).toBe(6);
    clock.now = T0 + 120_000;
    l.sweep();
    expect(summaries).toHaveLength(2);
    expect(summaries[1]!.audit).toMatchObject({
      suppressed: 2,
      recorded: 3,
      window_start: '2026-11-25T10:01:00.000Z',
      window_end: '2026-11-25T10:02:00.000Z',
    });
    expect(accounted(admitted, summaries)).toBe(15);
  });

  it('a window that suppressed nothing ends without a summary', () => {
    const { l, clock, summaries } = limiter();
    l.admit(refusal('tls.handshake_refused', '192.0.2.1'));
    l.admit(refusal('tls.handshake_refused', '192.0.2.1'));
    clock.now += 60_000;
    l.sweep();
    l.flush();
    expect(summaries).toEqual([]);
    expect(l.size).toBe(0);
  });

  it('beyond max_keys, new keys fold into one overflow key per action, counted the same way', () => {
    const { l, clock, summaries } = limiter({ burst: 2, maxKeys: 4 });
    let admitted = 0;
    let refused = 0;
    // 50 addresses, 3 refusals each, of two actions: 4 keys fit, the rest share an overflow key per action.
    for (let i = 0; i < 50; i++)
      for (const action of ['tls.handshake_refused', 'connection.malformed_connect'] as const)
        for (let k = 0; k < 3; k++) {
          refused++;
          if (l.admit(refusal(action, `10.0.${i}.1`))) admitted++;
        }
    expect(l.size).toBe(4);
    clock.now += 60_000;
    l.sweep();
    const overflow = summaries.filter((s) => s.audit?.overflow === true);
    expect(overflow.map((s) => s.audit?.action).sort()).toEqual([
      'connection.malformed_connect',
      'tls.handshake_refused',
    ]);
    for (const s of overflow) {
      expect(s.client).toBeUndefined();
      expect(s.mqtt).toBeUndefined();
      expect(s.event.code).toBeUndefined();
      expect(s.audit?.recorded).toBe(2);
    }
    expect(accounted(admitted, summaries)).toBe(refused);
  });

  it('keys whose window ended make room before a new key is folded into the overflow key', () => {
    const { l, clock, summaries } = limiter({ burst: 1, maxKeys: 2 });
    l.admit(refusal('tls.handshake_refused', '192.0.2.1'));
    l.admit(refusal('tls.handshake_refused', '192.0.2.1'));
    l.admit(refusal('tls.handshake_refused', '192.0.2.2'));
    clock.now += 60_000;
    expect(l.admit(refusal('tls.handshake_refused', '192.0.2.3'))).toBe(true);
    expect(summaries).toHaveLength(1);
    expect(summaries[0]!.client?.ip).toBe('192.0.2.1');
    expect(l.admit(refusal('tls.handshake_refused', '192.0.2.4'))).toBe(true);
    expect(l.size).toBe(2);
    l.flush();
    expect(summaries.some((s) => s.audit?.overflow === true)).toBe(false);
  });

  it('flush on shutdown summarises every open window, ending its interval at the flush', () => {
    const { l, clock, summaries } = limiter({ burst: 1, maxKeys: 1 });
    let admitted = 0;
    for (let i = 0; i < 20; i++) if (l.admit(refusal('tls.handshake_refused', '192.0.2.1'))) admitted++;
    for (let i = 0; i < 20; i++) if (l.admit(refusal('guard.throttle_refused', '192.0.2.2', 'banned'))) admitted++;
    clock.now = T0 + 12_345;
    l.flush();
    expect(summaries).toHaveLength(2);
    for (const s of summaries) {
      expect(s.audit?.reason).toBe('shutdown');
      expect(s.audit?.window_end).toBe('2026-11-25T10:00:12.345Z');
    }
    expect(summaries[1]!.audit?.overflow).toBe(true);
    expect(accounted(admitted, summaries)).toBe(40);
    // Nothing is counted twice: a second flush, or a sweep after it, writes nothing more.
    l.flush();
    clock.now += 120_000;
    l.sweep();
    expect(summaries).toHaveLength(2);
  });

  it('a window that ends with no further refusal is summarised by the sweep timer', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { l, clock, summaries } = limiter({ burst: 1 });
    l.admit(refusal('tls.handshake_refused', '192.0.2.1'));
    l.admit(refusal('tls.handshake_refused', '192.0.2.1'));
    clock.now = T0 + 30_000;
    vi.advanceTimersByTime(60_000);
    expect(summaries).toEqual([]);
    clock.now = T0 + 60_000;
    vi.advanceTimersByTime(60_000);
    expect(summaries).toHaveLength(1);
    expect(summaries[0]!.audit).toMatchObject({ suppressed: 1, recorded: 1, reason: 'window_end' });
    // Nothing pending: the timer is not re-armed.
    expect(vi.getTimerCount()).toBe(0);
  });

  it('burst 0 records none one by one and summarises all', () => {
    const { l, summaries } = limiter({ burst: 0 });
    for (let i = 0; i < 5; i++) expect(l.admit(refusal('tls.handshake_refused', '192.0.2.1'))).toBe(false);
    l.flush();
    expect(summaries[0]!.audit).toMatchObject({ suppressed: 5, recorded: 0 });
  });

  it('holds at most max_keys keys however many addresses flood it', () => {
    const { l, clock } = limiter({ burst: 1, maxKeys: 64 });
    for (let i = 0; i < 20_000; i++) {
      clock.now = T0 + i;
      l.admit(refusal('tls.handshake_refused', `2001:db8::${i.toString(16)}`));
      expect(l.size).toBeLessThanOrEqual(64);
    }
    l.flush();
    expect(l.size).toBe(0);
  });

  it('writes summaries that are valid audit records', () => {
    const { l, summaries } = limiter({ burst: 0, maxKeys: 1 });
    l.admit(refusal('tls.handshake_refused', '192.0.2.1'));
    l.admit(refusal('tls.handshake_refused', '192.0.2.2'));
    l.flush();
    expect(summaries).toHaveLength(2);
    for (const s of summaries) {
      const record = {
        ...s,
        '@timestamp': '2026-11-25T10:00:00.000Z',
        seq: 1,
        prev_hash: '0'.repeat(64),
        hash: '0'.repeat(64),
      };
      expect(auditRecordSchema.safeParse(record).error).toBeUndefined();
    }
  });
});
