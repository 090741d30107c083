import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectPacket, RawClient } from '../../helpers/raw-client.js';
import { until } from '../../helpers/until.js';

/**
 * A corpus of malformed and forbidden input, each case with the reaction it must get. The broker must close the
 * offending connection (after DISCONNECT with the exact reason for MQTT 5) and keep serving everyone else.
 */
type Case = { name: string; version: 4 | 5; afterConnect: boolean; bytes: Buffer; reason?: number };

const gen = (packet: mqttPacket.Packet, version: 4 | 5): Buffer =>
  mqttPacket.generate(packet, { protocolVersion: version });
const frame = (first: number, body: number[]): Buffer => Buffer.from([first, body.length, ...body]);
const str = (s: string): number[] => [s.length >> 8, s.length & 0xff, ...Buffer.from(s)];

function corpus(): Case[] {
  const cases: Case[] = [];
  for (const version of [4, 5] as const) {
    const v5Props = version === 5 ? [0] : [];
    const add = (name: string, bytes: Buffer, reason?: number): void => {
      cases.push({
        name: `v${version} ${name}`,
        version,
        afterConnect: true,
        bytes,
        reason: version === 5 ? reason : undefined,
      });
    };
    add('PUBLISH with both QoS bits set', frame(0x36, [...str('a'), 0, 1, ...v5Props]), 0x81);
    add('PUBLISH with a + in the topic', frame(0x30, [...str('a/+'), ...v5Props, 0x61]), 0x90);
    add('PUBLISH with a # in the topic', frame(0x30, [...str('a/#'), ...v5Props]), 0x90);
    add('PUBLISH with ill-formed UTF-8 in the topic', frame(0x30, [0, 2, 0xc3, 0x28, ...v5Props]), 0x81);
    add('PUBLISH with U+0000 in the topic', frame(0x30, [0, 3, 0x61, 0, 0x62, ...v5Props]), 0x81);
    add('PUBLISH with an empty topic and no alias', frame(0x30, [0, 0, ...v5Props]), 0x82);
    add('PUBLISH whose topic length runs past the packet', frame(0x30, [0, 50, 0x61]), 0x81);
    add('QoS 1 PUBLISH too short for its packet id', frame(0x32, [...str('a'), 0]), 0x81);
    add('PINGREQ with a remaining length of 1', frame(0xc0, [0]), 0x81);
    add('SUBSCRIBE with wrong fixed-header flags', frame(0x80, [0, 1, ...v5Props, ...str('a'), 0]), 0x81);
    add('SUBSCRIBE without any filter', frame(0x82, [0, 1, ...v5Props]), 0x82);
    add('SUBSCRIBE asking for QoS 3', frame(0x82, [0, 1, ...v5Props, ...str('a'), 3]), 0x81);
    add('UNSUBSCRIBE without any filter', frame(0xa2, [0, 1, ...v5Props]), 0x82);
    add('PUBREL with flags 0', frame(0x60, [0, 1]), 0x81);
    // mqtt-packet read these missing Packet Identifiers as -1 and the broker acted on them (answered PUBCOMP 65535,
    // or threw encoding a PUBCOMP for -1).
    add('PUBREL too short for its packet id', frame(0x62, [0]), 0x81);
    add('PUBACK without a packet id', frame(0x40, []), 0x81);
    add('SUBSCRIBE too short for its packet id', frame(0x82, [0]), 0x81);
    if (version === 4) add('PUBREL longer than its packet id', frame(0x62, [0, 1, 0]));
    if (version === 5)
      add('PUBLISH whose User Property runs past its section', frame(0x30, [...str('a'), 3, 0x26, 0, 5]), 0x81);
    if (version === 5) add('PUBLISH with Payload Format Indicator 2', frame(0x30, [...str('a'), 2, 0x01, 2]), 0x82);
    // [MQTT-1.5.5-1] a remaining length of 0 written in two bytes.
    add('a remaining length not in its shortest form', Buffer.from([0xc0, 0x80, 0x00]), 0x81);
    add('reserved packet type 0', frame(0x00, []), 0x81);
    add('CONNACK sent by a client', frame(0x20, [0, 0, ...v5Props]), 0x82);
    add('a second CONNECT', gen(connectPacket('again', { protocolVersion: version }), version), 0x82);
    add('a remaining length of five bytes', Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), 0x81);
    add(
      'a packet over the maximum packet size',
      gen({ cmd: 'publish', topic: 'a', payload: Buffer.alloc(4096), qos: 0, dup: false, retain: false }, version),
      0x95,
    );
  }
  const before = (name: string, bytes: Buffer): void => {
    cases.push({ name: `before CONNECT: ${name}`, version: 4, afterConnect: false, bytes });
  };
  before(
    'a PUBLISH as the first packet',
    gen({ cmd: 'publish', topic: 'a', payload: 'x', qos: 0, dup: false, retain: false }, 4),
  );
  before('a PINGREQ as the first packet', Buffer.from([0xc0, 0]));
  before('a CONNECT with an unknown protocol name', frame(0x10, [...str('MQTX'), 4, 2, 0, 60, ...str('c')]));
  before('a CONNECT with the reserved flag set', frame(0x10, [...str('MQTT'), 4, 3, 0, 60, ...str('c')]));
  before('a CONNECT whose client id runs past the packet', frame(0x10, [...str('MQTT'), 4, 2, 0, 60, 0, 40, 0x61]));
  before('a CONNECT with will QoS but no will flag', frame(0x10, [...str('MQTT'), 4, 0x0a, 0, 60, ...str('c')]));
  // [MQTT-3.1.2-14]: Will QoS 3 does not exist; it was answered as a QoS the broker does not support (return code 3).
  before('a CONNECT with Will QoS 3', frame(0x10, [...str('MQTT'), 4, 0x1e, 0, 60, ...str('c'), ...str('w'), 0, 0]));
  before('random bytes', Buffer.from([0xf3, 0x12, 0x99, 0x00, 0x41]));
  return cases;
}

