import mqttPacket from 'mqtt-packet';

/**
 * The load generator's wire layer. Packets are built once with mqtt-packet and patched in place (packet id,
 * timestamp); incoming bytes go through a hand-written framer because mqtt-packet's parser (~500k PUBLISH/s on
 * one core) would saturate the load generator before a native broker saturates its own core. MQTT 3.1.1 only:
 * both brokers speak it, and it keeps the hot path free of properties.
 */

export const PUBLISH = 3;
export const PUBACK = 4;
export const PUBREC = 5;
export const PUBREL = 6;
export const PUBCOMP = 7;
export const CONNACK = 2;
export const SUBACK = 9;

export interface ConnectOptions {
  clientId: string;
  username?: string;
  password?: string;
  keepalive?: number;
  /** Clean session 0: a persistent session, which the broker's store must make durable. */
  persistent?: boolean;
}

export function connectPacket(o: ConnectOptions): Buffer {
  return mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: o.persistent !== true,
    clientId: o.clientId,
    keepalive: o.keepalive ?? 300,
    ...(o.username !== undefined ? { username: o.username } : {}),
    ...(o.password !== undefined ? { password: Buffer.from(o.password) } : {}),
  });
}

export function subscribePacket(topic: string, qos: 0 | 1 | 2, messageId = 1): Buffer {
  return mqttPacket.generate({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] });
}

export const DISCONNECT = Buffer.from([0xe0, 0x00]);

/** A PUBLISH built once; `payloadOffset` and `idOffset` say where to patch copies of it. */
export interface PublishTemplate {
  bytes: Buffer;
  payloadOffset: number;
  /** -1 at QoS 0 (no packet id). */
  idOffset: number;
}

export function publishTemplate(topic: string, payload: Buffer, qos: 0 | 1 | 2): PublishTemplate {
  const bytes = mqttPacket.generate({
    cmd: 'publish',
    topic,
    payload,
    qos,
    dup: false,
    retain: false,
    ...(qos > 0 ? { messageId: 1 } : {}),
  });
  const payloadOffset = bytes.length - payload.length;
  return { bytes, payloadOffset, idOffset: qos > 0 ? payloadOffset - 2 : -1 };
}

/** A 4-byte acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) written into `out` at `at`. */
export function writeAck(out: Buffer, at: number, type: number, id: number): void {
  // [MQTT-3.6.1-1] PUBREL's fixed-header flags are 0b0010.
  out[at] = (type << 4) | (type === PUBREL ? 2 : 0);
  out[at + 1] = 2;
  out[at + 2] = id >> 8;
  out[at + 3] = id & 0xff;
}

/**
 * Called for each complete packet: `first` is the fixed header's first byte, the body is `buf[start, end)`.
 * The buffer is only valid during the call.
 */
export type PacketHandler = (first: number, buf: Buffer, start: number, end: number) => void;

/** Splits a byte stream into MQTT packets without copying, except for a packet split across two chunks. */
export class Framer {
  private rest: Buffer | undefined;

  constructor(private readonly onPacket: PacketHandler) {}

  /** Returns false on a malformed remaining length (the connection should be closed). */
  push(chunk: Buffer): boolean {
    let buf = chunk;
    if (this.rest) {
      buf = Buffer.concat([this.rest, chunk]);
      this.rest = undefined;
    }
    const len = buf.length;
    let off = 0;
    while (len - off >= 2) {
      let i = off + 1;
      let remaining = 0;
      let mult = 1;
      let complete = false;
      for (let k = 0; k < 4 && i < len; k++) {
        const d = buf[i++] as number;
        remaining += (d & 0x7f) * mult;
        mult *= 128;
        if ((d & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        if (i - off > 4) return false;
        break;
      }
      if (i + remaining > len) break;
      this.onPacket(buf[off] as number, buf, i, i + remaining);
      off = i + remaining;
    }
    // Copy the tail: the caller may reuse the chunk's memory.
    if (off < len) this.rest = Buffer.from(buf.subarray(off));
    return true;
  }
}
