import { RawClient } from './loadgen/raw-client.js';
import { PUBACK, publishTemplate } from './loadgen/wire.js';

/** Low-volume checks the orchestrator runs to find out whether a feature is in effect before measuring it. */

export async function connectCode(port: number, username?: string, password?: string): Promise<number> {
  const { client, returnCode } = await RawClient.open(port, {
    clientId: `probe-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
  });
  client.close();
  return returnCode;
}

/** SUBACK code for one filter as an anonymous client (0x80 = refused), or -1 when it could not connect. */
export async function subscribeCode(port: number, topic: string): Promise<number> {
  const { client, returnCode } = await RawClient.open(port, { clientId: `probe-${process.pid}-sub` });
  if (returnCode !== 0) {
    client.close();
    return -1;
  }
  const code = await client.subscribe(topic, 0);
  client.close();
  return code;
}

/** Publishes `count` QoS 1 messages one at a time and resolves with how many were acknowledged. */
export async function publishAcked(port: number, topic: string, count: number): Promise<number> {
  const { client, returnCode } = await RawClient.open(port, { clientId: `probe-${process.pid}-pub` });
  if (returnCode !== 0) {
    client.close();
    return 0;
  }
  const t = publishTemplate(topic, Buffer.from('probe'), 1);
  let acked = 0;
  for (let i = 1; i <= count && !client.closed; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 2000);
      client.onPacket = (first) => {
        if (first >> 4 === PUBACK) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      const out = Buffer.from(t.bytes);
      out.writeUInt16BE(i, t.idOffset);
      client.socket.write(out);
    });
    if (!ok) break;
    acked++;
  }
  client.close();
  return acked;
}
