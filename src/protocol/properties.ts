import { utf8Problem } from './utf8.js';

/**
 * MQTT 5 property rules that mqtt-packet's parser does not apply, checked on a packet's bytes before it decodes
 * them. It keeps every property it reads, whatever the packet: a SUBSCRIBE with a Topic Alias or a PUBLISH with a
 * Session Expiry Interval decodes without complaint, the property sitting unused in `packet.properties`. Section
 * 2.2.2.2: "A Control Packet which contains an Identifier which is not valid for its packet type ... is a Malformed
 * Packet" (Table 2-4 says which packets each property may appear in). A repeated one becomes an array when the first
 * value was truthy and silently replaces a falsy first value, so a duplicate cannot be told from its result. Section
 * 2.2.2.2: "It is a Protocol Error to include" any property "more than once", except User Property (in every packet)
 * and Subscription Identifier (only in a PUBLISH). String properties are UTF-8 Encoded Strings ([MQTT-1.5.4-1/2]).
 */
export type PropertyProblem = { reason: 'protocolError' | 'malformedPacket'; detail: string };

/**
 * The property section of one kind of packet a client sends, with the identifiers Table 2-4 allows in it as two bit
 * words (identifiers 0..31 and 32..63), so the check is one AND per property.
 */
export interface PropertySection {
  readonly name: string;
  readonly allowedLow: number;
  readonly allowedHigh: number;
  /** Subscription Identifier may repeat here (a PUBLISH; section 3.3.2.3.8). */
  readonly subscriptionIdentifierRepeats: boolean;
}

const BYTE = 1;
const TWO_BYTES = 2;
const FOUR_BYTES = 3;
const VARIABLE = 4;
const STRING = 5;
const BINARY = 6;
const STRING_PAIR = 7;

const USER_PROPERTY = 0x26;
const SUBSCRIPTION_IDENTIFIER = 0x0b;

/** Packets a property may appear in (Table 2-4), as bits by packet type; the will properties of a CONNECT are 16. */
const CONNECT = 1 << 1;
const CONNACK = 1 << 2;
const PUBLISH = 1 << 3;
const PUBACK = 1 << 4;
const PUBREC = 1 << 5;
const PUBREL = 1 << 6;
const PUBCOMP = 1 << 7;
const SUBSCRIBE = 1 << 8;
const SUBACK = 1 << 9;
const UNSUBSCRIBE = 1 << 10;
const UNSUBACK = 1 << 11;
const DISCONNECT = 1 << 14;
const AUTH = 1 << 15;
const WILL = 1 << 16;
const ACKS = PUBACK | PUBREC | PUBREL | PUBCOMP;

/**
 * Section 2.2.2.2, Table 2-4, by identifier: [name, value type, packets it may appear in]. An identifier not listed
 * makes the packet malformed.
 */
