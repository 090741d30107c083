import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ForwardedProperties } from '../../../src/routing/message.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';

/**
 * Properties travel from one client's PUBLISH (or will) to every subscriber's encoder. The codec refuses what it can
 * tell is unreadable, but should a value it let through still break the encoder, that delivery is lost and logged,
 * and the broker goes on: a will whose User Property mqtt-packet had decoded as null once threw from a socket's close
 * handler and ended the process. The message is handed to the broker directly here, as the codec no longer lets
 * such a value in.
 */
describe('a PUBLISH one subscriber cannot be sent', () => {
  let broker: TestBroker;
  let v5: Connected;
  let v4: Connected;
  beforeAll(async () => {
    broker = await startBroker();
    v5 = await connectClient(broker.url, { clientId: 'unencodable-v5', protocolVersion: 5 });
    v4 = await connectClient(broker.url, { clientId: 'unencodable-v4', protocolVersion: 4 });
    await v5.client.subscribeAsync('unencodable/#', { qos: 1 });
    await v4.client.subscribeAsync('unencodable/#', { qos: 1 });
  });
  afterAll(async () => {
    await endAll(v5.client, v4.client);
    await broker.stop();
  });

  it('is not delivered to that subscriber and is logged; the others get it, and the next message reaches all', async () => {
    const discardedBefore = broker.server.broker.stats.messagesDiscarded;
    const broken = { userProperties: { k: null } } as unknown as ForwardedProperties;
    expect(() =>
      broker.server.broker.publish({
        topic: 'unencodable/a',
        payload: Buffer.from('broken'),
        qos: 1,
        retain: false,
        properties: broken,
        expiresAt: undefined,
        publisherId: undefined,
      }),
    ).not.toThrow();
    const line = broker.logs.find((l) => l.msg === 'cannot encode a PUBLISH for this client: not delivered');
    expect([line?.clientId, line?.topic, line?.level]).toEqual(['unencodable-v5', 'unencodable/a', 50]);
    expect(broker.server.broker.stats.messagesDiscarded).toBe(discardedBefore + 1);
    // The 3.1.1 subscriber has no properties to encode: it gets the message.
    expect((await v4.received.waitForTopic('unencodable/a')).payload).toBe('broken');
    await v4.client.publishAsync('unencodable/b', 'fine', { qos: 1 });
    expect((await v5.received.waitForTopic('unencodable/b')).payload).toBe('fine');
    expect((await v4.received.waitForTopic('unencodable/b')).payload).toBe('fine');
    expect(v5.received.on('unencodable/a')).toEqual([]);
    expect(v5.client.connected).toBe(true);
  });
});
