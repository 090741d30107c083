import mqtt, { type Packet } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { encodeShortAck } from '../../../src/protocol/encode-ack.js';

describe('short acknowledgement encoder', () => {
  const cmds = ['puback', 'pubrec', 'pubrel', 'pubcomp'] as const;
  const ids = [1, 255, 256, 4242, 65535];
  const cases = cmds.flatMap((cmd) => ids.flatMap((id) => ([3, 4, 5] as const).map((v) => [cmd, id, v] as const)));

  it.each(cases)('encodes %s id %i (v%i) exactly as mqtt-packet encodes a success with no properties', (cmd, id, v) => {
    const packet = { cmd, messageId: id } as Packet;
    const ours = encodeShortAck(packet);
    // MQTT 5: mqtt-packet omits the reason code only when it is given as 0; both forms mean success.
    const reference = mqtt.generate({ ...packet, ...(v === 5 ? { reasonCode: 0 } : {}) } as Packet, {
      protocolVersion: v,
    });
    expect(ours?.equals(reference)).toBe(true);
  });

  it('decodes back to the same packet through mqtt-packet, for every version', () => {
    for (const v of [4, 5] as const) {
      const parser = mqtt.parser({ protocolVersion: v });
      const seen: Packet[] = [];
      parser.on('packet', (p: Packet) => seen.push(p));
      for (const cmd of cmds) parser.parse(encodeShortAck({ cmd, messageId: 77 } as Packet)!);
      expect(seen.map((p) => [p.cmd, p.messageId])).toEqual(cmds.map((c) => [c, 77]));
      if (v === 5) for (const p of seen) expect([undefined, 0]).toContain(p.reasonCode);
    }
  });

  it('leaves failures, properties and other packet types to the generic encoder', () => {
    expect(encodeShortAck({ cmd: 'puback', messageId: 1, reasonCode: 0x87 } as Packet)).toBeUndefined();
    expect(
      encodeShortAck({ cmd: 'pubrec', messageId: 1, properties: { reasonString: 'x' } } as Packet),
    ).toBeUndefined();
    expect(encodeShortAck({ cmd: 'pingresp' } as Packet)).toBeUndefined();
    expect(encodeShortAck({ cmd: 'suback', messageId: 1, granted: [0] } as Packet)).toBeUndefined();
  });
});