const DEFINITIONS: readonly (readonly [number, string, number, number])[] = [
  [0x01, 'Payload Format Indicator', BYTE, PUBLISH | WILL],
  [0x02, 'Message Expiry Interval', FOUR_BYTES, PUBLISH | WILL],
  [0x03, 'Content Type', STRING, PUBLISH | WILL],
  [0x08, 'Response Topic', STRING, PUBLISH | WILL],
  [0x09, 'Correlation Data', BINARY, PUBLISH | WILL],
  [0x0b, 'Subscription Identifier', VARIABLE, PUBLISH | SUBSCRIBE],
  [0x11, 'Session Expiry Interval', FOUR_BYTES, CONNECT | CONNACK | DISCONNECT],
  [0x12, 'Assigned Client Identifier', STRING, CONNACK],
  [0x13, 'Server Keep Alive', TWO_BYTES, CONNACK],
  [0x15, 'Authentication Method', STRING, CONNECT | CONNACK | AUTH],
  [0x16, 'Authentication Data', BINARY, CONNECT | CONNACK | AUTH],
  [0x17, 'Request Problem Information', BYTE, CONNECT],
  [0x18, 'Will Delay Interval', FOUR_BYTES, WILL],
  [0x19, 'Request Response Information', BYTE, CONNECT],
  [0x1a, 'Response Information', STRING, CONNACK],
  [0x1c, 'Server Reference', STRING, CONNACK | DISCONNECT],
  [0x1f, 'Reason String', STRING, CONNACK | ACKS | SUBACK | UNSUBACK | DISCONNECT | AUTH],
  [0x21, 'Receive Maximum', TWO_BYTES, CONNECT | CONNACK],
  [0x22, 'Topic Alias Maximum', TWO_BYTES, CONNECT | CONNACK],
  [0x23, 'Topic Alias', TWO_BYTES, PUBLISH],
  [0x24, 'Maximum QoS', BYTE, CONNACK],
  [0x25, 'Retain Available', BYTE, CONNACK],
  [
    0x26,
    'User Property',
    STRING_PAIR,
    CONNECT | CONNACK | PUBLISH | WILL | ACKS | SUBSCRIBE | SUBACK | UNSUBSCRIBE | UNSUBACK | DISCONNECT | AUTH,
  ],
  [0x27, 'Maximum Packet Size', FOUR_BYTES, CONNECT | CONNACK],
  [0x28, 'Wildcard Subscription Available', BYTE, CONNACK],
  [0x29, 'Subscription Identifier Available', BYTE, CONNACK],
  [0x2a, 'Shared Subscription Available', BYTE, CONNACK],
];

const TYPES = new Uint8Array(0x2b);
const NAMES: string[] = [];
for (const [id, name, type] of DEFINITIONS) {
  TYPES[id] = type;
  NAMES[id] = name;
}

function section(name: string, packet: number): PropertySection {
  let allowedLow = 0;
  let allowedHigh = 0;
  for (const [id, , , packets] of DEFINITIONS) {
    if ((packets & packet) === 0) continue;
    if (id < 32) allowedLow |= 1 << id;
    else allowedHigh |= 1 << (id & 31);
  }
  return { name, allowedLow, allowedHigh, subscriptionIdentifierRepeats: packet === PUBLISH };
}

/** The property section of each packet type a client sends, by type; undefined for the others. */
export const PACKET_PROPERTIES: readonly (PropertySection | undefined)[] = [
  undefined,
  section('CONNECT', CONNECT),
  undefined,
  section('PUBLISH', PUBLISH),
  section('PUBACK', PUBACK),
  section('PUBREC', PUBREC),
  section('PUBREL', PUBREL),
  section('PUBCOMP', PUBCOMP),
  section('SUBSCRIBE', SUBSCRIBE),
  undefined,
  section('UNSUBSCRIBE', UNSUBSCRIBE),
  undefined,
  undefined,
  undefined,
  section('DISCONNECT', DISCONNECT),
  section('AUTH', AUTH),
];

/** The will properties of a CONNECT. */
export const WILL_PROPERTIES: PropertySection = section('CONNECT will', WILL);

/**
 * Reads the property section whose length field starts at `pos`, no further than `end`. Returns where the section
 * ends, or the rule it breaks. A section that cannot be read (a length past the end of the packet, an unknown
 * identifier, a value running past the section) is malformed here: mqtt-packet does not refuse all of these, and
 * hands on a string that did not fit as `null` (a will's User Property so decoded crashed the encoder when the will
 * was published). Allocates nothing unless a rule is broken; an empty section is one byte read, and each property
 * costs one AND for where it may appear and one for whether it came before.
 */
