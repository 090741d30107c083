import { Buffer } from 'node:buffer';
import mqtt, { type IConnectPacket, type IPublishPacket, type Packet } from 'mqtt-packet';
import { checkProperties, PACKET_PROPERTIES, WILL_PROPERTIES, type PropertyProblem } from '../protocol/properties.js';
import { utf8Problem } from '../protocol/utf8.js';
import { frameEnd } from './framer.js';

export interface PacketSink {
  onPacket(packet: Packet): void;
  /**
   * A PUBACK of success (the packet id alone), when the sink takes it so: one arrives for every QoS 1 delivery, and
   * its packet object was ~70 bytes of garbage. Without it, such a PUBACK comes to `onPacket` like any other.
   */
  onPuback?(messageId: number): void;
  /** A malformed packet (MQTT 5: 0x81); nothing after it is decoded. */
  onParseError(error: Error): void;
  /** A packet that parses but breaks a rule of the protocol (MQTT 5: 0x82); nothing after it is decoded. */
  onProtocolError(detail: string): void;
  /**
   * The topic of the last PUBLISH decoded for this sink, when it was ASCII. A publisher that repeats its topic, as
   * most do, gets the same string back for a comparison of its bytes instead of a UTF-8 decode, and the maps keyed
   * by topic (authorization decisions, routes) find its hash already computed.
   */
  recentTopic?: string;
}

/** Section 4.13.1: a Protocol Error is found after the packet has been parsed, unlike a Malformed Packet. */
class ProtocolError extends Error {}

/**
 * One mqtt-packet parser per protocol version, shared by every connection. The framer hands over only whole
 * packets and parsing is synchronous, so a parser never holds a connection's partial state between calls; sharing
 * it saves the ~3 KiB a parser costs per idle connection. `current` routes its events to the caller.
 */
class SharedParser {
  private readonly parser: ReturnType<typeof mqtt.parser>;
  private current: PacketSink | undefined;
  private stopped = false;
  /** mqtt-packet replaces its settings with every CONNECT it parses; a shared parser must keep its version. */
  private readonly settings: { protocolVersion: number };

  constructor(protocolVersion: 3 | 4 | 5) {
    this.parser = mqtt.parser({ protocolVersion });
    this.parser.on('packet', (packet: Packet) => {
      if (this.stopped) return;
      // mqtt-packet stops reading a CONNECT after its last field and drops what follows; Mosquitto refuses such a
      // packet (surplus data), and so do we: a CONNECT is exactly its fields. `_pos` is how far it read.
      if (packet.cmd === 'connect') {
        const read = (this.parser as unknown as { _pos: number })._pos;
        const length = packet.length ?? read;
        if (read !== length) {
          this.stopped = true;
          this.current?.onParseError(new Error(`CONNECT has ${length - read} bytes after its last field`));
          return;
        }
      }
      this.current?.onPacket(packet);
    });
    this.parser.on('error', (error: Error) => this.current?.onParseError(error));
    this.settings = { protocolVersion };
  }

  /** False when the frames held a malformed packet (reported to the sink): nothing after it may be decoded. */
  parse(frames: Buffer, sink: PacketSink): boolean {
    const previous = this.current;
    this.current = sink;
    // As after mqtt-packet's own errors, nothing after a malformed packet reaches the sink: it is closing.
    this.stopped = false;
    try {
      this.parser.parse(frames);
      const state = this.parser as unknown as {
        error: Error | null;
        _list: { length: number };
        _pos: number;
        _resetState(): void;
      };
      if (state.error) {
        // mqtt-packet's own reset keeps the read offset; the next connection must start from a clean parser.
        state._resetState();
        state._pos = 0;
        return false;
      }
      if (state._list.length > 0) {
        // Whole frames must leave nothing behind; anything left means a packet shorter than its own length field.
        state._resetState();
        state._pos = 0;
        sink.onParseError(new Error('packet content does not match its length'));
        return false;
      }
      return !this.stopped;
    } finally {
      this.current = previous;
      (this.parser as unknown as { settings: unknown }).settings = this.settings;
    }
  }
}

/** Indexed by protocol version. */
const parsers: (SharedParser | undefined)[] = [];

