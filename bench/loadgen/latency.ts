import { summarizeLatencies } from '../stats.js';
import { AckBatch } from './ack-batch.js';
import { sleep, type Mark } from './flow.js';
import type { LatencyJob, LatencyResult } from './jobs.js';
import { PacketIds } from './packet-ids.js';
import { RawClient } from './raw-client.js';
import { PUBACK, PUBLISH, publishTemplate } from './wire.js';

/**
 * QoS 1 end-to-end latency at a fixed rate. Each message carries its *scheduled* send time, not the time it was
 * written: a message held back by a full in-flight window still counts its wait (no coordinated omission).
 */
export async function runLatency(job: LatencyJob, mark: Mark): Promise<LatencyResult> {
  if ((job.otherPorts ?? []).length > 0) throw new Error('the Node load generator measures one broker at a time');
  const errors: string[] = [];
  const run = `l${process.pid}`;
  const topic = `bench/${run}/lat`;
  let stopped = false;
  const capacity = Math.ceil((job.rate * job.durationMs) / 1000 + job.rate);
  const samples = new Float64Array(capacity);
  let sampleCount = 0;
  let received = 0;
  let windowStart = Infinity;
  let windowEnd = Infinity;

  const { client: sub, returnCode } = await RawClient.open(job.port, { clientId: `${run}-sub` });
  if (returnCode !== 0) throw new Error(`subscriber: CONNACK ${returnCode}`);
  if ((await sub.subscribe(topic, 1)) !== 1) throw new Error('subscriber: QoS 1 not granted');
  const subAcks = new AckBatch();
  sub.onPacket = (first, buf, start) => {
    if (first >> 4 !== PUBLISH) return;
    const now = performance.now();
    let p = start + 2 + buf.readUInt16BE(start);
    if (((first >> 1) & 3) > 0) {
      subAcks.add(PUBACK, buf.readUInt16BE(p));
      p += 2;
    }
    const scheduled = buf.readDoubleLE(p + 1);
    received++;
    if (scheduled >= windowStart && scheduled < windowEnd && sampleCount < capacity)
      samples[sampleCount++] = now - scheduled;
  };
  sub.onChunkEnd = () => {
    const out = subAcks.take();
    if (out) sub.socket.write(out);
  };
  sub.socket.on('close', () => {
    if (!stopped) errors.push('subscriber disconnected by the broker');
  });

  const { client: pub, returnCode: pubCode } = await RawClient.open(job.port, { clientId: `${run}-pub` });
  if (pubCode !== 0) throw new Error(`publisher: CONNACK ${pubCode}`);
  const template = publishTemplate(topic, Buffer.alloc(Math.max(job.payloadBytes, 9), 0x61), 1);
  const ids = new PacketIds();
  pub.onPacket = (first, buf, start) => {
    if (first >> 4 === PUBACK) ids.release(buf.readUInt16BE(start));
  };
  pub.onChunkEnd = () => send();

  const t0 = performance.now();
  let scheduledCount = 0;
  const interval = 1000 / job.rate;
  // Messages are scheduled until the window ends; a backlog (full in-flight window) is still sent afterwards.
  let scheduleEnd = Infinity;
  function send(): void {
    if (pub.closed) return;
    const due = Math.floor((Math.min(performance.now(), scheduleEnd) - t0) / interval);
    const n = Math.min(due - scheduledCount, job.inflight - ids.inflight);
    if (n <= 0) return;
    const len = template.bytes.length;
    const out = Buffer.allocUnsafe(n * len);
    for (let k = 0; k < n; k++) {
      const at = k * len;
      template.bytes.copy(out, at);
      out.writeUInt16BE(ids.take(), at + template.idOffset);
      out.writeDoubleLE(t0 + scheduledCount * interval, at + template.payloadOffset + 1);
      scheduledCount++;
    }
    pub.socket.write(out);
  }
  const timer = setInterval(send, 1);

  const cpuStart = process.cpuUsage();
  await sleep(job.warmupMs);
  windowStart = performance.now();
  mark('window-start');
  await sleep(job.durationMs);
  windowEnd = performance.now();
  scheduleEnd = windowEnd;
  const cpu = process.cpuUsage(cpuStart);
  mark('window-end');

  const totalDue = Math.floor((scheduleEnd - t0) / interval);
  let last = -1;
  let lastChange = performance.now();
  while (received < totalDue || ids.inflight > 0) {
    if (received !== last) {
      last = received;
      lastChange = performance.now();
    } else if (performance.now() - lastChange > job.drainMs) break;
    await sleep(20);
  }
  stopped = true;
  clearInterval(timer);
  sub.close();
  pub.close();
  const summary = summarizeLatencies(samples.subarray(0, sampleCount));
  return {
    kind: 'latency',
    sent: totalDue,
    received,
    lost: Math.max(0, totalDue - received),
    ...(summary ? { p50Ms: summary.p50Ms, p99Ms: summary.p99Ms, maxMs: summary.maxMs } : {}),
    samples: sampleCount,
    loadgenCpu: (cpu.user + cpu.system) / 1000 / (windowEnd - windowStart + job.warmupMs),
    errors,
  };
}
