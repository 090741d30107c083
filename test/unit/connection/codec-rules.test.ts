import mqtt, { type Packet } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { parseFrames, type PacketSink } from '../../../src/connection/codec.js';

/**
 * The rules the codec applies to a packet's bytes that mqtt-packet does not: non-zero Packet Identifiers, single
 * MQTT 5 properties, and UTF-8 string fields checked as bytes (mqtt-packet decodes ill-formed UTF-8 as U+FFFD).
 */
interface Outcome {
  packets: string[];
  malformed: string[];
  protocolErrors: string[];
}

function decode(version: 4 | 5, bytes: Buffer): Outcome & { decoded: Packet[] } {
  const decoded: Packet[] = [];
  const malformed: string[] = [];
  const protocolErrors: string[] = [];
  const sink: PacketSink = {
    onPacket: (p) => decoded.push(p),
    onParseError: (e) => malformed.push(e.message),
    onProtocolError: (detail) => protocolErrors.push(detail),
  };
  parseFrames(version, bytes, sink);
  return { packets: decoded.map((p) => p.cmd), decoded, malformed, protocolErrors };
}

const varint = (n: number): number[] => {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return out;
};
const frame = (first: number, ...parts: (Buffer | number[])[]): Buffer => {
  const body = Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
  return Buffer.concat([Buffer.from([first, ...varint(body.length)]), body]);
};
const str = (s: string | number[]): Buffer => {
  const b = typeof s === 'string' ? Buffer.from(s) : Buffer.from(s);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
};
const props = (...parts: (Buffer | number[])[]): Buffer => {
  const body = Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
  return Buffer.concat([Buffer.from(varint(body.length)), body]);
};
const ILL_FORMED = [0x70, 0x2f, 0xc3, 0x28]; // "p/" and a two-byte sequence whose second byte is not a continuation
const PINGREQ = Buffer.from([0xc0, 0]);

/** A CONNECT written byte by byte: protocol name, level, flags, keep alive, then what follows. */
const connect = (level: 4 | 5, flags: number, ...rest: (Buffer | number[])[]): Buffer =>
  frame(0x10, str('MQTT'), [level, flags, 0, 30], ...rest);

describe('Packet Identifier 0 is a protocol error [MQTT-2.2.1-3]', () => {
  const cases: [string, 4 | 5, Buffer, string][] = [
    ['QoS 1 PUBLISH (fast path)', 4, frame(0x32, str('a'), [0, 0], [0x78]), 'PUBLISH'],
    ['QoS 2 PUBLISH (fast path)', 5, frame(0x34, str('a'), [0, 0, 0]), 'PUBLISH'],
    ['QoS 1 PUBLISH with properties', 5, frame(0x32, str('a'), [0, 0], props([0x01, 1])), 'PUBLISH'],
    ['PUBACK', 4, frame(0x40, [0, 0]), 'PUBACK'],
    ['PUBREC', 4, frame(0x50, [0, 0]), 'PUBREC'],
    ['PUBREL', 4, frame(0x62, [0, 0]), 'PUBREL'],
    ['PUBCOMP', 4, frame(0x70, [0, 0]), 'PUBCOMP'],
    ['PUBACK with a reason code', 5, frame(0x40, [0, 0, 0x10]), 'PUBACK'],
    ['PUBREC with a reason and properties', 5, frame(0x50, [0, 0, 0x10], props([0x1f], str('why'))), 'PUBREC'],
    ['3.1.1 SUBSCRIBE', 4, frame(0x82, [0, 0], str('a'), [0]), 'SUBSCRIBE'],
    ['MQTT 5 SUBSCRIBE', 5, frame(0x82, [0, 0, 0], str('a'), [0]), 'SUBSCRIBE'],
    ['3.1.1 UNSUBSCRIBE', 4, frame(0xa2, [0, 0], str('a')), 'UNSUBSCRIBE'],
    ['MQTT 5 UNSUBSCRIBE', 5, frame(0xa2, [0, 0, 0], str('a')), 'UNSUBSCRIBE'],
  ];
  it.each(cases)('%s with id 0 is refused, after the packet before it', (_name, version, bytes, packetName) => {
    const outcome = decode(version, Buffer.concat([PINGREQ, bytes, PINGREQ]));
    expect(outcome).toMatchObject({
      packets: ['pingreq'],
      malformed: [],
      protocolErrors: [`${packetName} has Packet Identifier 0 [MQTT-2.2.1-3]`],
    });
  });

  it('a QoS 0 PUBLISH has no Packet Identifier, so its first payload bytes may be zero', () => {
    expect(decode(4, frame(0x30, str('a'), [0, 0])).packets).toEqual(['publish']);
    expect(decode(5, frame(0x30, str('a'), props([0x01, 1]), [0, 0])).packets).toEqual(['publish']);
  });
});