export function checkProperties(
  frames: Buffer,
  pos: number,
  end: number,
  section: PropertySection,
): number | PropertyProblem {
  // Property Length is a Variable Byte Integer of at most four bytes.
  let length = 0;
  let multiplier = 1;
  for (let n = 0; ; n++) {
    if (pos >= end) return unreadable(section, 'the Property Length is missing');
    if (n === 4) return unreadable(section, 'the Property Length is longer than four bytes');
    const byte = frames[pos++]!;
    length += (byte & 0x7f) * multiplier;
    multiplier *= 128;
    if ((byte & 0x80) === 0) break;
  }
  const sectionEnd = pos + length;
  if (sectionEnd > end) return unreadable(section, `a Property Length of ${length} runs past the end of the packet`);
  // Identifiers seen so far, as bits: all of them are below 0x2b, so two 32-bit words hold them.
  let seenLow = 0;
  let seenHigh = 0;
  while (pos < sectionEnd) {
    const id = frames[pos++]!;
    const type = id < TYPES.length ? TYPES[id]! : 0;
    if (type === 0) return unreadable(section, `unknown property identifier 0x${id.toString(16).padStart(2, '0')}`);
    const bit = 1 << (id & 31);
    // Section 2.2.2.2: an identifier not valid for the packet type makes the packet malformed.
    if (((id < 32 ? section.allowedLow : section.allowedHigh) & bit) === 0)
      return { reason: 'malformedPacket', detail: `${section.name} cannot carry the ${NAMES[id]} property` };
    const repeatable =
      id === USER_PROPERTY || (id === SUBSCRIPTION_IDENTIFIER && section.subscriptionIdentifierRepeats);
    if (!repeatable) {
      const seen = id < 32 ? seenLow : seenHigh;
      if ((seen & bit) !== 0)
        return { reason: 'protocolError', detail: `${section.name} has the ${NAMES[id]} property more than once` };
      if (id < 32) seenLow |= bit;
      else seenHigh |= bit;
    }
    switch (type) {
      case BYTE:
        // Every byte property is 0 or 1: another value of Request Problem Information or Request Response
        // Information is a Protocol Error (3.1.2.11.6/7), and mqtt-packet would read any of them as `true`.
        // Mosquitto refuses it for all of them, Payload Format Indicator included.
        if (pos < sectionEnd && frames[pos]! > 1)
          return {
            reason: 'protocolError',
            detail: `${section.name} ${NAMES[id]} property is ${frames[pos]}, not 0 or 1`,
          };
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
        for (;;) {
          if (pos >= sectionEnd) return unreadable(section, `the ${NAMES[id]} property runs past its section`);
          if ((frames[pos++]! & 0x80) === 0) break;
          if (++n === 4) return unreadable(section, `the ${NAMES[id]} property is longer than four bytes`);
        }
        break;
      }
      case BINARY:
        pos = fieldEnd(frames, pos, sectionEnd);
        break;
      default: {
        // STRING, and STRING_PAIR: two strings.
        for (let strings = type === STRING_PAIR ? 2 : 1; strings > 0; strings--) {
          const stringEnd = fieldEnd(frames, pos, sectionEnd);
          if (stringEnd < 0) return unreadable(section, `the ${NAMES[id]} property runs past its section`);
          const problem = utf8Problem(frames, pos + 2, stringEnd);
          if (problem)
            return {
              reason: 'malformedPacket',
              detail: `${section.name} ${NAMES[id]} property is not a valid UTF-8 string (${problem})`,
            };
          pos = stringEnd;
        }
      }
    }
    if (pos < 0 || pos > sectionEnd) return unreadable(section, `the ${NAMES[id]} property runs past its section`);
  }
  return sectionEnd;
}

function unreadable(section: PropertySection, what: string): PropertyProblem {
  return { reason: 'malformedPacket', detail: `${section.name} properties: ${what}` };
}

/** End of the two-byte-length-prefixed field at `pos`, or -1 when it does not fit before `end`. */
function fieldEnd(frames: Buffer, pos: number, end: number): number {
  if (pos + 2 > end) return -1;
  const fieldEndAt = pos + 2 + ((frames[pos]! << 8) | frames[pos + 1]!);
  return fieldEndAt > end ? -1 : fieldEndAt;
}
