import { describe, expect, it } from 'vitest';
import type { Message, QoS } from '../../../src/routing/message.js';
import type { Outbound, SessionLink } from '../../../src/session/outbound.js';
import { Session, type QueueOverflow } from '../../../src/session/session.js';

const message = (n: number, qos: QoS = 1, expiresAt?: number): Message => ({
  topic: `t/${n}`,
  payload: Buffer.from(String(n)),
  qos,
  retain: false,
  properties: undefined,
  expiresAt,
  publisherId: undefined,
});
const out = (m: Message): Outbound => ({
  message: m,
  qos: m.qos,
  retain: false,
  subscriptionIds: undefined,
  shareGroup: undefined,
  shareFilter: undefined,
  packetId: 0,
  state: 'publish',
});

class RecordingLink implements SessionLink {
  readonly sent: { topic: string; packetId: number; dup: boolean }[] = [];
  readonly pubrels: number[] = [];
  constructor(
    readonly sendQuota: number,
    private readonly maxBytes = Infinity,
  ) {}
  sendPublish(o: Outbound, dup: boolean): boolean {
    if (o.message.payload.length > this.maxBytes) return false;
    this.sent.push({ topic: o.message.topic, packetId: o.packetId, dup });
    return true;
  }
  sendPubrel(id: number): void {
    this.pubrels.push(id);
  }
}

function makeSession(max = 100, overflow: QueueOverflow = 'drop-new') {
  const dropped: string[] = [];
  const discarded: string[] = [];
  const session = new Session(
    'c',
    5,
    60,
    { maxQueuedMessages: max, queueOverflow: overflow, queueQos0: false },
    {
      onQueueOverflow: (_s, o) => dropped.push(o.message.topic),
      onDiscarded: (_s, why) => discarded.push(why),
    },
  );
  return { session, dropped, discarded };
}

describe('session delivery state machine', () => {
  it('keeps at most sendQuota messages in flight and drains the queue as acknowledgements arrive', () => {
    const { session } = makeSession();
    const link = new RecordingLink(2);
    session.link = link;
    for (let i = 1; i <= 4; i++) session.deliver(out(message(i)));
    expect(link.sent.map((s) => s.topic)).toEqual(['t/1', 't/2']);
    expect(session.queue).toHaveLength(2);
    session.complete(link.sent[0]!.packetId, 'puback');
    expect(link.sent.map((s) => s.topic)).toEqual(['t/1', 't/2', 't/3']);
  });

  it('does not reuse a packet id while its exchange is open', () => {
    const { session } = makeSession();
    session.link = new RecordingLink(65535);
    const ids = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      session.deliver(out(message(i)));
    }
    for (const id of session.inflight.keys()) ids.add(id);
    expect(ids.size).toBe(1000);
  });

  it('QoS 2: PUBREC moves to pubrel, PUBCOMP completes, and resume resends PUBLISH with DUP and PUBREL', () => {
    const { session } = makeSession();
    const link = new RecordingLink(10);
    session.link = link;
    session.deliver(out(message(1, 2)));
    session.deliver(out(message(2, 2)));
    const [first, second] = link.sent;
    expect(session.released(first!.packetId)).toBe(true);
    expect(link.pubrels).toEqual([first!.packetId]);
    session.detach();
    const again = new RecordingLink(10);
    session.resume(again, Date.now());
    expect(again.pubrels).toEqual([first!.packetId]);
    expect(again.sent).toEqual([{ topic: 't/2', packetId: second!.packetId, dup: true }]);
    // A PUBACK fits neither QoS 2 delivery: nothing is done, and the reason comes back.
    expect(session.complete(second!.packetId, 'puback')).toBe(
      `PUBACK for packet id ${second!.packetId}, a QoS 2 delivery`,
    );
    expect(session.complete(first!.packetId, 'pubcomp')).toBeUndefined();
    // A PUBREC with a failure reason ends the other one.
    expect(session.complete(second!.packetId, 'pubrec')).toBeUndefined();
    expect(session.inflight.size).toBe(0);
  });

  it.each([
    ['drop-new', ['t/3']],
    ['drop-oldest', ['t/1']],
  ] as const)('queue overflow %s drops %j and counts it', (policy, expectedDropped) => {
    const { session, dropped } = makeSession(2, policy);
    for (let i = 1; i <= 3; i++) session.deliver(out(message(i)));
    expect(dropped).toEqual(expectedDropped);
    expect(session.queue).toHaveLength(2);
  });

  it('drops expired messages from the queue instead of sending them', () => {
    const { session, discarded } = makeSession();
    session.deliver(out(message(1, 1, Date.now() - 1)));
    session.deliver(out(message(2, 1)));
    const link = new RecordingLink(10);
    session.resume(link, Date.now());
    expect(link.sent.map((s) => s.topic)).toEqual(['t/2']);
    expect(discarded).toEqual(['expired']);
  });

  it('treats a message too large for the client as delivered and frees its slot', () => {
    const { session, discarded } = makeSession();
    const link = new RecordingLink(1, 1);
    session.link = link;
    session.deliver(out({ ...message(1), payload: Buffer.from('too long') }));
    session.deliver(out(message(2)));
    expect(link.sent.map((s) => s.topic)).toEqual(['t/2']);
    expect(discarded).toEqual(['unsendable']);
  });

  it('counts a QoS 0 message too large for the client once, as the session counts every message it cannot send', () => {
    const { session, discarded } = makeSession();
    const link = new RecordingLink(1, 1);
    session.link = link;
    session.deliver(out({ ...message(1, 0), payload: Buffer.from('too long') }));
    session.deliver(out(message(2, 0)));
    expect(link.sent.map((s) => s.topic)).toEqual(['t/2']);
    expect(discarded).toEqual(['unsendable']);
  });

  it('does not queue QoS 0 for an offline session unless configured', () => {
    const { session } = makeSession();
    session.deliver(out(message(1, 0)));
    expect(session.queue).toHaveLength(0);
  });

  describe('messages kept for an absent client own their bytes', () => {
    // A decoded payload is a view into the read it arrived in; 64 KiB here for a few payload bytes.
    const viewed = (n: number): Message => {
      const read = Buffer.alloc(65_536);
      const text = `payload-${n}`;
      read.write(text, 100);
      return { ...message(n), payload: read.subarray(100, 100 + text.length) };
    };

    it('copies what is queued while the client is away, once per message for every session', () => {
      const a = makeSession().session;
      const b = makeSession().session;
      const m = viewed(1);
      a.deliver(out(m));
      b.deliver(out(m));
      const kept = a.queue[0]!.message;
      expect(kept).not.toBe(m);
      expect(kept.payload.toString()).toBe('payload-1');
      expect(kept.payload.buffer.byteLength).toBe('payload-1'.length);
      expect(b.queue[0]!.message).toBe(kept);
    });

    it('leaves what a connected client is about to receive as it is, and copies it when the client leaves', () => {
      const { session } = makeSession();
      session.link = new RecordingLink(1);
      const inFlight = viewed(1);
      const waiting = viewed(2);
      session.deliver(out(inFlight));
      session.deliver(out(waiting));
      expect(session.inflight.get(1)?.message).toBe(inFlight);
      expect(session.queue[0]!.message).toBe(waiting);
      session.detach();
      expect(session.inflight.get(1)?.message.payload.buffer.byteLength).toBe('payload-1'.length);
      expect(session.queue[0]!.message.payload.buffer.byteLength).toBe('payload-2'.length);
      expect(session.queue[0]!.message.payload.toString()).toBe('payload-2');
    });
  });
});
