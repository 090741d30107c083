import mqtt from 'mqtt-packet';
import { until } from './until.js';

/** `count` QoS 0 PUBLISH packets of `payloadBytes` each, numbered by their payload's first four bytes. */
export function burstOfPublishes(topic: string, count: number, payloadBytes: number): Buffer[] {
  const packets: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const payload = Buffer.alloc(payloadBytes, i & 0xff);
    payload.writeUInt32BE(i, 0);
    packets.push(mqtt.generate({ cmd: 'publish', topic, payload, qos: 0, dup: false, retain: false }));
  }
  return packets;
}

/**
 * The bytes a client still holds unsent once the peer has stopped taking them (`unsent` reads the client's
 * user-space send buffer): the value once it has not changed for 300 ms. A broker that reads drains it to 0 within
 * that; one that has stopped reading leaves it where the kernel's buffers filled up.
 */
export async function settledUnsent(unsent: () => number): Promise<number> {
  let last = -1;
  let since = Date.now();
  const settled = await until(
    () => {
      const now = unsent();
      if (now !== last) {
        last = now;
        since = Date.now();
        return false;
      }
      return Date.now() - since >= 300 && { bytes: now };
    },
    'the client to stop draining its send buffer',
    15_000,
  );
  return settled.bytes;
}