export function parseFrames(protocolVersion: 3 | 4 | 5, frames: Buffer, sink: PacketSink): void {
  const parser = (parsers[protocolVersion] ??= new SharedParser(protocolVersion));
  // The common packets (PUBLISH without properties, short acknowledgements, a plain 3.1.1 CONNECT, a normal
  // DISCONNECT) are decoded here; runs of anything else go to mqtt-packet in order. Its generic parser (a buffer
  // list, `debug` calls, one state machine step per field) was about 30% of the broker's CPU at QoS 0 fan-in.
  let slowFrom = -1;
  let i = 0;
  const length = frames.length;
  while (i < length) {
    const first = frames[i]!;
    const end = frameEnd(frames, i);
    // The body starts after the remaining-length bytes: those with the continuation bit, then one without.
    let j = i + 1;
    while ((frames[j++]! & 0x80) !== 0);
    const remaining = end - j;
    const type = first >> 4;
    const decoded =
      type === 3
        ? decodePublish(protocolVersion, first, frames, j, end, remaining, sink)
        : type >= 4 && type <= 7
          ? decodeShortAck(protocolVersion, type, first, frames, j, remaining, sink.onPuback !== undefined)
          : type === 12
            ? decodePingreq(first, remaining)
            : type === 1
              ? decodePlainConnect(first, frames, j, end, remaining)
              : type === 14
                ? decodeNormalDisconnect(protocolVersion, first, frames, j, remaining)
                : undefined;
    // What mqtt-packet will decode is first checked for the rules it does not apply.
    const checked = decoded ?? checkUndecoded(protocolVersion, type, first, frames, j, end);
    if (checked) {
      if (slowFrom >= 0) {
        if (!parser.parse(copyOf(frames, slowFrom, i), sink)) return;
        slowFrom = -1;
      }
      if (checked instanceof Error) {
        // As with mqtt-packet's errors, nothing after a malformed packet is decoded: the connection is closing.
        if (checked instanceof ProtocolError) sink.onProtocolError(checked.message);
        else sink.onParseError(checked);
        return;
      }
      if (checked === PUBACK_BY_ID) sink.onPuback!((frames[j]! << 8) | frames[j + 1]!);
      else sink.onPacket(checked);
    } else if (slowFrom < 0) slowFrom = i;
    i = end;
  }
  if (slowFrom >= 0) parser.parse(copyOf(frames, slowFrom, length), sink);
}

/**
 * A PUBLISH without MQTT 5 properties, as mqtt-packet would decode it, or the error that makes it malformed;
 * undefined when it carries properties, which mqtt-packet then decodes. Stricter than mqtt-packet in two places:
 * a QoS 1/2 PUBLISH too short for its packet id is malformed (mqtt-packet reads the id as -1), and one with packet
 * id 0 is a protocol error.
 */
function decodePublish(
  protocolVersion: 3 | 4 | 5,
  first: number,
  frames: Buffer,
  start: number,
  end: number,
  remaining: number,
  sink: PacketSink,
): IPublishPacket | Error | undefined {
  const qos = (first >> 1) & 3;
  if (qos === 3) return new Error('Packet must not have both QoS bits set to 1');
  const topicEnd = stringEnd(frames, start, end);
  if (topicEnd < 0) return new Error('Cannot parse topic');
  let pos = topicEnd;
  let messageId: number | undefined;
  if (qos > 0) {
    if (pos + 2 > end) return new Error('Cannot parse messageId');
    messageId = (frames[pos]! << 8) | frames[pos + 1]!;
    if (messageId === 0) return zeroPacketId('PUBLISH');
    pos += 2;
  }
  if (protocolVersion === 5) {
    if (pos >= end) return new Error('Cannot parse properties length');
    if (frames[pos] !== 0) return undefined;
    pos += 1;
  }
  // `messageId` in the literal even when undefined: added afterwards, it gave every QoS 1/2 PUBLISH a property
  // array of its own (~40 bytes) and two object shapes to the code that reads it.
  return {
    cmd: 'publish',
    retain: (first & 1) !== 0,
    qos: qos as 0 | 1 | 2,
    dup: (first & 8) !== 0,
    length: remaining,
    topic: topicOf(frames, start + 2, topicEnd, sink),
    payload: copyOf(frames, pos, end),
    messageId,
  };
}

