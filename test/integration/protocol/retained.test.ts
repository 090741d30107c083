import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';

describe('retained messages', () => {
  let broker: TestBroker;
  let publisher: Connected;
  beforeAll(async () => {
    broker = await startBroker();
    publisher = await connectClient(broker.url, { clientId: 'ret-publisher', protocolVersion: 5 });
  });
  afterAll(async () => {
    await endAll(publisher.client);
    await broker.stop();
  });

  /**
   * A fresh subscriber to `filter`; retained messages are sent right after the SUBACK, so once a marker
   * published afterwards has arrived, every retained message it was going to get is there.
   */
  async function subscribeAndSettle(clientId: string, filter: string, version: 4 | 5 = 5, qos: 0 | 1 | 2 = 2) {
    const sub = await connectClient(broker.url, { clientId, protocolVersion: version });
    const marker = `marker/${clientId}`;
    await sub.client.subscribeAsync({ [filter]: { qos }, [marker]: { qos: 1 } });
    await publisher.client.publishAsync(marker, 'marker', { qos: 1 });
    await sub.received.waitForTopic(marker);
    const retained = sub.received.messages.filter((m) => m.topic !== marker);
    return { sub, retained };
  }

  it.each([4, 5] as const)('a retained message is sent to a new v%i subscriber with RETAIN=1', async (version) => {
    await publisher.client.publishAsync(`ret/set/${version}`, 'stored', { qos: 1, retain: true });
    const { sub, retained } = await subscribeAndSettle(`ret-set-${version}`, `ret/set/${version}`, version);
    expect(retained.map((m) => [m.topic, m.payload, m.packet.retain])).toEqual([
      [`ret/set/${version}`, 'stored', true],
    ]);
    await endAll(sub.client);
  });

  it('a new retained message replaces the previous one on the same topic', async () => {
    await publisher.client.publishAsync('ret/replace', 'one', { qos: 1, retain: true });
    await publisher.client.publishAsync('ret/replace', 'two', { qos: 1, retain: true });
    const { sub, retained } = await subscribeAndSettle('ret-replace', 'ret/replace');
    expect(retained.map((m) => m.payload)).toEqual(['two']);
    await endAll(sub.client);
  });

  it('an empty retained payload deletes the retained message and is delivered to current subscribers', async () => {
    const live = await connectClient(broker.url, { clientId: 'ret-delete-live', protocolVersion: 4 });
    await publisher.client.publishAsync('ret/delete', 'doomed', { qos: 1, retain: true });
    await live.client.subscribeAsync('ret/delete', { qos: 1 });
    await live.received.waitFor(1);
    await publisher.client.publishAsync('ret/delete', '', { qos: 1, retain: true });
    const [, removal] = await live.received.waitFor(2);
    expect(removal!.payload).toBe('');
    const { sub, retained } = await subscribeAndSettle('ret-delete-new', 'ret/delete');
    expect(retained).toEqual([]);
    await endAll(sub.client, live.client);
  });

  it('normal delivery to an existing subscription has RETAIN=0 (3.1.1 and v5 without retain as published)', async () => {
    const v4 = await connectClient(broker.url, { clientId: 'ret-live-4', protocolVersion: 4 });
    const v5 = await connectClient(broker.url, { clientId: 'ret-live-5', protocolVersion: 5 });
    await v4.client.subscribeAsync('ret/live', { qos: 1 });
    await v5.client.subscribeAsync('ret/live', { qos: 1 });
    await publisher.client.publishAsync('ret/live', 'fresh', { qos: 1, retain: true });
    const [a] = await v4.received.waitFor(1);
    const [b] = await v5.received.waitFor(1);
    expect(a!.packet.retain).toBe(false);
    expect(b!.packet.retain).toBe(false);
    // It was stored all the same.
    const { sub, retained } = await subscribeAndSettle('ret-live-new', 'ret/live');
    expect(retained.map((m) => [m.payload, m.packet.retain])).toEqual([['fresh', true]]);
    await endAll(v4.client, v5.client, sub.client);
  });

  it('a wildcard subscription receives every matching retained message at the lower of the two QoS', async () => {
    await publisher.client.publishAsync('ret/wild/a', 'a', { qos: 2, retain: true });
    await publisher.client.publishAsync('ret/wild/b/c', 'bc', { qos: 0, retain: true });
    await publisher.client.publishAsync('ret/other', 'no', { qos: 1, retain: true });
    const { sub, retained } = await subscribeAndSettle('ret-wild', 'ret/wild/#', 5, 1);
    const byTopic = Object.fromEntries(retained.map((m) => [m.topic, m.packet.qos]));
    expect(byTopic).toEqual({ 'ret/wild/a': 1, 'ret/wild/b/c': 0 });
    await endAll(sub.client);
  });

  it('a retained message is forwarded with its remaining message expiry interval, never more than set', async () => {
    await publisher.client.publishAsync('ret/expiry/long', 'lives', {
      qos: 1,
      retain: true,
      properties: { messageExpiryInterval: 30 },
    });
    const { sub, retained } = await subscribeAndSettle('ret-expiry-long', 'ret/expiry/long');
    expect(retained).toHaveLength(1);
    const remaining = retained[0]!.packet.properties?.messageExpiryInterval;
    expect(remaining).toBeGreaterThanOrEqual(1);
    expect(remaining).toBeLessThanOrEqual(30);
    await endAll(sub.client);
  });

  it('a retained message whose expiry has passed is not sent to a new subscriber', async () => {
    await publisher.client.publishAsync('ret/expiry/short', 'gone soon', {
      qos: 1,
      retain: true,
      properties: { messageExpiryInterval: 1 },
    });
    // The one place a short wait is needed: the expiry is in whole seconds.
    await new Promise((r) => setTimeout(r, 1200));
    const { sub, retained } = await subscribeAndSettle('ret-expiry-short', 'ret/expiry/short');
    expect(retained).toEqual([]);
    await endAll(sub.client);
  });

  it('forwarded properties of a retained message survive storage (content type, user properties)', async () => {
    await publisher.client.publishAsync('ret/props', '{"a":1}', {
      qos: 1,
      retain: true,
      properties: { contentType: 'application/json', userProperties: { origin: 'test' }, payloadFormatIndicator: true },
    });
    const { sub, retained } = await subscribeAndSettle('ret-props', 'ret/props');
    const properties = retained[0]!.packet.properties;
    expect(properties?.contentType).toBe('application/json');
    expect(properties?.userProperties).toEqual({ origin: 'test' });
    expect(properties?.payloadFormatIndicator).toBe(true);
    await endAll(sub.client);
  });
});
