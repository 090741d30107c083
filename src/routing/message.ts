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

/** Seconds left before expiry, rounded up so a message is never forwarded as already expired. */
export function remainingExpirySeconds(message: Message, now: number): number | undefined {
  if (message.expiresAt === undefined) return undefined;
  return Math.max(1, Math.ceil((message.expiresAt - now) / 1000));
}

export function isExpired(message: Message, now: number): boolean {
  return message.expiresAt !== undefined && message.expiresAt <= now;
}
