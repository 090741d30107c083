import type { IConnackPacket, IDisconnectPacket } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectClient, endAll, rawConnect, type Connected } from '../../helpers/mqtt-clients.js';
import { RawClient } from '../../helpers/raw-client.js';

/**
 * Packets that parse but break rules mqtt-packet does not check, sent as raw bytes to a listening broker: ill-formed
 * UTF-8 in string fields, Packet Identifier 0, and an MQTT 5 property given twice. Each must close the connection
 * (MQTT 5: after DISCONNECT with the exact reason) without being answered or routed.
 */
const frame = (first: number, ...parts: (Buffer | number[])[]): Buffer => {
  const body = Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
  return Buffer.concat([Buffer.from([first, body.length]), body]);
};
const str = (s: string | number[]): Buffer => {
  const b = Buffer.from(s as string);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
};
const props = (...parts: (Buffer | number[])[]): Buffer => {
  const body = Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
  return Buffer.concat([Buffer.from([body.length]), body]);
};
/** "p/", then 0xC3 0x28: a two-byte sequence whose second byte is not a continuation byte. */
const ILL_FORMED = [0x70, 0x2f, 0xc3, 0x28];

const MALFORMED = 0x81;
const PROTOCOL_ERROR = 0x82;

interface Case {
  name: string;
  version: 4 | 5;
  bytes: Buffer;
  reason: 'malformedPacket' | 'protocolError';
  detail: string;
  /** A PUBLISH to `rules/...`: the subscriber must not receive it. */
  routable?: boolean;
}

