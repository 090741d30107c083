import mqtt, { type Packet } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { parseFrames, type PacketSink } from '../../../src/connection/codec.js';

function recorder(): PacketSink & { packets: Packet[]; errors: string[]; protocolErrors: string[] } {
  const packets: Packet[] = [];
  const errors: string[] = [];
  const protocolErrors: string[] = [];
  return {
    packets,
    errors,
    protocolErrors,
    onPacket: (p) => packets.push(p),
    onParseError: (e) => errors.push(e.message),
    onProtocolError: (detail) => protocolErrors.push(detail),
  };
}

describe('shared codec', () => {
  it('a malformed packet from one connection leaves the shared parser clean for the next', () => {
    const bad = recorder();
    parseFrames(4, Buffer.from([0x30, 3, 0, 50, 0x61]), bad);
    expect(bad.errors).toHaveLength(1);
    const good = recorder();
    parseFrames(4, mqtt.generate({ cmd: 'pingreq' }), good);
    parseFrames(
      4,
      mqtt.generate({ cmd: 'publish', topic: 'a/b', payload: 'x', qos: 1, messageId: 7, dup: false, retain: false }),
      good,
    );
    expect(good.errors).toEqual([]);
    expect(good.packets.map((p) => p.cmd)).toEqual(['pingreq', 'publish']);
  });

  it('parsing an MQTT 5 CONNECT does not turn the shared 3.1.1 parser into a v5 parser', () => {
    const sink = recorder();
    parseFrames(
      4,
      mqtt.generate(
        { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'v5', keepalive: 10 },
        { protocolVersion: 5 },
      ),
      sink,
    );
    parseFrames(4, mqtt.generate({ cmd: 'puback', messageId: 9 }, { protocolVersion: 4 }), sink);
    expect(sink.errors).toEqual([]);
    expect(sink.packets.map((p) => p.cmd)).toEqual(['connect', 'puback']);
  });

  it("a stray byte inside one connection's frame is never carried into the next parse", () => {
    // PINGREQ should have a remaining length of 0; this one carries a stray byte.
    parseFrames(4, Buffer.from([0xc0, 1, 0x30]), recorder());
    const next = recorder();
    parseFrames(4, mqtt.generate({ cmd: 'pingreq' }), next);
    expect(next.packets.map((p) => p.cmd)).toEqual(['pingreq']);
  });
});

/** mqtt-packet's own decoding of one stream, as the reference the fast paths must match field for field. */
function reference(version: 4 | 5, bytes: Buffer): { packets: Packet[]; errors: string[] } {
  const parser = mqtt.parser({ protocolVersion: version });
  const packets: Packet[] = [];
  const errors: string[] = [];
  parser.on('packet', (p: Packet) => packets.push(p));
  parser.on('error', (e: Error) => errors.push(e.message));
  parser.parse(bytes);
  return { packets, errors };
}

function comparable(p: Packet): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(p)) {
    if (value === null || value === undefined) continue;
    out[key] = Buffer.isBuffer(value) ? `hex:${value.toString('hex')}` : value;
  }
  return out;
}

