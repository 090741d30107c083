import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccessRequest, Authorizer, AuthzDecision } from '../../../authz/types.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';

/**
 * Plain TCP sockets lend each read to the connection in one buffer that the next read, of any socket, overwrites
 * (src/transport/handle-socket.ts). Whatever the broker keeps past a read must be a copy: payloads held as retained
 * messages and in an offline session's queue, MQTT 5 properties, the start of a packet that spans reads. Each is
 * kept here while another client floods the broker with different bytes, then read back exactly.
 */
describe('reads lent by plain TCP sockets: what the broker keeps is its own copy', () => {
  let broker: TestBroker;
  const clients: Connected[] = [];
  const payloadOf = (k: number): Buffer => Buffer.from(`payload ${k} `.repeat(1 + (k % 7)));
  // Larger than a read (64 KiB): it arrives in pieces that wait for each other.
  const large = randomBytes(300 * 1024);

  /** Answers PUBLISH to `slow/...` a few milliseconds later, as a remote source would; reads go on meanwhile. */
  const remoteLike: Authorizer = {
    check(request: AccessRequest): AuthzDecision | Promise<AuthzDecision> {
      const decision = { allowed: true, reason: 'test' };
      if (request.action !== 'publish' || !request.topic.startsWith('slow/')) return decision;
      return new Promise((resolve) => setTimeout(() => resolve(decision), 5));
    },
    onChange: () => undefined,
    invalidate: () => undefined,
  };

  beforeAll(async () => {
    broker = await startBroker({ authorizer: remoteLike, config: { limits: { max_queued_messages: 1000 } } });
  });
  afterAll(async () => {
    await endAll(...clients.map((c) => c.client));
    await broker.stop();
  });

  async function client(options: Parameters<typeof connectClient>[1]): Promise<Connected> {
    const connected = await connectClient(broker.url, options);
    clients.push(connected);
    return connected;
  }

  it('keeps retained payloads, queued messages, v5 properties and a packet that spans reads intact', async () => {
    // A persistent session that is offline while the messages arrive: they wait in its queue.
    const away = await client({ clientId: 'lent-away', clean: false, protocolVersion: 4 });
    await away.client.subscribeAsync('lent/#', { qos: 1 });
    await away.client.endAsync();

    const v311 = await client({ clientId: 'lent-v311', protocolVersion: 4 });
    const v5 = await client({ clientId: 'lent-v5', protocolVersion: 5 });
    const flood = await client({ clientId: 'lent-flood', protocolVersion: 4 });
    const noise = Buffer.alloc(3000, 0xee);
    for (let k = 0; k < 40; k++) {
      // Every message is followed by other bytes through the same read buffer before anyone reads it back.
      await v311.client.publishAsync(`lent/a/${k}`, payloadOf(k), { qos: 1, retain: true });
      await v5.client.publishAsync(`lent/b/${k}`, payloadOf(k + 100), {
        qos: 1,
        retain: true,
        properties: {
          contentType: `text/k${k}`,
          correlationData: Buffer.from(`correlation ${k}`),
          userProperties: { k: String(k) },
        },
      });
      await flood.client.publishAsync('noise', noise, { qos: 1 });
    }
    await v311.client.publishAsync('lent/large', large, { qos: 1, retain: true });
    for (let k = 0; k < 40; k++) await flood.client.publishAsync('noise', noise, { qos: 1 });

    const reader = await client({ clientId: 'lent-reader', protocolVersion: 5 });
    await reader.client.subscribeAsync('lent/#', { qos: 1 });
    const retained = await reader.received.waitFor(81);
    const back = new Map(retained.map((m) => [m.topic, m]));
    for (let k = 0; k < 40; k++) {
      expect(back.get(`lent/a/${k}`)?.payload, `lent/a/${k}`).toBe(payloadOf(k).toString());
      const b = back.get(`lent/b/${k}`);
      expect(b?.payload, `lent/b/${k}`).toBe(payloadOf(k + 100).toString());
      expect(b?.packet.properties?.contentType).toBe(`text/k${k}`);
      expect(b?.packet.properties?.correlationData?.toString()).toBe(`correlation ${k}`);
      expect(b?.packet.properties?.userProperties).toEqual({ k: String(k) });
    }
    const largeBack = reader.received.messages.find((m) => m.topic === 'lent/large');
    expect(largeBack?.packet.payload.length).toBe(large.length);
    expect(Buffer.compare(largeBack!.packet.payload as Buffer, large)).toBe(0);

    const back2 = await client({ clientId: 'lent-away', clean: false, protocolVersion: 4 });
    const queued = await back2.received.waitFor(81);
    for (let k = 0; k < 40; k++) {
      expect(queued.find((m) => m.topic === `lent/a/${k}`)?.payload).toBe(payloadOf(k).toString());
      expect(queued.find((m) => m.topic === `lent/b/${k}`)?.payload).toBe(payloadOf(k + 100).toString());
    }
    expect(Buffer.compare(queued.find((m) => m.topic === 'lent/large')!.packet.payload as Buffer, large)).toBe(0);
  }, 30_000);

  it('keeps the packet a PUBLISH waits with while its authorization is answered later, as other reads arrive', async () => {
    const reader = await client({ clientId: 'slow-reader', protocolVersion: 5 });
    await reader.client.subscribeAsync('slow/#', { qos: 1 });
    const v311 = await client({ clientId: 'slow-v311', protocolVersion: 4 });
    const v5 = await client({ clientId: 'slow-v5', protocolVersion: 5 });
    const flood = await client({ clientId: 'slow-flood', protocolVersion: 4 });
    const sent: Promise<unknown>[] = [];
    for (let k = 0; k < 20; k++) {
      sent.push(v311.client.publishAsync(`slow/a/${k}`, payloadOf(k), { qos: 1 }));
      sent.push(
        v5.client.publishAsync(`slow/b/${k}`, payloadOf(k + 100), {
          qos: 1,
          properties: { correlationData: Buffer.from(`correlation ${k}`) },
        }),
      );
      // While the decisions are pending, the flood's reads go through the same read buffer.
      for (let n = 0; n < 5; n++) sent.push(flood.client.publishAsync('noise', Buffer.alloc(2000, 0xee), { qos: 0 }));
    }
    await Promise.all(sent);
    const got = await reader.received.waitFor(40);
    for (let k = 0; k < 20; k++) {
      expect(got.find((m) => m.topic === `slow/a/${k}`)?.payload, `slow/a/${k}`).toBe(payloadOf(k).toString());
      const b = got.find((m) => m.topic === `slow/b/${k}`);
      expect(b?.payload, `slow/b/${k}`).toBe(payloadOf(k + 100).toString());
      expect(b?.packet.properties?.correlationData?.toString()).toBe(`correlation ${k}`);
    }
  });
});