const cases: Case[] = [
  // 1. [MQTT-1.5.4-1] ill-formed UTF-8 and [MQTT-1.5.4-2] U+0000 in a topic filter: a malformed packet.
  ...([4, 5] as const).flatMap((version): Case[] => {
    const v5Props = version === 5 ? [0] : [];
    return [
      {
        name: `v${version} SUBSCRIBE with an ill-formed UTF-8 filter`,
        version,
        bytes: frame(0x82, [0, 1, ...v5Props], str(ILL_FORMED), [0]),
        reason: 'malformedPacket',
        detail: 'malformed packet: SUBSCRIBE topic filter is not a valid UTF-8 string (illFormed)',
      },
      {
        name: `v${version} SUBSCRIBE with U+0000 in a filter`,
        version,
        bytes: frame(0x82, [0, 1, ...v5Props], str('rules/\u0000'), [0]),
        reason: 'malformedPacket',
        detail: 'malformed packet: SUBSCRIBE topic filter is not a valid UTF-8 string (nullCharacter)',
      },
      {
        name: `v${version} UNSUBSCRIBE with an ill-formed UTF-8 filter`,
        version,
        bytes: frame(0xa2, [0, 2, ...v5Props], str(ILL_FORMED)),
        reason: 'malformedPacket',
        detail: 'malformed packet: UNSUBSCRIBE topic filter is not a valid UTF-8 string (illFormed)',
      },
      // 2. [MQTT-2.2.1-3] Packet Identifier 0.
      {
        name: `v${version} QoS 1 PUBLISH with Packet Identifier 0`,
        version,
        bytes: frame(0x32, str('rules/id0'), [0, 0, ...v5Props], [0x78]),
        reason: 'protocolError',
        detail: 'PUBLISH has Packet Identifier 0 [MQTT-2.2.1-3]',
        routable: true,
      },
      {
        name: `v${version} SUBSCRIBE with Packet Identifier 0`,
        version,
        bytes: frame(0x82, [0, 0, ...v5Props], str('rules/a'), [0]),
        reason: 'protocolError',
        detail: 'SUBSCRIBE has Packet Identifier 0 [MQTT-2.2.1-3]',
      },
      {
        name: `v${version} UNSUBSCRIBE with Packet Identifier 0`,
        version,
        bytes: frame(0xa2, [0, 0, ...v5Props], str('rules/a')),
        reason: 'protocolError',
        detail: 'UNSUBSCRIBE has Packet Identifier 0 [MQTT-2.2.1-3]',
      },
      {
        name: `v${version} PUBREL with Packet Identifier 0`,
        version,
        bytes: frame(0x62, [0, 0]),
        reason: 'protocolError',
        detail: 'PUBREL has Packet Identifier 0 [MQTT-2.2.1-3]',
      },
    ];
  }),
  {
    name: 'v5 QoS 2 PUBLISH with properties and Packet Identifier 0',
    version: 5,
    bytes: frame(0x34, str('rules/id0'), [0, 0], props([0x01, 1]), [0x78]),
    reason: 'protocolError',
    detail: 'PUBLISH has Packet Identifier 0 [MQTT-2.2.1-3]',
    routable: true,
  },
  // 3. A single-valued MQTT 5 property given twice: a protocol error.
  {
    name: 'v5 PUBLISH with Payload Format Indicator twice',
    version: 5,
    bytes: frame(0x30, str('rules/pfi'), props([0x01, 0, 0x01, 1]), [0x78]),
    reason: 'protocolError',
    detail: 'PUBLISH has the Payload Format Indicator property more than once',
    routable: true,
  },
  {
    name: 'v5 PUBLISH with Topic Alias twice',
    version: 5,
    bytes: frame(0x30, str('rules/alias'), props([0x23, 0, 1, 0x23, 0, 2]), [0x78]),
    reason: 'protocolError',
    detail: 'PUBLISH has the Topic Alias property more than once',
    routable: true,
  },
  {
    name: 'v5 PUBLISH with Message Expiry Interval twice',
    version: 5,
    bytes: frame(0x30, str('rules/expiry'), props([0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 100]), [0x78]),
    reason: 'protocolError',
    detail: 'PUBLISH has the Message Expiry Interval property more than once',
    routable: true,
  },
  {
    name: 'v5 SUBSCRIBE with Subscription Identifier twice',
    version: 5,
    bytes: frame(0x82, [0, 1], props([0x0b, 1, 0x0b, 2]), str('rules/a'), [0]),
    reason: 'protocolError',
    detail: 'SUBSCRIBE has the Subscription Identifier property more than once',
  },
  // Other UTF-8 string fields a connected client sends.
  {
    name: 'v5 PUBLISH with an ill-formed UTF-8 user property',
    version: 5,
    bytes: frame(0x30, str('rules/user'), props([0x26], str('k'), str(ILL_FORMED)), [0x78]),
    reason: 'malformedPacket',
    detail: 'malformed packet: PUBLISH User Property property is not a valid UTF-8 string (illFormed)',
    routable: true,
  },
  {
    name: 'v5 PUBLISH with an ill-formed UTF-8 response topic',
    version: 5,
    bytes: frame(0x30, str('rules/response'), props([0x08], str(ILL_FORMED)), [0x78]),
    reason: 'malformedPacket',
    detail: 'malformed packet: PUBLISH Response Topic property is not a valid UTF-8 string (illFormed)',
    routable: true,
  },
  // 4. Section 2.2.2.2: a property the packet type may not carry (Table 2-4) makes the packet malformed.
  {
    name: 'v5 PUBLISH with Session Expiry Interval',
    version: 5,
    bytes: frame(0x30, str('rules/foreign-expiry'), props([0x11, 0, 0, 0, 10]), [0x78]),
    reason: 'malformedPacket',
    detail: 'malformed packet: PUBLISH cannot carry the Session Expiry Interval property',
    routable: true,
  },
  {
    name: 'v5 QoS 1 PUBLISH with Receive Maximum after a valid property',
    version: 5,
    bytes: frame(0x32, str('rules/foreign-receive'), [0, 5], props([0x01, 1, 0x21, 0, 10]), [0x78]),
    reason: 'malformedPacket',
    detail: 'malformed packet: PUBLISH cannot carry the Receive Maximum property',
    routable: true,
  },
  {
    name: 'v5 SUBSCRIBE with Topic Alias',
    version: 5,
    bytes: frame(0x82, [0, 1], props([0x23, 0, 1]), str('rules/a'), [0]),
    reason: 'malformedPacket',
    detail: 'malformed packet: SUBSCRIBE cannot carry the Topic Alias property',
  },
  {
    name: 'v5 AUTH with Payload Format Indicator',
    version: 5,
    bytes: frame(0xf0, [0x18], props([0x01, 1])),
    reason: 'malformedPacket',
    detail: 'malformed packet: AUTH cannot carry the Payload Format Indicator property',
  },
  // [MQTT-3.3.2-14] a Response Topic is a topic name: whoever answers publishes to it.
  {
    name: 'v5 PUBLISH with a wildcard in its response topic',
    version: 5,
    bytes: frame(0x30, str('rules/request'), props([0x08], str('replies/#')), [0x78]),
    reason: 'protocolError',
    detail: 'invalid response topic (wildcard)',
    routable: true,
  },
];

