import { describe, expect, it } from 'vitest';
import { MemoryAuditSink, type AuditEvent } from '../../../audit/events.js';
import { SwitchableAuditSink } from '../../../src/audit-sink.js';

const event = (i: number): AuditEvent => ({
  event: { action: 'credentials.reloaded', outcome: 'success', reason: `reload ${i}` },
  actor: 'broker',
});

describe('the audit sink before the audit log opens', () => {
  it('holds up to 10,000 events, hands them over in order, and records how many more were dropped', () => {
    const sink = new SwitchableAuditSink();
    for (let i = 0; i < 10_005; i++) sink.record(event(i));
    const target = new MemoryAuditSink(20_000);
    sink.attach(target);
    expect(target.events).toHaveLength(10_001);
    expect(target.events[0]!.event.reason).toBe('reload 0');
    expect(target.events[9_999]!.event.reason).toBe('reload 9999');
    expect(target.events[10_000]).toEqual({
      event: {
        action: 'audit.early_events_dropped',
        outcome: 'failure',
        reason: '5 events recorded before the audit log opened were dropped',
      },
      actor: 'broker',
    });
    // Once attached, every event goes straight through.
    sink.record(event(-1));
    expect(target.events.at(-1)!.event.reason).toBe('reload -1');
  });

  it('records no drop when nothing was dropped', () => {
    const sink = new SwitchableAuditSink();
    sink.record(event(1));
    const target = new MemoryAuditSink();
    sink.attach(target);
    expect(target.events.map((e) => e.event.action)).toEqual(['credentials.reloaded']);
  });
});