describe('a single-valued MQTT 5 property given twice is a protocol error', () => {
  const cases: [string, Buffer, string][] = [
    // The first value 0 is the case mqtt-packet overwrites without a trace.
    ['PUBLISH', frame(0x30, str('a'), props([0x01, 0, 0x01, 1]), [0x78]), 'PUBLISH has the Payload Format Indicator'],
    ['PUBLISH', frame(0x30, str('a'), props([0x23, 0, 1, 0x23, 0, 2])), 'PUBLISH has the Topic Alias'],
    [
      'PUBLISH',
      frame(0x32, str('a'), [0, 7], props([0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 100])),
      'PUBLISH has the Message Expiry Interval',
    ],
    [
      'PUBLISH',
      frame(0x30, str('a'), props([0x03], str('t'), [0x26], str('k'), str('v'), [0x03], str('t'))),
      'PUBLISH has the Content Type',
    ],
    [
      'CONNECT',
      connect(5, 0x02, props([0x11, 0, 0, 0, 10, 0x11, 0, 0, 0, 20]), str('c')),
      'CONNECT has the Session Expiry Interval',
    ],
    [
      'CONNECT',
      connect(5, 0x02, props([0x15], str('SCRAM-SHA-256'), [0x15], str('SCRAM-SHA-512')), str('c')),
      'CONNECT has the Authentication Method',
    ],
    [
      'CONNECT (will)',
      connect(5, 0x06, props(), str('c'), props([0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 2]), str('w'), str('bye')),
      'CONNECT will has the Will Delay Interval',
    ],
    ['SUBSCRIBE', frame(0x82, [0, 1], props([0x0b, 1, 0x0b, 2]), str('a'), [0]), 'SUBSCRIBE has the Subscription'],
    ['PUBACK', frame(0x40, [0, 1, 0x10], props([0x1f], str('a'), [0x1f], str('b'))), 'PUBACK has the Reason String'],
    ['PUBREL', frame(0x62, [0, 1, 0x92], props([0x1f], str('a'), [0x1f], str('b'))), 'PUBREL has the Reason String'],
    [
      'DISCONNECT',
      frame(0xe0, [0x04], props([0x11, 0, 0, 0, 0, 0x11, 0, 0, 0, 5])),
      'DISCONNECT has the Session Expiry Interval',
    ],
    [
      'AUTH',
      frame(0xf0, [0x18], props([0x15], str('SCRAM-SHA-256'), [0x15], str('SCRAM-SHA-256'))),
      'AUTH has the Authentication Method',
    ],
  ];
  it.each(cases.map(([name, bytes, detail]) => [name, detail, bytes] as const))('%s: %s', (_name, detail, bytes) => {
    const outcome = decode(5, Buffer.concat([PINGREQ, bytes, PINGREQ]));
    expect(outcome.packets).toEqual(['pingreq']);
    expect(outcome.malformed).toEqual([]);
    expect(outcome.protocolErrors).toHaveLength(1);
    expect(outcome.protocolErrors[0]).toContain(detail);
    expect(outcome.protocolErrors[0]).toContain('more than once');
  });

  it('User Property may repeat, also with the same name, and is decoded as mqtt-packet decodes it', () => {
    const bytes = mqtt.generate(
      {
        cmd: 'publish',
        topic: 'a',
        payload: 'x',
        qos: 1,
        messageId: 9,
        dup: false,
        retain: false,
        properties: { userProperties: { k: ['1', '2'], other: 'x' }, contentType: 'text/plain' },
      },
      { protocolVersion: 5 },
    );
    const outcome = decode(5, bytes);
    expect(outcome.protocolErrors).toEqual([]);
    expect(outcome.decoded[0]).toMatchObject({ properties: { userProperties: { k: ['1', '2'], other: 'x' } } });
  });

  it('Subscription Identifier may repeat in a PUBLISH (the handler refuses it from a client for its own reason)', () => {
    const outcome = decode(5, frame(0x30, str('a'), props([0x0b, 1, 0x0b, 2]), [0x78]));
    expect(outcome.protocolErrors).toEqual([]);
    expect(outcome.packets).toEqual(['publish']);
  });

  it('different properties, one of each, pass; an empty property section is left to the fast path', () => {
    const bytes = frame(0x32, str('a'), [0, 7], props([0x01, 1, 0x02, 0, 0, 0, 9, 0x23, 0, 1], [0x03], str('t')));
    expect(decode(5, bytes)).toMatchObject({ packets: ['publish'], malformed: [], protocolErrors: [] });
    expect(decode(5, frame(0x30, str('a'), [0], [0x78]))).toMatchObject({ packets: ['publish'] });
  });
});