describe('fast decoding of PUBLISH and acknowledgements', () => {
  const publishes = (version: 4 | 5): Buffer[] => {
    const out: Buffer[] = [];
    for (const qos of [0, 1, 2] as const)
      for (const retain of [false, true])
        for (const payload of ['', 'x', 'payload with ünïcode', 'y'.repeat(300)])
          for (const topic of ['a', 'sensors/ünï/temp', 't/'.repeat(40) + 'end'])
            out.push(
              mqtt.generate(
                {
                  cmd: 'publish',
                  topic,
                  payload,
                  qos,
                  retain,
                  dup: qos > 0 && retain,
                  messageId: qos ? 513 : undefined,
                },
                { protocolVersion: version },
              ),
            );
    return out;
  };

  for (const version of [4, 5] as const) {
    it(`decodes every MQTT ${version === 5 ? '5' : '3.1.1'} PUBLISH and acknowledgement exactly as mqtt-packet does`, () => {
      const packets = [
        ...publishes(version),
        ...(['puback', 'pubrec', 'pubcomp', 'pubrel'] as const).map((cmd) =>
          mqtt.generate({ cmd, messageId: 65535 }, { protocolVersion: version }),
        ),
      ];
      if (version === 5) {
        packets.push(
          mqtt.generate(
            {
              cmd: 'publish',
              topic: 'p',
              payload: 'z',
              qos: 1,
              dup: false,
              retain: false,
              messageId: 3,
              properties: { contentType: 'text/plain' },
            },
            { protocolVersion: 5 },
          ),
          mqtt.generate({ cmd: 'puback', messageId: 4, reasonCode: 0x87 }, { protocolVersion: 5 }),
          mqtt.generate(
            { cmd: 'pubrec', messageId: 5, reasonCode: 0x10, properties: { reasonString: 'why' } },
            { protocolVersion: 5 },
          ),
        );
      }
      // Interleaved with packets the fast paths leave to mqtt-packet, to prove the order is kept.
      const stream = Buffer.concat(
        packets.flatMap((p, i) => (i % 7 === 0 ? [p, mqtt.generate({ cmd: 'pingreq' })] : [p])),
      );
      const expected = reference(version, stream);
      const sink = recorder();
      parseFrames(version, stream, sink);
      expect(expected.errors).toEqual([]);
      expect(sink.errors).toEqual([]);
      expect(sink.packets.map(comparable)).toEqual(expected.packets.map(comparable));
    });
  }

  it('hands a success PUBACK to a sink that takes it by packet id, in order with what mqtt-packet decodes', () => {
    const order: string[] = [];
    const sink: PacketSink = {
      onPacket: (p) => order.push(p.cmd === 'puback' ? `packet puback ${p.messageId} ${p.reasonCode}` : p.cmd),
      onPuback: (id) => order.push(`id ${id}`),
      onParseError: (e) => order.push(`error ${e.message}`),
      onProtocolError: (detail) => order.push(`protocol error ${detail}`),
    };
    // Two bytes, the packet id alone (mqtt-packet writes MQTT 5 ones with the reason byte: those go to onPacket).
    const stream = Buffer.concat([
      Buffer.from([0x40, 2, 0xff, 0xff]),
      // A PUBLISH with properties and a PUBACK with a reason code are mqtt-packet's, in between.
      mqtt.generate(
        {
          cmd: 'publish',
          topic: 'p',
          payload: 'z',
          qos: 0,
          dup: false,
          retain: false,
          properties: { contentType: 't' },
        },
        { protocolVersion: 5 },
      ),
      mqtt.generate({ cmd: 'puback', messageId: 7, reasonCode: 0x10 }, { protocolVersion: 5 }),
      Buffer.from([0x40, 2, 0, 2]),
      mqtt.generate({ cmd: 'puback', messageId: 8 }, { protocolVersion: 5 }),
      mqtt.generate({ cmd: 'pubrec', messageId: 3 }, { protocolVersion: 5 }),
      Buffer.from([0x40, 2, 0, 0]), // packet id 0: refused, and nothing after it decoded
      Buffer.from([0x40, 2, 0, 9]),
    ]);
    parseFrames(5, stream, sink);
    expect(order).toEqual([
      'id 65535',
      'publish',
      'packet puback 7 16',
      'id 2',
      'packet puback 8 0',
      'pubrec',
      'protocol error PUBACK has Packet Identifier 0 [MQTT-2.2.1-3]',
    ]);
  });

  it("decodes each topic as sent when it repeats, changes by one byte, or has the recent topic's length in bytes", () => {
    const sink = recorder();
    // Repeats, a same-length change in the middle and at the end, a UTF-8 topic of the same byte length as an
    // ASCII one (`é` is two bytes), a topic that is a prefix of the recent one, and back.
    // 'Ã©' then 'é': the first one's characters are the second one's UTF-8 bytes (C3 A9).
    const topics = ['a/b/c', 'a/b/c', 'a/x/c', 'a/x/d', 'a/é/', 'a/é/', 'a/xé', 'a/x', 'a/x/d', 'Ã©', 'é', 'a/x/d'];
    for (const topic of topics) {
      const bytes = mqtt.generate({ cmd: 'publish', topic, payload: 'p', qos: 0, dup: false, retain: false });
      // Each PUBLISH in a read of its own, as the topic is remembered across reads.
      parseFrames(4, bytes, sink);
    }
    expect(sink.errors).toEqual([]);
    expect(sink.packets.map((p) => (p.cmd === 'publish' ? p.topic : p.cmd))).toEqual(topics);
    // Only an ASCII topic is remembered: a UTF-8 one could not be compared byte for character.
    expect(sink.recentTopic).toBe('a/x/d');
    const utf8Only = recorder();
    parseFrames(
      4,
      mqtt.generate({ cmd: 'publish', topic: 'ü/1', payload: 'p', qos: 0, dup: false, retain: false }),
      utf8Only,
    );
    expect(utf8Only.recentTopic).toBeUndefined();
  });

  it('refuses QoS 3, a topic longer than the packet, a missing packet id, bad ack flags and a PINGREQ with a body', () => {
    const cases = [
      Buffer.from([0x36, 5, 0, 1, 0x61, 0, 1]), // QoS 3
      Buffer.from([0x30, 3, 0, 9, 0x61]), // topic length past the end
      Buffer.from([0x32, 3, 0, 1, 0x61]), // QoS 1 without a packet id
      Buffer.from([0x60, 2, 0, 1]), // PUBREL with flags 0
      Buffer.from([0xc0, 1, 0x30]), // PINGREQ with a body
      Buffer.concat([mqtt.generate({ cmd: 'pingreq' }), Buffer.from([0x30, 3, 0, 9, 0x61])]), // good, then bad
    ];
    for (const bytes of cases) {
      const sink = recorder();
      parseFrames(4, bytes, sink);
      expect({ bytes: bytes.toString('hex'), refused: sink.errors.length > 0 }).toEqual({
        bytes: bytes.toString('hex'),
        refused: true,
      });
      expect(sink.packets.filter((p) => p.cmd !== 'pingreq')).toEqual([]);
    }
  });
});

