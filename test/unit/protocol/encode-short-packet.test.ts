import mqtt, { type Packet } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { encodeShortPacket } from '../../../src/protocol/encode-short-packet.js';

describe('short packet encoder', () => {
  const cmds = ['puback', 'pubrec', 'pubrel', 'pubcomp'] as const;
  const ids = [1, 255, 256, 4242, 65535];
  const cases = cmds.flatMap((cmd) => ids.flatMap((id) => ([3, 4, 5] as const).map((v) => [cmd, id, v] as const)));

  it.each(cases)('encodes %s id %i (v%i) exactly as mqtt-packet encodes a success with no properties', (cmd, id, v) => {
    const packet = { cmd, messageId: id } as Packet;
    const ours = encodeShortPacket(packet, v);
    // MQTT 5: mqtt-packet omits the reason code only when it is given as 0; both forms mean success.
    const reference = mqtt.generate({ ...packet, ...(v === 5 ? { reasonCode: 0 } : {}) } as Packet, {
      protocolVersion: v,
    });
    expect(ours?.equals(reference)).toBe(true);
  });

  it('encodes every MQTT 3.1 / 3.1.1 CONNACK and PINGRESP exactly as mqtt-packet does', () => {
    for (const v of [3, 4] as const) {
      for (const returnCode of [0, 1, 2, 3, 4, 5])
        for (const sessionPresent of [false, true]) {
          const packet = { cmd: 'connack', returnCode, sessionPresent } as Packet;
          expect(encodeShortPacket(packet, v)?.equals(mqtt.generate(packet, { protocolVersion: v }))).toBe(true);
        }
      const ping = { cmd: 'pingresp' } as Packet;
      expect(encodeShortPacket(ping, v)?.equals(mqtt.generate(ping, { protocolVersion: v }))).toBe(true);
    }
  });

  it('decodes back to the same packets through mqtt-packet', () => {
    for (const v of [4, 5] as const) {
      const parser = mqtt.parser({ protocolVersion: v });
      const seen: Packet[] = [];
      parser.on('packet', (p: Packet) => seen.push(p));
      for (const cmd of cmds) parser.parse(encodeShortPacket({ cmd, messageId: 77 } as Packet, v)!);
      expect(seen.map((p) => [p.cmd, p.messageId])).toEqual(cmds.map((c) => [c, 77]));
      if (v === 5) for (const p of seen) expect([undefined, 0]).toContain((p as { reasonCode?: number }).reasonCode);
    }
  });

  it('leaves failures, properties, MQTT 5 CONNACK and other packet types to the generic encoder', () => {
    expect(encodeShortPacket({ cmd: 'puback', messageId: 1, reasonCode: 0x87 } as Packet, 5)).toBeUndefined();
    expect(
      encodeShortPacket({ cmd: 'pubrec', messageId: 1, properties: { reasonString: 'x' } } as Packet, 5),
    ).toBeUndefined();
    expect(encodeShortPacket({ cmd: 'connack', reasonCode: 0, sessionPresent: false } as Packet, 5)).toBeUndefined();
    expect(encodeShortPacket({ cmd: 'suback', messageId: 1, granted: [0] } as Packet, 4)).toBeUndefined();
  });
});