describe('UTF-8 string fields are checked as bytes [MQTT-1.5.4-1] [MQTT-1.5.4-2]', () => {
  const malformed: [string, 4 | 5, Buffer, string][] = [
    ['3.1.1 SUBSCRIBE filter', 4, frame(0x82, [0, 1], str(ILL_FORMED), [0]), 'SUBSCRIBE topic filter'],
    [
      'MQTT 5 SUBSCRIBE, second filter',
      5,
      frame(0x82, [0, 1, 0], str('ok/+'), [1], str(ILL_FORMED), [0]),
      'SUBSCRIBE topic filter',
    ],
    ['SUBSCRIBE filter with U+0000', 5, frame(0x82, [0, 1, 0], str('a/\u0000'), [0]), 'SUBSCRIBE topic filter'],
    ['3.1.1 UNSUBSCRIBE filter', 4, frame(0xa2, [0, 1], str(ILL_FORMED)), 'UNSUBSCRIBE topic filter'],
    ['MQTT 5 UNSUBSCRIBE filter', 5, frame(0xa2, [0, 1, 0], str('a'), str(ILL_FORMED)), 'UNSUBSCRIBE topic filter'],
    [
      'PUBLISH user property',
      5,
      frame(0x30, str('a'), props([0x26], str('k'), str(ILL_FORMED))),
      'PUBLISH User Property',
    ],
    ['PUBLISH content type', 5, frame(0x30, str('a'), props([0x03], str(ILL_FORMED))), 'PUBLISH Content Type'],
    ['PUBLISH response topic', 5, frame(0x30, str('a'), props([0x08], str('r/\u0000'))), 'PUBLISH Response Topic'],
    ['DISCONNECT reason string', 5, frame(0xe0, [0x80], props([0x1f], str(ILL_FORMED))), 'DISCONNECT Reason String'],
    ['3.1.1 CONNECT will topic', 4, connect(4, 0x06, str('c'), str(ILL_FORMED), str('bye')), 'will topic'],
    ['MQTT 5 CONNECT will topic', 5, connect(5, 0x06, props(), str('c'), props(), str(ILL_FORMED), str('b')), 'will'],
    ['3.1.1 CONNECT user name', 4, connect(4, 0x82, str('c'), str(ILL_FORMED)), 'CONNECT user name'],
    ['3.1.1 CONNECT user name with U+0000', 4, connect(4, 0x82, str('c'), str('u\u0000')), 'CONNECT user name'],
    ['MQTT 5 CONNECT user name', 5, connect(5, 0x82, props(), str('c'), str(ILL_FORMED)), 'CONNECT user name'],
    ['3.1.1 CONNECT client identifier', 4, connect(4, 0x02, str(ILL_FORMED)), 'CONNECT client identifier'],
    ['3.1.1 CONNECT client identifier with U+0000', 4, connect(4, 0x02, str('c\u0000')), 'CONNECT client identifier'],
    [
      '3.1.1 CONNECT client identifier, with a will',
      4,
      connect(4, 0x06, str(ILL_FORMED), str('w'), str('bye')),
      'CONNECT client identifier',
    ],
    ['MQTT 5 CONNECT client identifier', 5, connect(5, 0x02, props(), str(ILL_FORMED)), 'CONNECT client identifier'],
    [
      'MQTT 5 CONNECT will user property',
      5,
      connect(5, 0x06, props(), str('c'), props([0x26], str(ILL_FORMED), str('v')), str('w'), str('b')),
      'CONNECT will User Property',
    ],
  ];
  it.each(malformed)('%s is a malformed packet', (_name, version, bytes, detail) => {
    // A CONNECT arrives alone: it decides the version of what follows.
    const alone = bytes[0] === 0x10;
    const outcome = decode(version, alone ? bytes : Buffer.concat([PINGREQ, bytes, PINGREQ]));
    expect(outcome.packets).toEqual(alone ? [] : ['pingreq']);
    expect(outcome.protocolErrors).toEqual([]);
    expect(outcome.malformed).toHaveLength(1);
    expect(outcome.malformed[0]).toContain(detail);
    expect(outcome.malformed[0]).toContain('not a valid UTF-8 string');
  });

  it('a well-formed U+FFFD is a character like any other, in a filter, a user name and a client identifier', () => {
    // The connect handler refuses it in a client identifier by choice (0x85); the codec passes it as well-formed.
    expect(decode(4, connect(4, 0x02, str('c\ufffd'))).decoded).toMatchObject([
      { cmd: 'connect', clientId: 'c\ufffd' },
    ]);
    expect(decode(5, connect(5, 0x02, props(), str('c\ufffd'))).decoded).toMatchObject([{ clientId: 'c\ufffd' }]);
    expect(decode(5, frame(0x82, [0, 1, 0], str('fffd/\ufffd'), [0])).decoded).toMatchObject([
      { cmd: 'subscribe', subscriptions: [{ topic: 'fffd/\ufffd' }] },
    ]);
    expect(decode(4, connect(4, 0x82, str('c'), str('\ufffd'))).decoded).toMatchObject([
      { cmd: 'connect', username: '\ufffd' },
    ]);
  });
});