describe('fields mqtt-packet decodes without an error although they do not fit', () => {
  function refusal(version: 4 | 5, bytes: Buffer): { errors: string[]; packets: string[] } {
    const sink = recorder();
    parseFrames(version, bytes, sink);
    return { errors: sink.errors, packets: sink.packets.map((p) => p.cmd) };
  }

  it.each([4, 5] as const)(
    'v%i: an acknowledgement, SUBSCRIBE or UNSUBSCRIBE too short for its Packet Identifier is malformed',
    (version) => {
      // mqtt-packet read the missing identifier as -1: a PUBREL was answered with PUBCOMP 65535 (3.1.1), or its
      // PUBCOMP 0x92 for id -1 threw in the encoder (MQTT 5), once after the client had gone: the process died.
      const cases: [string, number[]][] = [
        ['PUBACK', [0x40, 0]],
        ['PUBREC', [0x50, 1, 0]],
        ['PUBREL', [0x62, 1, 0]],
        ['PUBCOMP', [0x70, 0]],
        ['SUBSCRIBE', [0x82, 1, 0]],
        ['UNSUBSCRIBE', [0xa2, 0]],
      ];
      for (const [name, bytes] of cases) {
        const remaining = bytes[1]!;
        // Followed by a PINGREQ: nothing after a malformed packet is decoded, nor read as its missing bytes.
        expect(refusal(version, Buffer.from([...bytes, 0xc0, 0])), name).toEqual({
          errors: [`${name} of ${remaining} byte(s) is too short for its Packet Identifier`],
          packets: [],
        });
      }
    },
  );

  it('3.1.1: an acknowledgement longer than its Packet Identifier is malformed; MQTT 5 reads a reason code there', () => {
    const pubrel = Buffer.from([0x62, 3, 0, 7, 0x92]);
    expect(refusal(4, pubrel)).toEqual({ errors: ['PUBREL of 3 bytes in MQTT 3.1.1 (2 expected)'], packets: [] });
    expect(refusal(5, pubrel)).toEqual({ errors: [], packets: ['pubrel'] });
  });

  it('v5: a property that runs past its section, or an unknown identifier, makes the packet malformed', () => {
    // A will User Property whose value claims 255 bytes where there are none: mqtt-packet decoded it as null, the
    // will was kept, and publishing it crashed the broker.
    const willProperties = [6, 0x26, 0, 1, 0x6b, 0, 0xff];
    const connect = Buffer.from([
      0x10,
      0,
      ...[0, 4, 0x4d, 0x51, 0x54, 0x54, 5, 0x04, 0, 0], // MQTT, level 5, will flag, keep alive 0
      0, // no CONNECT properties
      ...[0, 1, 0x63], // client id "c"
      ...willProperties,
      ...[0, 1, 0x74], // will topic "t"
      ...[0, 0], // empty will payload
    ]);
    connect[1] = connect.length - 2;
    expect(refusal(5, connect)).toEqual({
      errors: ['CONNECT will properties: the User Property property runs past its section'],
      packets: [],
    });
    // A PUBLISH whose Property Length runs past the packet, and one with identifier 0x7f.
    expect(refusal(5, Buffer.from([0x30, 6, 0, 1, 0x74, 9, 0x01, 1]))).toEqual({
      errors: ['PUBLISH properties: a Property Length of 9 runs past the end of the packet'],
      packets: [],
    });
    expect(refusal(5, Buffer.from([0x30, 6, 0, 1, 0x74, 2, 0x7f, 1]))).toEqual({
      errors: ['PUBLISH properties: unknown property identifier 0x7f'],
      packets: [],
    });
    // A Subscription Identifier whose Variable Byte Integer never ends.
    expect(refusal(5, Buffer.from([0x82, 10, 0, 1, 7, 0x0b, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0]))).toEqual({
      errors: ['SUBSCRIBE properties: the Subscription Identifier property is longer than four bytes'],
      packets: [],
    });
  });
});