describe('malformed and forbidden input', () => {
  let broker: TestBroker;
  let probeSubscriber: mqtt.MqttClient;
  beforeAll(async () => {
    broker = await startBroker({ config: { limits: { max_packet_size: 1024 } } });
    probeSubscriber = await mqtt.connectAsync(broker.url, { clientId: 'probe-sub', protocolVersion: 5 });
    await probeSubscriber.subscribeAsync('probe/#', { qos: 1 });
  });
  afterAll(async () => {
    await probeSubscriber.endAsync();
    await broker.stop();
  });

  let n = 0;
  it.each(corpus().map((c) => [c.name, c] as const))(
    '%s closes the connection with the right reaction',
    async (_name, c) => {
      const client = await RawClient.connect(broker.port, c.version);
      const clientId = `bad-${++n}`;
      if (c.afterConnect) {
        client.send(connectPacket(clientId, { protocolVersion: c.version }), c.version);
        const connack = await client.next('connack');
        expect(connack.returnCode ?? connack.reasonCode).toBe(0);
      }
      client.sendBytes(c.bytes);
      await client.waitClosed();
      if (c.reason !== undefined) {
        const disconnect = client.packets.find((p) => p.cmd === 'disconnect');
        expect(disconnect, 'MQTT 5 client must be told why').toBeDefined();
        expect((disconnect as mqttPacket.IDisconnectPacket).reasonCode).toBe(c.reason);
      }
      if (c.afterConnect) {
        const line = await broker.waitForLog(
          (l) => l.clientId === clientId && typeof l.msg === 'string' && l.msg.startsWith('closing connection'),
        );
        expect(line.detail ?? line.reason).toBeTruthy();
      }
      // Nothing else is disturbed: a message still goes through.
      const received = new Promise<string>((resolve) =>
        probeSubscriber.once('message', (_t, p) => resolve(p.toString())),
      );
      const publisher = await mqtt.connectAsync(broker.url, { clientId: `probe-pub-${n}` });
      await publisher.publishAsync('probe/x', `after ${c.name}`, { qos: 1 });
      expect(await received).toBe(`after ${c.name}`);
      await publisher.endAsync();
    },
  );

  it('an MQTT 5 CONNECT over the maximum packet size gets CONNACK 0x95, then the connection closes', async () => {
    const client = await RawClient.connect(broker.port, 5);
    client.send(
      connectPacket('too-big', {
        protocolVersion: 5,
        will: { topic: 'w', payload: Buffer.alloc(4096), qos: 0, retain: false },
      }),
      5,
    );
    const connack = await client.next('connack');
    expect(connack.reasonCode).toBe(0x95);
    await client.waitClosed();
    await broker.waitForLog((l) => l.msg === 'refusing connection: CONNECT exceeds the maximum packet size');
  });

  it('an MQTT 5 CONNECT whose will User Property runs past its section gets CONNACK 0x81; no will is kept', async () => {
    // mqtt-packet decoded the value as null; the will was kept, and publishing it to an MQTT 5 subscriber threw in the
    // encoder, from the socket's close handler: the process died.
    const watcher = await mqtt.connectAsync(broker.url, { clientId: 'will-watcher', protocolVersion: 5 });
    await watcher.subscribeAsync('will/t', { qos: 0 });
    const wills: string[] = [];
    watcher.on('message', (topic) => wills.push(topic));
    const connect = frame(0x10, [
      ...str('MQTT'),
      5,
      0x04, // will flag
      0,
      0,
      0, // no CONNECT properties
      ...str('bad-will'),
      ...[6, 0x26, 0, 1, 0x6b, 0, 0xff], // User Property "k" whose value claims 255 bytes
      ...str('will/t'),
      0,
      0,
    ]);
    const client = await RawClient.connect(broker.port, 5);
    client.sendBytes(connect);
    expect((await client.next('connack')).reasonCode).toBe(0x81);
    await client.waitClosed();
    const line = await broker.waitForLog(
      (l) =>
        l.msg === 'closing connection: protocol violation' &&
        l.reason === 'malformedPacket' &&
        typeof l.detail === 'string' &&
        l.detail.includes('will properties'),
    );
    expect(line.detail).toBe(
      'malformed packet: CONNECT will properties: the User Property property runs past its section',
    );
    // The broker is alive and delivers; the refused client left no will.
    await watcher.publishAsync('will/t', 'alive', { qos: 1 });
    await until(() => wills.length > 0 || undefined, 'a delivery');
    expect(wills).toEqual(['will/t']);
    await watcher.endAsync();
  });

  it.each([
    ['Request Problem Information 2', 0x82, [0x10, 0, ...str('MQTT'), 5, 0x02, 0, 0, 2, 0x17, 2, ...str('rpi')]],
    ['Request Response Information 2', 0x82, [0x10, 0, ...str('MQTT'), 5, 0x02, 0, 0, 2, 0x19, 2, ...str('rri')]],
    ['Will QoS 3', 0x81, [0x10, 0, ...str('MQTT'), 5, 0x1e, 0, 0, 0, ...str('wq3'), 0, ...str('w'), 0, 0]],
  ] as const)('an MQTT 5 CONNECT with %s gets CONNACK %i, then the connection closes', async (_name, reason, bytes) => {
    const packet = Buffer.from(bytes);
    packet[1] = packet.length - 2;
    const client = await RawClient.connect(broker.port, 5);
    client.sendBytes(packet);
    expect((await client.next('connack')).reasonCode).toBe(reason);
    await client.waitClosed();
  });

  it('an MQTT 3.1.1 CONNECT with Will QoS 3 is closed without a CONNACK (there is no return code for it)', async () => {
    const client = await RawClient.connect(broker.port, 4);
    client.sendBytes(frame(0x10, [...str('MQTT'), 4, 0x1e, 0, 60, ...str('wq3-4'), ...str('w'), 0, 0]));
    await client.waitClosed();
    expect(client.packets).toEqual([]);
  });

  it('survives a seeded stream of random mutations of valid packets', async () => {
    let seed = 0x2545f491;
    const random = (): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 0x1_0000_0000;
    };
    const templates = [
      gen({ cmd: 'publish', topic: 'fuzz/a', payload: 'hello', qos: 1, messageId: 7, dup: false, retain: false }, 5),
      gen({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'fuzz/#', qos: 1 }] }, 5),
      gen({ cmd: 'unsubscribe', messageId: 4, unsubscriptions: ['fuzz/#'] }, 5),
      gen({ cmd: 'pubrel', messageId: 9 }, 5),
      gen({ cmd: 'disconnect', reasonCode: 0 }, 5),
    ];
    let closed = 0;
    for (let i = 0; i < 100; i++) {
      const client = await RawClient.connect(broker.port, 5);
      client.send(connectPacket(`fuzz-${i}`, { protocolVersion: 5 }), 5);
      await client.next('connack');
      const bytes = Buffer.from(templates[Math.floor(random() * templates.length)]!);
      const flips = 1 + Math.floor(random() * 3);
      for (let f = 0; f < flips; f++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      client.sendBytes(bytes);
      // Trailing PINGREQs complete any length the mutation enlarged, so every case reaches a verdict quickly.
      client.sendBytes(Buffer.alloc(64, Buffer.from([0xc0, 0x00])));
      // Either the connection survives and answers, or it is closed: never a hang or a crash.
      const outcome = await Promise.race([
        client.next('pingresp', 1000).then(() => 'alive'),
        client.waitClosed(1000).then(() => 'closed'),
      ]).catch(() => 'incomplete-packet');
      if (outcome === 'closed') closed++;
      client.end();
    }
    expect(closed).toBeGreaterThan(0);
    const received = new Promise<string>((resolve) =>
      probeSubscriber.once('message', (_t, p) => resolve(p.toString())),
    );
    const publisher = await mqtt.connectAsync(broker.url, { clientId: 'probe-after-fuzz' });
    await publisher.publishAsync('probe/x', 'still here', { qos: 1 });
    expect(await received).toBe('still here');
    await publisher.endAsync();
  }, 120_000);
});