/**
 * The topic in bytes `start..end` (valid UTF-8: the framer checked it): the sink's recent topic when the bytes are
 * its characters. Only an ASCII topic decodes to as many characters as it has bytes, and only for those is the
 * byte-for-character comparison exact, so only those are kept.
 */
function topicOf(frames: Buffer, start: number, end: number, sink: PacketSink): string {
  const length = end - start;
  const recent = sink.recentTopic;
  if (recent !== undefined && recent.length === length) {
    let i = 0;
    while (i < length && frames[start + i] === recent.charCodeAt(i)) i++;
    if (i === length) return recent;
  }
  const topic = frames.toString('utf8', start, end);
  if (topic.length === length) sink.recentTopic = topic;
  return topic;
}

/** Header flags each acknowledgement must carry [MQTT-2.2.2-1]: PUBREL 0b0010, the others 0. */
const ACK_FLAGS = [0, 0, 0, 0, 0, 0, 2, 0];
const ACK_NAMES = ['', '', '', '', 'puback', 'pubrec', 'pubrel', 'pubcomp'] as const;

/** What `decodeShortAck` returns for a PUBACK the sink takes by its packet id (`PacketSink.onPuback`). */
const PUBACK_BY_ID = Object.freeze({ cmd: 'puback' }) as Packet;

/**
 * PUBACK, PUBREC, PUBREL or PUBCOMP of exactly two bytes (a packet id; MQTT 5: reason Success, no properties).
 * `pubackById`: a PUBACK is answered with `PUBACK_BY_ID` instead of a packet object.
 */
function decodeShortAck(
  protocolVersion: 3 | 4 | 5,
  type: number,
  first: number,
  frames: Buffer,
  start: number,
  remaining: number,
  pubackById: boolean,
): Packet | Error | undefined {
  if (remaining !== 2 || (first & 0x0f) !== ACK_FLAGS[type]) return undefined;
  const messageId = (frames[start]! << 8) | frames[start + 1]!;
  if (messageId === 0) return zeroPacketId(PACKET_NAMES[type]!);
  if (type === 4 && pubackById) return PUBACK_BY_ID;
  return shortAckPacket(protocolVersion, type, first, messageId);
}

/** A two-byte acknowledgement as mqtt-packet decodes it. */
export function shortAckPacket(protocolVersion: 3 | 4 | 5, type: number, first: number, messageId: number): Packet {
  const packet = {
    cmd: ACK_NAMES[type] as 'puback',
    retain: (first & 1) !== 0,
    qos: ((first >> 1) & 3) as 0 | 1 | 2,
    dup: (first & 8) !== 0,
    length: 2,
    messageId,
  } as Packet & { reasonCode?: number };
  // mqtt-packet gives MQTT 5 acknowledgements without a reason byte the implied Success, and 3.1.1 ones none.
  if (protocolVersion === 5) packet.reasonCode = 0;
  return packet;
}

/** [MQTT-3.12.1] PINGREQ has no variable header and no payload; mqtt-packet ignored a non-zero remaining length. */
function decodePingreq(first: number, remaining: number): Packet | Error | undefined {
  if ((first & 0x0f) !== 0) return undefined;
  if (remaining !== 0) return new Error(`PINGREQ with a remaining length of ${remaining}`);
  return { cmd: 'pingreq', retain: false, qos: 0, dup: false, length: 0 } as Packet;
}

/**
 * A DISCONNECT as mqtt-packet decodes it when it carries nothing but Normal disconnection: no body, or (MQTT 5, as
 * mqtt.js sends it) reason code 0 with or without an empty property length. Anything else, and bad flags, goes to
 * mqtt-packet. Every cycle of a reconnect storm ends with one, and mqtt-packet's generic parser was about 5% of it.
 */
function decodeNormalDisconnect(
  protocolVersion: 3 | 4 | 5,
  first: number,
  frames: Buffer,
  start: number,
  remaining: number,
): Packet | undefined {
  if ((first & 0x0f) !== 0) return undefined;
  const normal =
    protocolVersion !== 5
      ? remaining === 0
      : remaining <= 2 && (remaining < 1 || frames[start] === 0) && (remaining < 2 || frames[start + 1] === 0);
  if (!normal) return undefined;
  const packet = {
    cmd: 'disconnect',
    retain: false,
    qos: 0,
    dup: false,
    length: remaining,
    topic: null,
    payload: null,
  };
  return (protocolVersion === 5 ? Object.assign(packet, { reasonCode: 0 }) : packet) as Packet;
}

