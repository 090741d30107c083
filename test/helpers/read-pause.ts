import type net from 'node:net';
import mqtt from 'mqtt-packet';
import { until } from './until.js';

/** `count` QoS 0 PUBLISH packets of `payloadBytes` each, numbered by their payload's first four bytes. */
export function burstOfPublishes(topic: string, count: number, payloadBytes: number): Buffer {
  const packets: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const payload = Buffer.alloc(payloadBytes, i & 0xff);
    payload.writeUInt32BE(i, 0);
    packets.push(mqtt.generate({ cmd: 'publish', topic, payload, qos: 0, dup: false, retain: false }));
  }
  return Buffer.concat(packets);
}

/**
 * The bytes still waiting in the socket's user-space buffer once the peer has stopped taking them: the value once it
 * has not changed for 300 ms (a broker that reads drains it to 0 within that, one that has stopped reading leaves
 * it where the kernel's buffers filled up).
 */
export async function settledWritableLength(socket: net.Socket): Promise<number> {
  let last = -1;
  let since = Date.now();
  return until(
    () => {
      const now = socket.writableLength;
      if (now !== last) {
        last = now;
        since = Date.now();
        return false;
      }
      return Date.now() - since >= 300 && { bytes: now };
    },
    'the client socket to stop draining',
    15_000,
  ).then((r) => r.bytes);
}