describe('fast decoding of DISCONNECT', () => {
  for (const version of [4, 5] as const) {
    it(`decodes every MQTT ${version === 5 ? '5' : '3.1.1'} DISCONNECT, with a body or without, exactly as mqtt-packet does`, () => {
      const disconnects = [
        mqtt.generate({ cmd: 'disconnect' }, { protocolVersion: version }),
        // No body: reason code 0 and no properties may be left out [MQTT-3.14.2.1].
        Buffer.from([0xe0, 0]),
        ...(version === 5
          ? [
              Buffer.from([0xe0, 1, 0]),
              Buffer.from([0xe0, 2, 0, 0]),
              mqtt.generate({ cmd: 'disconnect', reasonCode: 0x04 }, { protocolVersion: 5 }),
              mqtt.generate(
                { cmd: 'disconnect', reasonCode: 0x8e, properties: { reasonString: 'taken over' } },
                { protocolVersion: 5 },
              ),
            ]
          : []),
      ];
      // Every member, null ones included (mqtt-packet's are instances of its Packet class, ours plain objects).
      const members = (packets: Packet[]) => packets.map((p) => ({ ...p }));
      // One at a time: mqtt-packet reads an MQTT 5 DISCONNECT's missing reason code from the next packet's bytes.
      for (const bytes of disconnects) {
        const expected = reference(version, bytes);
        const sink = recorder();
        parseFrames(version, bytes, sink);
        expect(sink.errors).toEqual([]);
        expect(sink.packets).toHaveLength(1);
        expect(members(sink.packets)).toStrictEqual(members(expected.packets));
      }
    });
  }

  it('leaves a DISCONNECT with header flags set to mqtt-packet, which refuses it', () => {
    const bytes = Buffer.from([0xe1, 0]);
    const sink = recorder();
    parseFrames(4, bytes, sink);
    expect(sink.packets).toEqual([]);
    expect(sink.errors).toEqual(reference(4, bytes).errors);
    expect(sink.errors).toHaveLength(1);
  });
});

