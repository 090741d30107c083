import mqtt, { type Packet } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { parseFrames, type PacketSink } from '../../../src/connection/codec.js';

function recorder(): PacketSink & { packets: Packet[]; errors: string[] } {
  const packets: Packet[] = [];
  const errors: string[] = [];
  return { packets, errors, onPacket: (p) => packets.push(p), onParseError: (e) => errors.push(e.message) };
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
