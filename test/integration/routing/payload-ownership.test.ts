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

  /** Connects a publisher and sends the kept message behind 100 PUBLISH packets of 600 bytes, all in one write. */
  async function publishBehindNoise(
    clientId: string,
    kept: { topic: string; payload: string; qos: 0 | 1; retain: boolean },
  ): Promise<RawClient> {
    const publisher = await RawClient.connect(broker.port);
    publisher.send(connectPacket(clientId));
    await publisher.next('connack');
    const packet = {
      cmd: 'publish',
      topic: kept.topic,
      payload: Buffer.from(kept.payload),
      qos: kept.qos,
      retain: kept.retain,
      dup: false,
      ...(kept.qos > 0 ? { messageId: 7 } : {}),
    } as Packet;
    publisher.sendBytes(Buffer.concat([...noise(100), mqtt.generate(packet), mqtt.generate({ cmd: 'pingreq' })]));
    await publisher.next('pingresp');
    return publisher;
  }

  it('a retained message published behind other packets keeps only its payload', async () => {
    const publisher = await publishBehindNoise('owned-retain-publisher', {
      topic: 'owned/retained',
      payload: 'kept',
      qos: 0,
      retain: true,
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

    const publisher = await publishBehindNoise('owned-queue-publisher', {
      topic: 'owned/queued',
      payload: 'for later',
      qos: 1,
      retain: false,
    });
    await publisher.next('puback');
    const queued = session.queue.map((out) => out.message.payload);
    expect(queued.map((p) => p.toString())).toEqual(['for later']);
    expect(queued[0]!.buffer.byteLength).toBe('for later'.length);
    publisher.end();
  });
});
