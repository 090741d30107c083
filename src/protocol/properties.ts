import { utf8Problem } from './utf8.js';

/**
 * MQTT 5 property rules that mqtt-packet's parser does not apply, checked on a packet's bytes before it decodes
 * them. It keeps every property it reads: a repeated one becomes an array when the first value was truthy and
 * silently replaces a falsy first value, so a duplicate cannot be told from its result. Section 2.2.2.2: "It is a
 * Protocol Error to include" any property "more than once", except User Property (in every packet) and
 * Subscription Identifier (only in a PUBLISH). String properties are UTF-8 Encoded Strings ([MQTT-1.5.4-1/2]).
 */
export type PropertyProblem = { reason: 'protocolError' | 'malformedPacket'; detail: string };

const BYTE = 1;
const TWO_BYTES = 2;
const FOUR_BYTES = 3;
const VARIABLE = 4;
const STRING = 5;
const BINARY = 6;
const STRING_PAIR = 7;

const USER_PROPERTY = 0x26;
const SUBSCRIPTION_IDENTIFIER = 0x0b;

/** Section 2.2.2.2, by identifier: [name, value type]. Identifiers not listed are left to mqtt-packet's error. */
const DEFINITIONS: readonly (readonly [number, string, number])[] = [
  [0x01, 'Payload Format Indicator', BYTE],
  [0x02, 'Message Expiry Interval', FOUR_BYTES],
  [0x03, 'Content Type', STRING],
  [0x08, 'Response Topic', STRING],
  [0x09, 'Correlation Data', BINARY],
  [0x0b, 'Subscription Identifier', VARIABLE],
  [0x11, 'Session Expiry Interval', FOUR_BYTES],
  [0x12, 'Assigned Client Identifier', STRING],
  [0x13, 'Server Keep Alive', TWO_BYTES],
  [0x15, 'Authentication Method', STRING],
  [0x16, 'Authentication Data', BINARY],
  [0x17, 'Request Problem Information', BYTE],
  [0x18, 'Will Delay Interval', FOUR_BYTES],
  [0x19, 'Request Response Information', BYTE],
  [0x1a, 'Response Information', STRING],
  [0x1c, 'Server Reference', STRING],
  [0x1f, 'Reason String', STRING],
  [0x21, 'Receive Maximum', TWO_BYTES],
  [0x22, 'Topic Alias Maximum', TWO_BYTES],
  [0x23, 'Topic Alias', TWO_BYTES],
  [0x24, 'Maximum QoS', BYTE],
  [0x25, 'Retain Available', BYTE],
  [0x26, 'User Property', STRING_PAIR],
  [0x27, 'Maximum Packet Size', FOUR_BYTES],
  [0x28, 'Wildcard Subscription Available', BYTE],
  [0x29, 'Subscription Identifier Available', BYTE],
  [0x2a, 'Shared Subscription Available', BYTE],
];

const TYPES = new Uint8Array(0x2b);
const NAMES: string[] = [];
for (const [id, name, type] of DEFINITIONS) {
  TYPES[id] = type;
  NAMES[id] = name;
}

/**
 * Reads the property section whose length field starts at `pos`, no further than `end`. Returns where the section
 * ends, the rule it breaks, or -1 when it cannot be read (a length past the end, an unknown identifier): mqtt-packet
 * then refuses the packet with its own error. Allocates nothing unless a rule is broken; an empty section is one
 * byte read.
 */
export function checkProperties(
  frames: Buffer,
  pos: number,
  end: number,
  packetName: string,
): number | PropertyProblem {
  // Property Length is a Variable Byte Integer of at most four bytes.
  let length = 0;
  let multiplier = 1;
  for (let n = 0; ; n++) {
    if (pos >= end || n === 4) return -1;
    const byte = frames[pos++]!;
    length += (byte & 0x7f) * multiplier;
    multiplier *= 128;
    if ((byte & 0x80) === 0) break;
  }
  const sectionEnd = pos + length;
  if (sectionEnd > end) return -1;
  // Identifiers seen so far, as bits: all of them are below 0x2b, so two 32-bit words hold them.
  let seenLow = 0;
  let seenHigh = 0;
  while (pos < sectionEnd) {
    const id = frames[pos++]!;
    const type = id < TYPES.length ? TYPES[id]! : 0;
    if (type === 0) return -1;
    const repeatable = id === USER_PROPERTY || (id === SUBSCRIPTION_IDENTIFIER && packetName === 'PUBLISH');
    if (!repeatable) {
      const bit = 1 << (id & 31);
      const seen = id < 32 ? seenLow : seenHigh;
      if ((seen & bit) !== 0)
        return { reason: 'protocolError', detail: `${packetName} has the ${NAMES[id]} property more than once` };
      if (id < 32) seenLow |= bit;
      else seenHigh |= bit;
    }
    switch (type) {
      case BYTE:
        pos += 1;
        break;
      case TWO_BYTES:
        pos += 2;
        break;
      case FOUR_BYTES:
        pos += 4;
        break;
      case VARIABLE: {
        let n = 0;
        while (pos < sectionEnd && (frames[pos++]! & 0x80) !== 0) if (++n === 4) return -1;
        break;
      }
      case BINARY:
        pos = fieldEnd(frames, pos, sectionEnd);
        break;
      default: {
        // STRING, and STRING_PAIR: two strings.
        for (let strings = type === STRING_PAIR ? 2 : 1; strings > 0 && pos >= 0; strings--) {
          const stringEnd = fieldEnd(frames, pos, sectionEnd);
          if (stringEnd < 0) return -1;
          const problem = utf8Problem(frames, pos + 2, stringEnd);
          if (problem)
            return {
              reason: 'malformedPacket',
              detail: `${packetName} ${NAMES[id]} property is not a valid UTF-8 string (${problem})`,
            };
          pos = stringEnd;
        }
      }
    }
    if (pos < 0 || pos > sectionEnd) return -1;
  }
  return sectionEnd;
}

/** End of the two-byte-length-prefixed field at `pos`, or -1 when it does not fit before `end`. */
function fieldEnd(frames: Buffer, pos: number, end: number): number {
  if (pos + 2 > end) return -1;
  const fieldEndAt = pos + 2 + ((frames[pos]! << 8) | frames[pos + 1]!);
  return fieldEndAt > end ? -1 : fieldEndAt;
}