describe('packet rules mqtt-packet does not check', () => {
  let broker: TestBroker;
  let subscriber: Connected;
  beforeAll(async () => {
    // Each refused CONNECT here comes from 127.0.0.1 and the tests read its log line: more than the default burst
    // of the refusal limiter (audit.refusals) would leave later ones counted, not logged.
    broker = await startBroker({ config: { audit: { refusals: { burst: 10_000 } } } });
    subscriber = await connectClient(broker.url, { clientId: 'rules-sub', protocolVersion: 5 });
    await subscriber.client.subscribeAsync('rules/#', { qos: 2 });
  });
  afterAll(async () => {
    await endAll(subscriber.client);
    await broker.stop();
  });

  let n = 0;
  it.each(cases.map((c) => [c.name, c] as const))('%s closes the connection', async (_name, c) => {
    const clientId = `rules-${++n}`;
    const { client, connack } = await rawConnect(broker.port, clientId, c.version);
    expect(connack.returnCode ?? connack.reasonCode).toBe(0);
    client.sendBytes(c.bytes);
    await client.waitClosed();
    const answers = client.packets.filter((p) => p.cmd !== 'connack').map((p) => p.cmd);
    if (c.version === 5) {
      expect(answers).toEqual(['disconnect']);
      const disconnect = client.packets.find((p) => p.cmd === 'disconnect') as IDisconnectPacket;
      expect(disconnect.reasonCode).toBe(c.reason === 'protocolError' ? PROTOCOL_ERROR : MALFORMED);
      expect(disconnect.properties?.reasonString).toBe(c.detail);
    } else expect(answers).toEqual([]);
    const line = await broker.waitForLog(
      (l) => l.clientId === clientId && l.msg === 'closing connection: protocol violation',
    );
    expect({ reason: line.reason, detail: line.detail }).toEqual({ reason: c.reason, detail: c.detail });
    if (c.routable) {
      // Nothing of the refused PUBLISH was routed: the subscriber's next message is a marker sent after it.
      const before = subscriber.received.messages.length;
      const marker = await connectClient(broker.url, { clientId: `rules-marker-${n}`, protocolVersion: 5 });
      await marker.client.publishAsync('rules/marker', c.name, { qos: 1 });
      await subscriber.received.until((): boolean => subscriber.received.messages.length > before, 'the marker');
      expect(subscriber.received.messages.slice(before).map((m) => [m.topic, m.payload])).toEqual([
        ['rules/marker', c.name],
      ]);
      await endAll(marker.client);
    }
  });

  it('a well-formed U+FFFD in a filter is a character like any other: granted, and the connection kept', async () => {
    const { client } = await rawConnect(broker.port, 'rules-fffd', 5);
    client.sendBytes(frame(0x82, [0, 3, 0], str('rules/\ufffd'), [1]));
    const suback = await client.next('suback');
    expect(suback.granted).toEqual([1]);
    expect(client.closed).toBe(false);
    client.end();
  });

  it('v5 CONNECT with Session Expiry Interval twice gets CONNACK 0x82, then the connection closes', async () => {
    const client = await RawClient.connect(broker.port, 5);
    const properties = props([0x11, 0, 0, 0, 10, 0x11, 0, 0, 0, 20]);
    client.sendBytes(frame(0x10, str('MQTT'), [5, 0x02, 0, 60], properties, str('rules-dup-connect')));
    await client.waitClosed();
    expect(client.packets.map((p) => p.cmd)).toEqual(['connack']);
    expect((client.packets[0] as IConnackPacket).reasonCode).toBe(PROTOCOL_ERROR);
    const line = await broker.waitForLog(
      (l) =>
        l.msg === 'closing connection: protocol violation' &&
        l.detail === 'CONNECT has the Session Expiry Interval property more than once',
    );
    expect(line.reason).toBe('protocolError');
  });

  it('v5 CONNECT whose will has a wildcard in its response topic gets CONNACK 0x82 and keeps no session', async () => {
    const client = await RawClient.connect(broker.port, 5);
    const willProperties = props([0x08], str('replies/+'));
    client.sendBytes(
      frame(0x10, str('MQTT'), [5, 0x06, 0, 60, 0], str('rules-will-response'), willProperties, str('w'), str('b')),
    );
    await client.waitClosed();
    expect(client.packets.map((p) => p.cmd)).toEqual(['connack']);
    expect((client.packets[0] as IConnackPacket).reasonCode).toBe(PROTOCOL_ERROR);
    expect(broker.server.broker.sessions.has('rules-will-response')).toBe(false);
  });

  it.each([
    [5, [['connack', 0x90]]],
    [4, []],
  ] as const)(
    'a version %i CONNECT whose will topic has a wildcard is refused: CONNACK 0x90 for MQTT 5, none for 3.1.1',
    async (v, answered) => {
      const id = `rules-will-wildcard-${v}`;
      const client = await RawClient.connect(broker.port, v);
      client.sendBytes(
        v === 5
          ? frame(0x10, str('MQTT'), [5, 0x06, 0, 60, 0], str(id), [0], str('wills/+'), str('b'))
          : frame(0x10, str('MQTT'), [4, 0x06, 0, 60], str(id), str('wills/+'), str('b')),
      );
      await client.waitClosed();
      // 3.1.1 has no return code for it: return code 3 ("server unavailable") told the client to retry the same CONNECT.
      expect(client.packets.map((p) => [p.cmd, (p as IConnackPacket).reasonCode])).toEqual(answered);
      expect(broker.server.broker.sessions.has(id)).toBe(false);
      const event = await broker.waitForAudit('authn.denied', (e) => e.mqtt?.client_id === id);
      expect(event.event.code).toBe('topicNameInvalid');
      await expectServing(`after the version ${v} wildcard will topic`);
    },
  );

  it('v5 CONNECT with Authentication Method twice gets CONNACK 0x82 (it was 0x8C by accident)', async () => {
    const client = await RawClient.connect(broker.port, 5);
    const properties = props([0x15], str('SCRAM-SHA-256'), [0x15], str('SCRAM-SHA-512'));
    client.sendBytes(frame(0x10, str('MQTT'), [5, 0x02, 0, 60], properties, str('rules-dup-method')));
    await client.waitClosed();
    expect(client.packets.map((p) => p.cmd)).toEqual(['connack']);
    expect((client.packets[0] as IConnackPacket).reasonCode).toBe(PROTOCOL_ERROR);
  });

  it.each([
    ['v5 will topic', 5, frame(0x10, str('MQTT'), [5, 0x06, 0, 60, 0], str('w5'), [0], str(ILL_FORMED), str('b'))],
    ['3.1.1 will topic', 4, frame(0x10, str('MQTT'), [4, 0x06, 0, 60], str('w4'), str(ILL_FORMED), str('bye'))],
    ['3.1.1 user name', 4, frame(0x10, str('MQTT'), [4, 0x82, 0, 60], str('u4'), str(ILL_FORMED))],
    ['v5 user name', 5, frame(0x10, str('MQTT'), [5, 0x82, 0, 60, 0], str('u5'), str(ILL_FORMED))],
    ['3.1.1 client identifier', 4, frame(0x10, str('MQTT'), [4, 0x02, 0, 60], str(ILL_FORMED))],
    ['3.1 client identifier', 3, frame(0x10, str('MQIsdp'), [3, 0x02, 0, 60], str(ILL_FORMED))],
    ['v5 client identifier', 5, frame(0x10, str('MQTT'), [5, 0x02, 0, 60, 0], str(ILL_FORMED))],
    [
      '3.1.1 client identifier with a will',
      4,
      frame(0x10, str('MQTT'), [4, 0x06, 0, 60], str(ILL_FORMED), str('w'), str('b')),
    ],
  ] as const)(
    'a CONNECT whose %s is ill-formed UTF-8 is malformed: CONNACK 0x81 for MQTT 5, none for 3.1.1, then closed',
    async (what, v, bytes) => {
      const client = await RawClient.connect(broker.port, v === 3 ? 4 : v);
      const peer = `127.0.0.1:${client.socket.localPort}`;
      client.sendBytes(bytes);
      await client.waitClosed();
      if (v === 5) {
        expect(client.packets.map((p) => p.cmd)).toEqual(['connack']);
        expect((client.packets[0] as IConnackPacket).reasonCode).toBe(MALFORMED);
      } else expect(client.packets).toEqual([]);
      const field = ['user name', 'will topic', 'client identifier'].find((f) => what.includes(f))!;
      const detail = `malformed packet: CONNECT ${field} is not a valid UTF-8 string (illFormed)`;
      const line = await broker.waitForLog(
        (l) => l.msg === 'closing connection: protocol violation' && l.detail === detail && l.peer === peer,
      );
      expect(line.reason).toBe('malformedPacket');
      await expectServing(`after ${what}`);
    },
  );

  it('a CONNECT whose client identifier holds U+0000 is malformed too, not an invalid identifier (0x85)', async () => {
    const client = await RawClient.connect(broker.port, 5);
    client.sendBytes(frame(0x10, str('MQTT'), [5, 0x02, 0, 60, 0], str('nul\u0000id')));
    await client.waitClosed();
    expect(client.packets.map((p) => [p.cmd, (p as IConnackPacket).reasonCode])).toEqual([['connack', MALFORMED]]);
    await broker.waitForLog(
      (l) => l.detail === 'malformed packet: CONNECT client identifier is not a valid UTF-8 string (nullCharacter)',
    );
  });

  it('a well-formed U+FFFD in a client identifier is still refused by choice with 0x85', async () => {
    const client = await RawClient.connect(broker.port, 5);
    client.sendBytes(frame(0x10, str('MQTT'), [5, 0x02, 0, 60, 0], str('fffd\ufffd')));
    await client.waitClosed();
    expect(client.packets.map((p) => [p.cmd, (p as IConnackPacket).reasonCode])).toEqual([['connack', 0x85]]);
  });

  it.each([
    ['Topic Alias', props([0x23, 0, 1]), props(), 'CONNECT cannot carry the Topic Alias property'],
    [
      'Payload Format Indicator',
      props([0x01, 1]),
      props(),
      'CONNECT cannot carry the Payload Format Indicator property',
    ],
    [
      'will: Session Expiry Interval',
      props(),
      props([0x11, 0, 0, 0, 10]),
      'CONNECT will cannot carry the Session Expiry Interval property',
    ],
    ['will: Topic Alias', props(), props([0x23, 0, 1]), 'CONNECT will cannot carry the Topic Alias property'],
  ] as const)(
    'v5 CONNECT carrying %s gets CONNACK 0x81, keeps no session, and the broker serves others',
    async (what, properties, willProperties, detail) => {
      const clientId = `rules-foreign-${what.replace(/\W+/g, '-')}`;
      const client = await RawClient.connect(broker.port, 5);
      client.sendBytes(
        frame(
          0x10,
          str('MQTT'),
          [5, 0x06, 0, 60],
          properties,
          str(clientId),
          willProperties,
          str('rules/will'),
          str('b'),
        ),
      );
      await client.waitClosed();
      expect(client.packets.map((p) => [p.cmd, (p as IConnackPacket).reasonCode])).toEqual([['connack', MALFORMED]]);
      const line = await broker.waitForLog(
        (l) => l.msg === 'closing connection: protocol violation' && l.detail === `malformed packet: ${detail}`,
      );
      expect(line.reason).toBe('malformedPacket');
      expect(broker.server.broker.sessions.has(clientId)).toBe(false);
      await expectServing(`after ${what}`);
    },
  );

  /** The broker still routes for everyone else: a new client's message reaches the long-lived subscriber. */
  async function expectServing(marker: string): Promise<void> {
    const before = subscriber.received.messages.length;
    const publisher = await connectClient(broker.url, { clientId: `rules-after-${++n}`, protocolVersion: 5 });
    await publisher.client.publishAsync('rules/marker', marker, { qos: 1 });
    await subscriber.received.until((): boolean => subscriber.received.messages.length > before, 'the marker');
    expect(subscriber.received.messages.slice(before).map((m) => [m.topic, m.payload])).toEqual([
      ['rules/marker', marker],
    ]);
    await endAll(publisher.client);
  }
});
