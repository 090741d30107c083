import mqtt, { type Packet } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectPacket, RawClient } from '../../helpers/raw-client.js';

/**
 * A decoded payload is a view into the read it arrived in. These tests send the kept message behind 60 KiB of
 * other packets in one write, so the read it lands in is tens of KiB; what the broker keeps for later must hold
 * only the payload's own bytes (docs/architecture.md, "Decoded payloads are views").
 */
describe('messages kept for later own their bytes', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker();
  });
  afterAll(async () => {
    await broker.stop();
  });

  const noise = (count: number): Buffer[] =>
    Array.from({ length: count }, (_, i) =>
      mqtt.generate({
        cmd: 'publish',
        topic: `noise/${i}`,
        payload: Buffer.alloc(600, 0x6e),
        qos: 0,
        retain: false,
        dup: false,
      }),
    );

  async function publishBehindNoise(client: RawClient, kept: Packet): Promise<void> {
    client.sendBytes(Buffer.concat([...noise(100), mqtt.generate(kept), mqtt.generate({ cmd: 'pingreq' })]));
    await client.next('pingresp');
  }

  it('a retained message published behind other packets keeps only its payload', async () => {
    const publisher = await RawClient.connect(broker.port);
    publisher.send(connectPacket('owned-retain-publisher'));
    await publisher.next('connack');
    await publishBehindNoise(publisher, {
      cmd: 'publish',
      topic: 'owned/retained',
      payload: Buffer.from('kept'),
      qos: 0,
      retain: true,
      dup: false,
    });
    const retained = broker.server.broker.retained.get('owned/retained');
    expect(retained?.payload.toString()).toBe('kept');
    expect(retained?.payload.buffer.byteLength).toBe(4);
    publisher.end();
  });

  it('a message queued for an absent persistent session keeps only its payload', async () => {
    const subscriber = await RawClient.connect(broker.port);
    subscriber.send(connectPacket('owned-away', { clean: false }));
    await subscriber.next('connack');
    subscriber.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'owned/queued', qos: 1 }] });
    await subscriber.next('suback');
    subscriber.end();
    await subscriber.waitClosed();
    const session = broker.server.broker.sessions.get('owned-away')!;
    await expect.poll(() => session.connected).toBe(false);

    const publisher = await RawClient.connect(broker.port);
    publisher.send(connectPacket('owned-queue-publisher'));
    await publisher.next('connack');
    await publishBehindNoise(publisher, {
      cmd: 'publish',
      topic: 'owned/queued',
      payload: Buffer.from('for later'),
      qos: 1,
      messageId: 7,
      retain: false,
      dup: false,
    });
    await publisher.next('puback');
    const queued = session.queue.map((out) => out.message.payload);
    expect(queued.map((p) => p.toString())).toEqual(['for later']);
    expect(queued[0]!.buffer.byteLength).toBe('for later'.length);
    publisher.end();
  });
});