/** Connect flags this decoder leaves to mqtt-packet: reserved bit 0, and the will flag, QoS and retain. */
const WILL_OR_RESERVED_FLAGS = 0x01 | 0x04 | 0x18 | 0x20;

/**
 * A well-formed MQTT 3.1 / 3.1.1 CONNECT without a will, exactly as mqtt-packet would decode it; undefined for
 * anything else (MQTT 5, a will, bridge mode, a reserved bit, any length that does not add up), which mqtt-packet
 * then decodes or refuses with its own error; the error for a client identifier or user name that is not UTF-8
 * (decoded leniently, it would reach the authenticators as U+FFFD). A reconnect storm is all CONNECTs, and
 * mqtt-packet's generic parser (a buffer list copy per string, `debug` calls) was about a sixth of the bytes the
 * broker allocated per connect.
 */
function decodePlainConnect(
  first: number,
  frames: Buffer,
  start: number,
  end: number,
  remaining: number,
): IConnectPacket | Error | undefined {
  if ((first & 0x0f) !== 0 || end - start < 2) return undefined;
  const nameLength = (frames[start]! << 8) | frames[start + 1]!;
  let pos = start + 2 + nameLength;
  // Protocol name, level, flags and keep alive must all be there.
  if (pos + 4 > end) return undefined;
  const protocolId = frames.toString('latin1', start + 2, pos);
  if (protocolId !== 'MQTT' && protocolId !== 'MQIsdp') return undefined;
  const protocolVersion = frames[pos]!;
  if (protocolVersion !== 3 && protocolVersion !== 4) return undefined;
  const flags = frames[pos + 1]!;
  if ((flags & WILL_OR_RESERVED_FLAGS) !== 0) return undefined;
  const keepalive = (frames[pos + 2]! << 8) | frames[pos + 3]!;
  pos += 4;
  const clientIdEnd = stringEnd(frames, pos, end);
  if (clientIdEnd < 0) return undefined;
  const clientIdProblem = checkClientId(frames, pos, clientIdEnd);
  if (clientIdProblem) return clientIdProblem;
  const packet: IConnectPacket = {
    cmd: 'connect',
    retain: false,
    qos: 0,
    dup: false,
    length: remaining,
    topic: null,
    payload: null,
    protocolId,
    protocolVersion,
    clean: (flags & 0x02) !== 0,
    keepalive,
    clientId: frames.toString('utf8', pos + 2, clientIdEnd),
  } as IConnectPacket;
  pos = clientIdEnd;
  if ((flags & 0x80) !== 0) {
    const usernameEnd = stringEnd(frames, pos, end);
    if (usernameEnd < 0) return undefined;
    const problem = checkUserName(frames, pos, end);
    if (problem) return problem;
    packet.username = frames.toString('utf8', pos + 2, usernameEnd);
    pos = usernameEnd;
  }
  if ((flags & 0x40) !== 0) {
    const passwordEnd = stringEnd(frames, pos, end);
    if (passwordEnd < 0) return undefined;
    packet.password = copyOf(frames, pos + 2, passwordEnd);
    pos = passwordEnd;
  }
  return pos === end ? packet : undefined;
}

/** Packet names by type, for details in the log and in DISCONNECT's reason string. */
export const PACKET_NAMES = [
  '',
  'CONNECT',
  'CONNACK',
  'PUBLISH',
  'PUBACK',
  'PUBREC',
  'PUBREL',
  'PUBCOMP',
  'SUBSCRIBE',
  'SUBACK',
  'UNSUBSCRIBE',
  'UNSUBACK',
  'PINGREQ',
  'PINGRESP',
  'DISCONNECT',
  'AUTH',
] as const;

/**
 * [MQTT-2.2.1-3] a QoS 1/2 PUBLISH, SUBSCRIBE and UNSUBSCRIBE carry a non-zero Packet Identifier, and an
 * acknowledgement carries the one of the packet it answers, so never 0 either. Mosquitto refuses 0 in all of them
 * as a protocol error; so do we (the packet parses: section 4.13.1).
 */
function zeroPacketId(packetName: string): ProtocolError {
  return new ProtocolError(`${packetName} has Packet Identifier 0 [MQTT-2.2.1-3]`);
}