describe('fast decoding of CONNECT', () => {
  const decodeOne = (bytes: Buffer): { packets: Packet[]; errors: string[] } => {
    const sink = recorder();
    parseFrames(4, bytes, sink);
    return { packets: sink.packets, errors: sink.errors };
  };

  /** A CONNECT written byte by byte, for shapes mqtt-packet's encoder will not produce. */
  function rawConnect(name: string, level: number, flags: number, fields: Buffer[], extra = Buffer.alloc(0)): Buffer {
    const field = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
    const body = Buffer.concat([
      field(Buffer.from(name)),
      Buffer.from([level, flags, 0, 30]),
      ...fields.map(field),
      extra,
    ]);
    return Buffer.concat([Buffer.from([0x10, body.length]), body]);
  }

  it('decodes every plain MQTT 3.1 and 3.1.1 CONNECT exactly as mqtt-packet does', () => {
    let count = 0;
    for (const [protocolId, protocolVersion] of [
      ['MQIsdp', 3],
      ['MQTT', 4],
    ] as const)
      for (const clean of [true, false])
        for (const keepalive of [0, 60, 65535])
          for (const clientId of ['', 'c', 'client-ünï-トピック', 'x'.repeat(300)])
            for (const username of [undefined, '', 'user', 'ünï'])
              for (const password of username === undefined
                ? [undefined]
                : [undefined, Buffer.alloc(0), Buffer.from([0, 0xff, 0x61, 0x80])]) {
                if (clientId === '' && (!clean || protocolVersion === 3)) continue; // mqtt-packet will not encode it
                const bytes = mqtt.generate({
                  cmd: 'connect',
                  protocolId,
                  protocolVersion,
                  clean,
                  keepalive,
                  clientId,
                  ...(username !== undefined ? { username } : {}),
                  ...(password !== undefined ? { password } : {}),
                });
                const ours = decodeOne(bytes);
                const expected = reference(4, bytes);
                expect(ours.errors).toEqual([]);
                expect(ours.packets.map(comparable)).toEqual(expected.packets.map(comparable));
                count++;
              }
    expect(count).toBeGreaterThan(300);
  });

  it('a password without a user name is decoded as mqtt-packet decodes it (the broker refuses it later)', () => {
    const bytes = rawConnect('MQTT', 4, 0x42, [Buffer.from('c'), Buffer.from('secret')]);
    expect(decodeOne(bytes).packets.map(comparable)).toEqual(reference(4, bytes).packets.map(comparable));
  });

  it('copies the password out of the read buffer', () => {
    const bytes = rawConnect('MQTT', 4, 0xc2, [Buffer.from('c'), Buffer.from('u'), Buffer.from('pw')]);
    const [packet] = decodeOne(bytes).packets;
    bytes.fill(0);
    expect((packet as { password?: Buffer }).password?.toString()).toBe('pw');
  });

  it('leaves every other CONNECT to mqtt-packet, with its own result or error', () => {
    const cases = [
      mqtt.generate({ cmd: 'connect', protocolVersion: 5, clientId: 'v5', properties: { sessionExpiryInterval: 9 } }),
      mqtt.generate({ cmd: 'connect', protocolVersion: 5, clientId: 'v5-plain' }),
      mqtt.generate({
        cmd: 'connect',
        clientId: 'w',
        will: { topic: 'will/t', payload: Buffer.from('bye'), qos: 1, retain: true },
      }),
      rawConnect('MQTT', 0x84, 0x02, [Buffer.from('bridge')]), // bridge mode
      rawConnect('MQTT', 4, 0x03, [Buffer.from('reserved')]), // reserved flag bit set
      rawConnect('MQTT', 4, 0x12, [Buffer.from('willqos-without-will')]),
      rawConnect('MQTX', 4, 0x02, [Buffer.from('name')]),
      rawConnect('MQTT', 6, 0x02, [Buffer.from('level')]),
      rawConnect('MQTT', 4, 0x82, []), // user name flag, no client id or user name
    ];
    for (const bytes of cases) {
      const ours = decodeOne(bytes);
      const expected = reference(4, bytes);
      expect({ hex: bytes.toString('hex'), ...ours, packets: ours.packets.map(comparable) }).toEqual({
        hex: bytes.toString('hex'),
        ...expected,
        packets: expected.packets.map(comparable),
      });
    }
  });

  it('refuses a CONNECT with bytes after its last field (mqtt-packet drops them), and decodes nothing after it', () => {
    const trailing = Buffer.from([1, 2]);
    const withSurplus = (packet: Buffer): Buffer => {
      // Two more bytes in the body: the remaining length (one byte here) grows by two.
      const out = Buffer.concat([packet, trailing]);
      out[1] = (out[1] as number) + trailing.length;
      return out;
    };
    const cases: [3 | 4 | 5, Buffer][] = [
      [4, rawConnect('MQTT', 4, 0x02, [Buffer.from('c')], trailing)],
      [4, rawConnect('MQIsdp', 3, 0xc2, [Buffer.from('c'), Buffer.from('u'), Buffer.from('pw')], trailing)],
      [
        4,
        withSurplus(
          mqtt.generate({
            cmd: 'connect',
            clientId: 'w',
            will: { topic: 'w/t', payload: Buffer.from('x'), qos: 0, retain: false },
          }),
        ),
      ],
      [
        5,
        withSurplus(
          mqtt.generate({
            cmd: 'connect',
            protocolVersion: 5,
            clientId: 'v5',
            properties: { sessionExpiryInterval: 9 },
          }),
        ),
      ],
    ];
    for (const [version, bytes] of cases) {
      // mqtt-packet itself accepts them: the check is ours.
      expect(reference(version === 5 ? 5 : 4, bytes).packets.map((p) => p.cmd)).toEqual(['connect']);
      const sink = recorder();
      parseFrames(version, Buffer.concat([bytes, mqtt.generate({ cmd: 'pingreq' })]), sink);
      expect(sink.errors).toEqual(['CONNECT has 2 bytes after its last field']);
      expect(sink.packets).toEqual([]);
    }
    // The shared parser is clean for the next connection.
    const next = recorder();
    parseFrames(4, rawConnect('MQTT', 4, 0x02, [Buffer.from('ok')]), next);
    expect(next.errors).toEqual([]);
    expect(next.packets.map((p) => p.cmd)).toEqual(['connect']);
  });
});