describe('a property the packet type may not carry is malformed (section 2.2.2.2, Table 2-4)', () => {
  const u32 = [0, 0, 0, 10];
  const cases: [string, Buffer, string][] = [
    ['PUBLISH', frame(0x30, str('a'), props([0x11, ...u32]), [0x78]), 'PUBLISH cannot carry the Session Expiry'],
    ['PUBLISH', frame(0x32, str('a'), [0, 7], props([0x21, 0, 10])), 'PUBLISH cannot carry the Receive Maximum'],
    ['PUBLISH', frame(0x30, str('a'), props([0x1f], str('r'))), 'PUBLISH cannot carry the Reason String'],
    // After a valid property: the check is per property, not only on the first.
    ['PUBLISH', frame(0x30, str('a'), props([0x01, 1, 0x24, 1])), 'PUBLISH cannot carry the Maximum QoS'],
    ['PUBLISH', frame(0x30, str('a'), props([0x18, ...u32])), 'PUBLISH cannot carry the Will Delay Interval'],
    ['SUBSCRIBE', frame(0x82, [0, 1], props([0x23, 0, 1]), str('a'), [0]), 'SUBSCRIBE cannot carry the Topic Alias'],
    ['UNSUBSCRIBE', frame(0xa2, [0, 1], props([0x0b, 1]), str('a')), 'UNSUBSCRIBE cannot carry the Subscription'],
    ['UNSUBSCRIBE', frame(0xa2, [0, 1], props([0x1f], str('a')), str('a')), 'UNSUBSCRIBE cannot carry the Reason'],
    ['PUBACK', frame(0x40, [0, 1, 0x10], props([0x23, 0, 1])), 'PUBACK cannot carry the Topic Alias'],
    ['PUBREL', frame(0x62, [0, 1, 0x92], props([0x11, ...u32])), 'PUBREL cannot carry the Session Expiry'],
    ['DISCONNECT', frame(0xe0, [0x04], props([0x21, 0, 5])), 'DISCONNECT cannot carry the Receive Maximum'],
    ['AUTH', frame(0xf0, [0x18], props([0x01, 1])), 'AUTH cannot carry the Payload Format Indicator'],
    ['CONNECT', connect(5, 0x02, props([0x23, 0, 1]), str('c')), 'CONNECT cannot carry the Topic Alias'],
    ['CONNECT', connect(5, 0x02, props([0x12], str('x')), str('c')), 'CONNECT cannot carry the Assigned Client'],
    ['CONNECT', connect(5, 0x02, props([0x18, ...u32]), str('c')), 'CONNECT cannot carry the Will Delay Interval'],
    ['CONNECT', connect(5, 0x02, props([0x01, 1]), str('c')), 'CONNECT cannot carry the Payload Format Indicator'],
    [
      'CONNECT will',
      connect(5, 0x06, props(), str('c'), props([0x23, 0, 1]), str('w'), str('b')),
      'CONNECT will cannot carry the Topic Alias',
    ],
    [
      'CONNECT will',
      connect(5, 0x06, props(), str('c'), props([0x11, ...u32]), str('w'), str('b')),
      'CONNECT will cannot carry the Session Expiry Interval',
    ],
  ];
  it.each(cases.map(([name, bytes, detail]) => [name, detail, bytes] as const))('%s: %s', (_name, detail, bytes) => {
    const alone = bytes[0] === 0x10;
    const outcome = decode(5, alone ? bytes : Buffer.concat([PINGREQ, bytes, PINGREQ]));
    expect(outcome.packets).toEqual(alone ? [] : ['pingreq']);
    expect(outcome.protocolErrors).toEqual([]);
    expect(outcome.malformed).toEqual([expect.stringContaining(detail)]);
  });

  it('a foreign property mqtt-packet would have kept unused is refused before it decodes the packet', () => {
    const bytes = frame(0x30, str('a'), props([0x11, 0, 0, 0, 10]), [0x78]);
    const parser = mqtt.parser({ protocolVersion: 5 });
    const kept: Packet[] = [];
    parser.on('packet', (p: Packet) => kept.push(p));
    parser.parse(bytes);
    expect(kept).toMatchObject([{ cmd: 'publish', properties: { sessionExpiryInterval: 10 } }]);
    expect(decode(5, bytes)).toMatchObject({ packets: [], malformed: [expect.stringContaining('cannot carry')] });
  });

  // Every property Table 2-4 allows in each packet a client sends, as mqtt-packet writes them: none is refused.
  const allowed: [string, Packet][] = [
    [
      'CONNECT and its will',
      {
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 5,
        clean: true,
        keepalive: 30,
        clientId: 'c',
        properties: {
          sessionExpiryInterval: 10,
          receiveMaximum: 10,
          maximumPacketSize: 1000,
          topicAliasMaximum: 5,
          requestResponseInformation: true,
          requestProblemInformation: true,
          userProperties: { k: 'v' },
          authenticationMethod: 'm',
          authenticationData: Buffer.from('d'),
        },
        will: {
          topic: 'w',
          payload: Buffer.from('bye'),
          qos: 0,
          retain: false,
          properties: {
            willDelayInterval: 1,
            payloadFormatIndicator: true,
            messageExpiryInterval: 10,
            contentType: 't',
            responseTopic: 'r',
            correlationData: Buffer.from('c'),
            userProperties: { k: 'v' },
          },
        },
      } as Packet,
    ],
    [
      'PUBLISH',
      {
        cmd: 'publish',
        topic: 'a',
        payload: 'x',
        qos: 1,
        messageId: 3,
        dup: false,
        retain: false,
        properties: {
          payloadFormatIndicator: true,
          messageExpiryInterval: 10,
          topicAlias: 1,
          responseTopic: 'r',
          correlationData: Buffer.from('c'),
          userProperties: { k: 'v' },
          subscriptionIdentifier: 4,
          contentType: 't',
        },
      },
    ],
    ...(['puback', 'pubrec', 'pubrel', 'pubcomp'] as const).map((cmd): [string, Packet] => [
      cmd.toUpperCase(),
      {
        cmd,
        messageId: 3,
        // 0x10 No matching subscribers (PUBACK, PUBREC), 0x92 Packet Identifier not found (PUBREL, PUBCOMP).
        reasonCode: cmd === 'puback' || cmd === 'pubrec' ? 0x10 : 0x92,
        properties: { reasonString: 'r', userProperties: { k: 'v' } },
      } as Packet,
    ]),
    [
      'SUBSCRIBE',
      {
        cmd: 'subscribe',
        messageId: 3,
        subscriptions: [{ topic: 'a', qos: 1 }],
        properties: { subscriptionIdentifier: 7, userProperties: { k: 'v' } },
      } as Packet,
    ],
    [
      'UNSUBSCRIBE',
      { cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['a'], properties: { userProperties: { k: 'v' } } },
    ],
    [
      'DISCONNECT',
      {
        cmd: 'disconnect',
        reasonCode: 0x04,
        properties: { sessionExpiryInterval: 0, reasonString: 'r', serverReference: 's', userProperties: { k: 'v' } },
      },
    ],
    [
      'AUTH',
      {
        cmd: 'auth',
        reasonCode: 0x18,
        properties: {
          authenticationMethod: 'm',
          authenticationData: Buffer.from('d'),
          reasonString: 'r',
          userProperties: { k: 'v' },
        },
      },
    ],
  ];
  it.each(allowed)('%s with every property it may carry is decoded as mqtt-packet decodes it', (_name, packet) => {
    const bytes = mqtt.generate(packet, { protocolVersion: 5 });
    const outcome = decode(5, bytes);
    expect(outcome).toMatchObject({ malformed: [], protocolErrors: [] });
    const parser = mqtt.parser({ protocolVersion: 5 });
    const expected: Packet[] = [];
    parser.on('packet', (p: Packet) => expected.push(p));
    parser.parse(bytes);
    expect(outcome.decoded).toEqual(expected);
  });
});
