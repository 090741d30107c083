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