function propertyError(problem: PropertyProblem): Error {
  return problem.reason === 'protocolError' ? new ProtocolError(problem.detail) : new Error(problem.detail);
}

/**
 * The rules mqtt-packet does not apply, checked on the bytes of a packet it is about to decode: a non-zero Packet
 * Identifier, MQTT 5 properties (see `checkProperties`), and topic filters, will topic and user name as UTF-8 from
 * their bytes (it decodes ill-formed UTF-8 as U+FFFD). Runs only for packets the fast paths above leave to
 * mqtt-packet, never for a PUBLISH without properties. A field that does not fit the packet is left to mqtt-packet's
 * own error where it has one (strings of the CONNECT and of topic filters) and is malformed here where it has none:
 * it reads a missing Packet Identifier as -1 and a property string that does not fit as `null`, and decodes on.
 */
function checkUndecoded(
  protocolVersion: 3 | 4 | 5,
  type: number,
  first: number,
  frames: Buffer,
  start: number,
  end: number,
): Error | undefined {
  const name = PACKET_NAMES[type]!;
  const v5 = protocolVersion === 5;
  let propertiesAt = -1;
  switch (type) {
    case 1:
      return checkConnect(frames, start, end);
    case 3: {
      let pos = stringEnd(frames, start, end);
      if (pos < 0) return new Error('Cannot parse topic');
      if (((first >> 1) & 3) !== 0) {
        if (pos + 2 > end) return new Error('Cannot parse messageId');
        if (((frames[pos]! << 8) | frames[pos + 1]!) === 0) return zeroPacketId(name);
        pos += 2;
      }
      propertiesAt = pos;
      break;
    }
    case 4:
    case 5:
    case 6:
    case 7:
      if (end - start < 2) return tooShortForPacketId(name, end - start);
      // [MQTT-3.4.1] and its siblings in 3.1.1: the remaining length is 2, the Packet Identifier alone.
      if (!v5 && end - start !== 2) return new Error(`${name} of ${end - start} bytes in MQTT 3.1.1 (2 expected)`);
      if (((frames[start]! << 8) | frames[start + 1]!) === 0) return zeroPacketId(name);
      if (end - start > 3) propertiesAt = start + 3;
      break;
    case 8:
    case 10:
      return checkSubscription(v5, type === 8, frames, start, end);
    case 14:
    case 15:
      if (end - start > 1) propertiesAt = start + 1;
      break;
  }
  if (!v5 || propertiesAt < 0) return undefined;
  const checked = checkProperties(frames, propertiesAt, end, PACKET_PROPERTIES[type]!);
  return typeof checked === 'number' ? undefined : propertyError(checked);
}

function tooShortForPacketId(packetName: string, remaining: number): Error {
  return new Error(`${packetName} of ${remaining} byte(s) is too short for its Packet Identifier`);
}

/** SUBSCRIBE or UNSUBSCRIBE: its Packet Identifier, its properties, and each topic filter as UTF-8. */
function checkSubscription(
  v5: boolean,
  subscribe: boolean,
  frames: Buffer,
  start: number,
  end: number,
): Error | undefined {
  const name = subscribe ? 'SUBSCRIBE' : 'UNSUBSCRIBE';
  if (end - start < 2) return tooShortForPacketId(name, end - start);
  if (((frames[start]! << 8) | frames[start + 1]!) === 0) return zeroPacketId(name);
  let pos = start + 2;
  if (v5) {
    const checked = checkProperties(frames, pos, end, PACKET_PROPERTIES[subscribe ? 8 : 10]!);
    if (typeof checked !== 'number') return propertyError(checked);
    pos = checked;
  }
  while (pos < end) {
    const filterEnd = stringEnd(frames, pos, end);
    if (filterEnd < 0) return undefined;
    // [MQTT-1.5.4-1] ill-formed UTF-8 and [MQTT-1.5.4-2] U+0000 make the packet malformed, not the filter invalid.
    const problem = utf8Problem(frames, pos + 2, filterEnd);
    if (problem) return new Error(`${name} topic filter is not a valid UTF-8 string (${problem})`);
    // Each SUBSCRIBE filter is followed by its Subscription Options byte.
    pos = subscribe ? filterEnd + 1 : filterEnd;
  }
  return undefined;
}

