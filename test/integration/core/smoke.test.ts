import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';

describe('broker smoke', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker();
  });
  afterAll(async () => broker.stop());

  it('delivers a QoS 1 message from one mqtt.js client to another', async () => {
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'sub', protocolVersion: 5 });
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'pub', protocolVersion: 4 });
    await sub.subscribeAsync('a/+', { qos: 1 });
    const received = new Promise<[string, Buffer]>((resolve) => sub.on('message', (t, p) => resolve([t, p])));
    await pub.publishAsync('a/b', 'hello', { qos: 1 });
    const [topic, payload] = await received;
    expect(topic).toBe('a/b');
    expect(payload.toString()).toBe('hello');
    await sub.endAsync();
    await pub.endAsync();
  });
});
