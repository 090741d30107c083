import { afterEach, describe, expect, it } from 'vitest';
import type { AccessRequest, AuthzDecision, Authorizer } from '../../../authz/types.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';
import { until } from '../../helpers/until.js';

const ALLOW: AuthzDecision = { allowed: true, reason: 'test allows' };

/**
 * An authorizer that allows everything, answering `receive` for the topics it is told to hold only when the test
 * releases them (as a SQL source answers a cache miss: later, and in whatever order its queries finish).
 */
class HeldReceiveAuthorizer implements Authorizer {
  readonly held = new Map<string, Array<(d: AuthzDecision) => void>>();
  constructor(private readonly holds: (topic: string) => boolean) {}

  check(request: AccessRequest): AuthzDecision | Promise<AuthzDecision> {
    if (request.action !== 'receive' || !this.holds(request.topic)) return ALLOW;
    return new Promise((resolve) => {
      const waiting = this.held.get(request.topic) ?? [];
      waiting.push(resolve);
      this.held.set(request.topic, waiting);
    });
  }

  release(topic: string, decision: AuthzDecision = ALLOW): void {
    for (const resolve of this.held.get(topic) ?? []) resolve(decision);
    this.held.delete(topic);
  }

  onChange(): void {}
  invalidate(): void {}
}

describe('deliveries waiting on an asynchronous receive check', () => {
  let broker: TestBroker | undefined;
  const clients: Connected[] = [];
  afterEach(async () => {
    await endAll(...clients.splice(0).map((c) => c.client));
    await broker?.stop();
    broker = undefined;
  });

  async function connect(clientId: string): Promise<Connected> {
    const c = await connectClient(broker!.url, { clientId, protocolVersion: 5 });
    clients.push(c);
    return c;
  }

  it('reach the subscriber in the order they were published, one check of the session at a time', async () => {
    const authorizer = new HeldReceiveAuthorizer((topic) => topic === 'o/1' || topic === 'o/2');
    broker = await startBroker({ authorizer });
    const sub = await connect('order-sub');
    await sub.client.subscribeAsync('o/#', { qos: 1 });
    const pub = await connect('order-pub');
    for (const topic of ['o/1', 'o/2', 'o/3']) await pub.client.publishAsync(topic, topic, { qos: 1 });
    await until(() => authorizer.held.has('o/1') || undefined, 'the first check waiting');
    // o/2's check is not even asked while o/1's waits, and o/3, which needs no wait, does not overtake either.
    expect([...authorizer.held.keys()]).toEqual(['o/1']);
    expect(sub.received.messages).toEqual([]);
    authorizer.release('o/1');
    await until(() => authorizer.held.has('o/2') || undefined, 'the second check waiting');
    authorizer.release('o/2');
    await sub.received.waitForTopic('o/3');
    expect(sub.received.messages.map((m) => m.topic)).toEqual(['o/1', 'o/2', 'o/3']);
  });

  it('drop what a denied check refuses and still keep the order of the rest', async () => {
    const authorizer = new HeldReceiveAuthorizer((topic) => topic === 'd/1');
    broker = await startBroker({ authorizer });
    const sub = await connect('deny-sub');
    await sub.client.subscribeAsync('d/#', { qos: 1 });
    const pub = await connect('deny-pub');
    await pub.client.publishAsync('d/1', 'x', { qos: 1 });
    await pub.client.publishAsync('d/2', 'x', { qos: 1 });
    await until(() => authorizer.held.size === 1 || undefined, 'the check waiting');
    authorizer.release('d/1', { allowed: false, reason: 'test denies' });
    await sub.received.waitForTopic('d/2');
    expect(sub.received.messages.map((m) => m.topic)).toEqual(['d/2']);
    const denied = await broker.waitForAudit('authz.receive_denied');
    expect(denied.mqtt?.topic).toBe('d/1');
  });

  it('are bounded like the queue: past max_queued_messages a delivery is dropped and counted', async () => {
    const authorizer = new HeldReceiveAuthorizer((topic) => topic.startsWith('h/'));
    broker = await startBroker({ authorizer, config: { limits: { max_queued_messages: 2 } } });
    const sub = await connect('held-sub');
    await sub.client.subscribeAsync('h/#', { qos: 1 });
    const pub = await connect('held-pub');
    const dropped = broker.server.broker.stats.messagesDropped;
    for (let i = 1; i <= 4; i++) await pub.client.publishAsync(`h/${i}`, 'x', { qos: 1 });
    await until(() => authorizer.held.has('h/1') || undefined, 'the first check waiting');
    // h/1 waits on its check and h/2 behind it: the backlog is full, so h/3 and h/4 were dropped when routed.
    expect(broker.server.broker.stats.messagesDropped - dropped).toBe(2);
    await broker.waitForLog((l) => l.clientId === 'held-sub' && String(l.msg).includes('queue full'));
    authorizer.release('h/1');
    await until(() => authorizer.held.has('h/2') || undefined, 'the second check waiting');
    authorizer.release('h/2');
    await sub.received.waitForTopic('h/2');
    expect(sub.received.messages.map((m) => m.topic)).toEqual(['h/1', 'h/2']);
  });
});
