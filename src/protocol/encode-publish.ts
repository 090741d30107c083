import { Buffer } from 'node:buffer';
/**
 * PUBLISH encoding for the delivery hot path: no properties (all 3.1/3.1.1 deliveries, and MQTT 5 deliveries
 * without forwarded properties). mqtt-packet's generic encoder cost about a fifth of the CPU of a fan-in
 * benchmark; this writes the packet with one allocation. Packets with MQTT 5 properties still go through
 * mqtt-packet. Byte-for-byte equality with mqtt-packet is checked by a unit test.
 */
export function encodePublishWithoutProperties(
  topic: string,
  payload: Buffer,
  qos: 0 | 1 | 2,
  retain: boolean,
  dup: boolean,
  packetId: number,
  protocolVersion: 3 | 4 | 5,
): Buffer {
  // Most topics are ASCII, one byte per character: copied by hand, without Buffer's UTF-8 length and write calls.
  const ascii = isAscii(topic);
  const topicLength = ascii ? topic.length : Buffer.byteLength(topic, 'utf8');
  const payloadLength = payload.length;
  const remaining = 2 + topicLength + (qos > 0 ? 2 : 0) + (protocolVersion === 5 ? 1 : 0) + payloadLength;
  const lengthBytes = remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4;
  const out = Buffer.allocUnsafe(1 + lengthBytes + remaining);
  out[0] = 0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 0x01 : 0);
  let offset = 1;
  let value = remaining;
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value > 0) byte |= 0x80;
    out[offset++] = byte;
  } while (value > 0);
  out[offset++] = topicLength >> 8;
  out[offset++] = topicLength & 0xff;
  if (ascii) for (let i = 0; i < topicLength; i++) out[offset + i] = topic.charCodeAt(i);
  else out.write(topic, offset, 'utf8');
  offset += topicLength;
  if (qos > 0) {
    out[offset++] = packetId >> 8;
    out[offset++] = packetId & 0xff;
  }
  if (protocolVersion === 5) out[offset++] = 0;
  // The whole payload is the source: `set` copies it without the view `Buffer#copy` makes for a range.
  out.set(payload, offset);
  return out;
}

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}
