import { Buffer } from 'node:buffer';
import type { Packet } from 'mqtt-packet';

/** Fixed-header byte per acknowledgement type; PUBREL carries the reserved flags 0b0010 ([MQTT-3.6.1-1]). */
const FIRST_BYTE = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 } as const;
const PINGRESP = Buffer.from([0xd0, 0x00]);

/**
 * The fixed-size packets the broker sends most, written directly:
 * - PUBACK, PUBREC, PUBREL and PUBCOMP with the packet id only, which every protocol version reads as success
 *   (MQTT 5 allows the reason code and properties to be left out when the code is 0x00 and there are no
 *   properties, [MQTT-3.4.2.1]). Every QoS 1/2 message costs one or two of these.
 * - CONNACK for MQTT 3.1 and 3.1.1 (session present flag and return code: there is nothing else), once per
 *   connect.
 * - PINGRESP.
 * mqtt-packet's generic encoder (with its `debug` calls) allocated about a quarter of all the bytes the latency
 * benchmark's broker allocated. Returns undefined for anything else (a failure reason code, properties, an MQTT 5
 * CONNACK), which mqtt-packet still writes; byte-for-byte equality with mqtt-packet is checked by a test.
 */
export function encodeShortPacket(packet: Packet, protocolVersion: number): Buffer | undefined {
  switch (packet.cmd) {
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp': {
      if ((packet.reasonCode !== undefined && packet.reasonCode !== 0) || packet.properties !== undefined)
        return undefined;
      const id = packet.messageId;
      if (id === undefined) return undefined;
      return encodeAck(packet.cmd, id);
    }
    case 'connack': {
      if (protocolVersion === 5 || packet.returnCode === undefined) return undefined;
      const out = Buffer.allocUnsafe(4);
      out[0] = 0x20;
      out[1] = 2;
      out[2] = packet.sessionPresent ? 1 : 0;
      out[3] = packet.returnCode;
      return out;
    }
    case 'pingresp':
      return PINGRESP;
    default:
      return undefined;
  }
}

export type AckCommand = keyof typeof FIRST_BYTE;

/** An acknowledgement of success: the packet id alone, which every protocol version reads as reason code 0x00. */
export function encodeAck(cmd: AckCommand, packetId: number): Buffer {
  const out = Buffer.allocUnsafe(4);
  out[0] = FIRST_BYTE[cmd];
  out[1] = 2;
  out[2] = packetId >> 8;
  out[3] = packetId & 0xff;
  return out;
}
