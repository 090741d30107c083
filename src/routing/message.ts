import { Buffer } from 'node:buffer';
import type { IPublishPacket } from 'mqtt-packet';

export type QoS = 0 | 1 | 2;

/** MQTT 5 PUBLISH properties that travel with the message to subscribers ([MQTT-3.3.2-4] and friends). */
export interface ForwardedProperties {
  payloadFormatIndicator?: boolean;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Buffer;
  userProperties?: Record<string, string | string[]>;
}

/** An application message inside the broker, immutable once routed. */
export interface Message {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: QoS;
  readonly retain: boolean;
  readonly properties: ForwardedProperties | undefined;
  /** Epoch ms when the Message Expiry Interval runs out; undefined when it never expires. */
  readonly expiresAt: number | undefined;
  /** Client id of the publisher, for No Local; undefined for messages the broker itself publishes. */
  readonly publisherId: string | undefined;
  /**
   * Encoded PUBLISH packets shared by every subscriber that needs the same bytes (fan-out encodes once): the first
   * (protocol version, retain) variant inline, any further ones in a map.
   */
  encodedKey?: number;
  encoded?: Buffer;
  encodedOthers?: Map<number, Buffer>;
  /** This message with buffers of its own (`withOwnedBytes`), made once and shared by every queue that keeps it. */
  ownedCopy?: Message;
  /**
   * Set by the session store once the message's body is journaled: its number there, and the epoch of the file it
   * went to (`SessionStore`). Fields rather than a WeakMap entry: the map's entry per persistent QoS 1 message
   * cost 5–8% of a persistent subscriber's rate.
   */
  journalNumber?: number;
  journalEpoch?: number;
}

/**
 * A decoded payload is a view into the whole read it arrived in: up to 64 KiB of other clients' packets. Kept
 * past the tick (retained, queued for an absent client) the view would hold that whole read for a few payload
 * bytes, and the limits that count payload bytes would not see it. A view that wastes more than 1 KiB and more
 * than its own size is copied.
 */
const TOLERATED_WASTE_BYTES = 1024;

function ownsItsBytes(bytes: Buffer): boolean {
  const waste = bytes.buffer.byteLength - bytes.byteLength;
  return waste <= TOLERATED_WASTE_BYTES || waste <= bytes.byteLength;
}

/** A copy of exactly its size, not in Node's shared 8 KiB pool (which a long-lived slice would pin the same way). */
function ownCopy(bytes: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.byteLength);
  bytes.copy(copy);
  return copy;
}

/** The message itself when its payload and correlation data own their memory; else a copy that does, made once. */
export function withOwnedBytes(message: Message): Message {
  if (message.ownedCopy !== undefined) return message.ownedCopy;
  const correlationData = message.properties?.correlationData;
  const payloadOwned = ownsItsBytes(message.payload);
  const correlationOwned = correlationData === undefined || ownsItsBytes(correlationData);
  if (payloadOwned && correlationOwned) return message;
  const properties = correlationOwned
    ? message.properties
    : { ...message.properties, correlationData: ownCopy(correlationData!) };
  // The cached encodings are left behind: they may sit in a shared pool too, and the copy encodes on first send.
  const copy: Message = {
    topic: message.topic,
    payload: payloadOwned ? message.payload : ownCopy(message.payload),
    qos: message.qos,
    retain: message.retain,
    properties,
    expiresAt: message.expiresAt,
    publisherId: message.publisherId,
  };
  message.ownedCopy = copy;
  return copy;
}

export function forwardedProperties(packet: IPublishPacket): ForwardedProperties | undefined {
  const p = packet.properties;
  if (!p) return undefined;
  const out: ForwardedProperties = {};
  let any = false;
  if (p.payloadFormatIndicator !== undefined) {
    out.payloadFormatIndicator = p.payloadFormatIndicator;
    any = true;
  }
  if (p.contentType !== undefined) {
    out.contentType = p.contentType;
    any = true;
  }
  if (p.responseTopic !== undefined) {
    out.responseTopic = p.responseTopic;
    any = true;
  }
  if (p.correlationData !== undefined) {
    out.correlationData = p.correlationData;
    any = true;
  }
  if (p.userProperties !== undefined) {
    out.userProperties = p.userProperties;
    any = true;
  }
  return any ? out : undefined;
}

/**
 * Seconds left before expiry [MQTT-3.3.2-6], rounded up so a message with time left is never forwarded as 0. Only a
 * message published with an interval of 0 and delivered at once is forwarded with 0: anything that waits for it
 * (a queue, a retained store, a re-send) finds it expired. Mosquitto drops the property then (no expiry at all);
 * forwarding 1 would give the receiver a second the publisher never granted.
 */
export function remainingExpirySeconds(message: Message, now: number): number | undefined {
  if (message.expiresAt === undefined) return undefined;
  return Math.max(0, Math.ceil((message.expiresAt - now) / 1000));
}

export function isExpired(message: Message, now: number): boolean {
  return message.expiresAt !== undefined && message.expiresAt <= now;
}
