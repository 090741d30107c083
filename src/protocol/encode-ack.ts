import type { Packet } from 'mqtt-packet';

/** Fixed-header byte per acknowledgement type; PUBREL carries the reserved flags 0b0010 ([MQTT-3.6.1-1]). */
const FIRST_BYTE = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 } as const;

/**
 * The four-byte form of PUBACK, PUBREC, PUBREL and PUBCOMP: packet id only, which every protocol version reads
 * as success (MQTT 5 allows the reason code and properties to be left out when the code is 0x00 and there are
 * no properties, [MQTT-3.4.2.1]). Every QoS 1/2 message costs one or two of these; mqtt-packet's generic
 * encoder allocated about a quarter of all the bytes the latency benchmark's broker allocated. Returns undefined
 * for anything that needs the long form (a failure reason code, properties), which mqtt-packet still writes.
 */
export function encodeShortAck(packet: Packet): Buffer | undefined {
  const cmd = packet.cmd;
  if (cmd !== 'puback' && cmd !== 'pubrec' && cmd !== 'pubrel' && cmd !== 'pubcomp') return undefined;
  if ((packet.reasonCode !== undefined && packet.reasonCode !== 0) || packet.properties !== undefined) return undefined;
  const id = packet.messageId;
  if (id === undefined) return undefined;
  const out = Buffer.allocUnsafe(4);
  out[0] = FIRST_BYTE[cmd];
  out[1] = 2;
  out[2] = id >> 8;
  out[3] = id & 0xff;
  return out;
}