/**
 * A CONNECT mqtt-packet will decode (MQTT 5, a will, or anything the plain decoder passed over): its properties and
 * will properties, and the client identifier, will topic and user name as UTF-8.
 */
function checkConnect(frames: Buffer, start: number, end: number): Error | undefined {
  let pos = stringEnd(frames, start, end);
  if (pos < 0 || pos + 4 > end) return undefined;
  const level = frames[pos]!;
  const flags = frames[pos + 1]!;
  // [MQTT-3.1.2-12] (MQTT 5: a Malformed Packet) and [MQTT-3.1.2-14] (3.1.1): Will QoS 3 does not exist. mqtt-packet
  // passes it on, and it was answered as a QoS this broker does not support.
  if ((flags & 0x04) !== 0 && (flags & 0x18) === 0x18) return new Error('CONNECT has Will QoS 3');
  pos += 4;
  const v5 = level === 5;
  if (v5) {
    const checked = checkProperties(frames, pos, end, PACKET_PROPERTIES[1]!);
    if (typeof checked !== 'number') return propertyError(checked);
    pos = checked;
  }
  const clientIdEnd = stringEnd(frames, pos, end);
  if (clientIdEnd < 0) return undefined;
  const clientIdProblem = checkClientId(frames, pos, clientIdEnd);
  if (clientIdProblem) return clientIdProblem;
  pos = clientIdEnd;
  if ((flags & 0x04) !== 0) {
    if (v5) {
      const checked = checkProperties(frames, pos, end, WILL_PROPERTIES);
      if (typeof checked !== 'number') return propertyError(checked);
      pos = checked;
    }
    const topicEnd = stringEnd(frames, pos, end);
    if (topicEnd < 0) return undefined;
    const problem = utf8Problem(frames, pos + 2, topicEnd);
    if (problem) return new Error(`CONNECT will topic is not a valid UTF-8 string (${problem})`);
    pos = stringEnd(frames, topicEnd, end);
    if (pos < 0) return undefined;
  }
  if ((flags & 0x80) !== 0) return checkUserName(frames, pos, end);
  return undefined;
}

/**
 * The client identifier `pos..fieldEnd` as UTF-8 ([MQTT-3.1.3-4]): ill-formed UTF-8 or U+0000 makes the CONNECT
 * malformed ([MQTT-1.5.4-1], [MQTT-1.5.4-2]), not the identifier invalid (0x85), like every other string field.
 */
function checkClientId(frames: Buffer, pos: number, fieldEnd: number): Error | undefined {
  const problem = utf8Problem(frames, pos + 2, fieldEnd);
  return problem ? new Error(`CONNECT client identifier is not a valid UTF-8 string (${problem})`) : undefined;
}

/** The user name at `pos`, when it fits, as UTF-8 ([MQTT-3.1.3-11]). */
function checkUserName(frames: Buffer, pos: number, end: number): Error | undefined {
  const usernameEnd = stringEnd(frames, pos, end);
  if (usernameEnd < 0) return undefined;
  const problem = utf8Problem(frames, pos + 2, usernameEnd);
  return problem ? new Error(`CONNECT user name is not a valid UTF-8 string (${problem})`) : undefined;
}

/** Bytes `start..end` as a Buffer of their own: the frames are only lent (see `ByteStream`), a payload is kept. */
function copyOf(frames: Buffer, start: number, end: number): Buffer {
  const length = end - start;
  const copy = Buffer.allocUnsafe(length);
  // `Buffer#copy` of a range builds a view of the range first; short payloads, most of them, are copied by hand. A
  // micro-benchmark favours `copy` from about 32 bytes, but on the latency benchmark's 64-byte payloads the decode
  // then cost 2.4 µs a message against 0.85 with the loop (docs/performance.md, session 23).
  if (length <= 128) for (let i = 0; i < length; i++) copy[i] = frames[start + i]!;
  else frames.copy(copy, 0, start, end);
  return copy;
}

/** End of the length-prefixed field at `pos`, or -1 when it does not fit before `end`. */
function stringEnd(frames: Buffer, pos: number, end: number): number {
  if (pos + 2 > end) return -1;
  const fieldEnd = pos + 2 + ((frames[pos]! << 8) | frames[pos + 1]!);
  return fieldEnd > end ? -1 : fieldEnd;
}
