import { AckBatch } from './ack-batch.js';
import type { FlowJob, FlowResult } from './jobs.js';
import { PacketIds } from './packet-ids.js';
import { RawClient } from './raw-client.js';
import { PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, publishTemplate, type PublishTemplate } from './wire.js';

const MAX_BATCH = 256;

interface Publisher {
  index: number;
  client: RawClient;
  template: PublishTemplate;
  /** MAX_BATCH copies of a QoS 0 PUBLISH: written as a slice, never modified. */
  repeated: Buffer | undefined;
  ids: PacketIds;
  acks: AckBatch;
  sent: number;
}

export type Mark = (phase: 'window-start' | 'window-end') => void;

/**
 * Publishers → broker → subscribers, as fast as the windows allow. A publisher sends while it has fewer than
 * `window` messages not yet delivered to every subscriber (and, at QoS 1/2, fewer than `inflight` unacknowledged),
 * so a broker is measured at its own pace without unbounded queues, and every message can be accounted for.
 */
export async function runFlow(job: FlowJob, mark: Mark): Promise<FlowResult> {
  const errors: string[] = [];
  const run = `f${process.pid}`;
  const filter = job.shape === 'fanin' ? `bench/${run}/+` : `bench/${run}/0`;
  const S = job.subscribers;
  const deliveredFrom = new Float64Array(job.publishers);
  let received = 0;
  let stopped = false;

  const subscribers: RawClient[] = [];
  for (let s = 0; s < S; s++) {
    const { client, returnCode } = await RawClient.open(job.port, {
      clientId: `${run}-sub-${s}`,
      persistent: job.persistentSubscribers === true,
      ...creds(job),
    });
    if (returnCode !== 0) throw new Error(`subscriber ${s}: CONNACK ${returnCode}`);
    const granted = await client.subscribe(filter, job.qos);
    if (granted !== job.qos) throw new Error(`subscriber ${s}: SUBACK ${granted} for QoS ${job.qos}`);
    const acks = new AckBatch();
    client.onPacket = (first, buf, start) => {
      const type = first >> 4;
      if (type === PUBLISH) {
        const qos = (first >> 1) & 3;
        let p = start + 2 + buf.readUInt16BE(start);
        if (qos > 0) {
          const id = buf.readUInt16BE(p);
          p += 2;
          acks.add(qos === 1 ? PUBACK : PUBREC, id);
        }
        deliveredFrom[buf[p] as number]++;
        received++;
      } else if (type === PUBREL) {
        acks.add(PUBCOMP, buf.readUInt16BE(start));
      }
    };
    client.onChunkEnd = () => {
      const out = acks.take();
      if (out) client.socket.write(out);
      schedulePump();
    };
    client.socket.on('close', () => {
      if (!stopped) errors.push(`subscriber ${s} disconnected by the broker`);
    });
    subscribers.push(client);
  }

  const payload = Buffer.alloc(job.payloadBytes, 0x61);
  const publishers: Publisher[] = [];
  for (let i = 0; i < job.publishers; i++) {
    const { client, returnCode } = await RawClient.open(job.port, { clientId: `${run}-pub-${i}`, ...creds(job) });
    if (returnCode !== 0) throw new Error(`publisher ${i}: CONNACK ${returnCode}`);
    payload[0] = i;
    const template = publishTemplate(`bench/${run}/${job.shape === 'fanin' ? i : 0}`, payload, job.qos);
    const pub: Publisher = {
      index: i,
      client,
      template,
      repeated: job.qos === 0 ? Buffer.concat(Array.from({ length: MAX_BATCH }, () => template.bytes)) : undefined,
      ids: new PacketIds(),
      acks: new AckBatch(),
      sent: 0,
    };
    client.onPacket = (first, buf, start) => {
      const type = first >> 4;
      const id = buf.readUInt16BE(start);
      if (type === PUBACK || type === PUBCOMP) pub.ids.release(id);
      else if (type === PUBREC) pub.acks.add(PUBREL, id);
    };
    client.onChunkEnd = () => {
      const out = pub.acks.take();
      if (out) client.socket.write(out);
      schedulePump();
    };
    client.socket.on('drain', schedulePump);
    client.socket.on('close', () => {
      if (!stopped) errors.push(`publisher ${i} disconnected by the broker`);
    });
    publishers.push(pub);
  }

  let pumpScheduled = false;
  function schedulePump(): void {
    if (pumpScheduled || stopped) return;
    pumpScheduled = true;
    setImmediate(pump);
  }
  function pump(): void {
    pumpScheduled = false;
    if (stopped) return;
    for (const pub of publishers) {
      const socket = pub.client.socket;
      if (pub.client.closed || socket.writableNeedDrain) continue;
      const outstanding = Math.ceil((pub.sent * S - (deliveredFrom[pub.index] as number)) / S);
      let n = Math.min(job.window - outstanding, MAX_BATCH);
      if (job.qos > 0) n = Math.min(n, job.inflight - pub.ids.inflight);
      if (n <= 0) continue;
      const len = pub.template.bytes.length;
      if (pub.repeated) {
        socket.write(pub.repeated.subarray(0, n * len));
      } else {
        const out = Buffer.allocUnsafe(n * len);
        for (let k = 0; k < n; k++) {
          const at = k * len;
          pub.template.bytes.copy(out, at);
          out.writeUInt16BE(pub.ids.take(), at + pub.template.idOffset);
        }
        socket.write(out);
      }
      pub.sent += n;
    }
  }

  const cpuStart = process.cpuUsage();
  schedulePump();
  await sleep(job.warmupMs);
  mark('window-start');
  const t0 = performance.now();
  const r0 = received;
  const cpu0 = process.cpuUsage(cpuStart);
  await sleep(job.durationMs);
  const windowReceived = received - r0;
  const windowMs = performance.now() - t0;
  const cpu1 = process.cpuUsage(cpuStart);
  mark('window-end');
  stopped = true;

  // Drain: wait until every message is accounted for, or nothing has moved for drainMs.
  let last = -1;
  let lastChange = performance.now();
  for (;;) {
    const acked = publishers.every((p) => p.ids.inflight === 0 || p.client.closed);
    const expected = publishers.reduce((sum, p) => sum + p.sent * S, 0);
    if (acked && received >= expected) break;
    const progress = received + publishers.reduce((sum, p) => sum + p.ids.inflight, 0) * 1e9;
    if (progress !== last) {
      last = progress;
      lastChange = performance.now();
    } else if (performance.now() - lastChange > job.drainMs) break;
    await sleep(20);
  }

  let lost = 0;
  let duplicates = 0;
  let sent = 0;
  for (const pub of publishers) {
    const expectedFrom = pub.sent * S;
    const got = deliveredFrom[pub.index] as number;
    if (got < expectedFrom) lost += expectedFrom - got;
    else duplicates += got - expectedFrom;
    sent += pub.sent;
  }
  for (const c of [...publishers.map((p) => p.client), ...subscribers]) c.close();
  const cpuMicros = cpu1.user + cpu1.system - cpu0.user - cpu0.system;
  return {
    kind: 'flow',
    sent,
    expected: sent * S,
    received,
    lost,
    duplicates,
    windowMs,
    windowReceived,
    rate: (windowReceived * 1000) / windowMs,
    loadgenCpu: cpuMicros / 1000 / windowMs,
    errors,
  };
}

function creds(job: { credentials?: { username: string; password: string } }): {
  username?: string;
  password?: string;
} {
  return job.credentials ? { username: job.credentials.username, password: job.credentials.password } : {};
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
