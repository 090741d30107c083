import { verifyAuditLog, type VerifyResult } from './verify.js';
import { openAuditWriter, type AuditWriterOptions } from './writer.js';
import type { AuditEvent } from './events.js';

/** A typical denial record (~500 bytes on disk). */
export function sampleEvent(i: number): AuditEvent {
  return {
    event: { action: 'authz.publish_denied', outcome: 'failure', reason: 'no rule allows', code: 'notAuthorized' },
    client: { ip: `10.0.${(i >> 8) & 255}.${i & 255}`, port: 40000 + (i % 20000) },
    user: { name: `user-${i % 1000}` },
    mqtt: { client_id: `device-${i}`, topic: `plant/line${i % 8}/cmd`, qos: 1, reason_code: 135 },
    authz: { rule: 'policies/site.yaml:42', source: 'file', action: 'publish' },
  };
}

/**
 * Sustained events per second through the real writer (hash chain, group commit, the given fsync policy). The
 * producer yields to the event loop whenever the queue is half full, the way a busy broker would.
 */
export async function benchmarkAuditWriter(
  options: AuditWriterOptions,
  events: number,
): Promise<{ events: number; seconds: number; perSecond: number; dropped: number }> {
  const writer = await openAuditWriter(options);
  const start = performance.now();
  for (let i = 0; i < events; i++) {
    writer.record(sampleEvent(i));
    if (writer.queueDepth >= options.queueMax / 2) {
      while (writer.queueDepth > options.queueMax / 4) await new Promise((r) => setTimeout(r, 1));
    }
  }
  await writer.close();
  const seconds = (performance.now() - start) / 1000;
  return { events, seconds, perSecond: events / seconds, dropped: writer.stats().dropped };
}

/** Records verified per second over a directory (stream, constant memory). */
export async function benchmarkAuditVerify(
  dir: string,
): Promise<{ result: VerifyResult; seconds: number; perSecond: number }> {
  const start = performance.now();
  const result = await verifyAuditLog(dir);
  const seconds = (performance.now() - start) / 1000;
  return { result, seconds, perSecond: result.summary.records / seconds };
}
