import { absorbCpu, loadgen, saturationNote, withBroker } from '../harness.js';
import { join } from 'node:path';
import type { BrokerKind } from '../brokers.js';
import { emptyMeasurement, type BenchContext, type Scenario } from '../scenario.js';

export const RATE = 5000;

export const latencyScenario: Scenario = {
  name: 'latency-qos1',
  description: `QoS 1 end-to-end latency, 1 publisher → 1 subscriber at a fixed ${RATE} msg/s`,
  brokers: ['bulwark', 'mosquitto', 'aedes', 'external'],
  metrics: [
    { key: 'p50Ms', label: 'p50', unit: 'ms', better: 'lower', decimals: 3 },
    { key: 'p99Ms', label: 'p99', unit: 'ms', better: 'lower', decimals: 3 },
    { key: 'maxMs', label: 'max', unit: 'ms', better: 'lower', decimals: 3 },
  ],
  run: (kind, ctx) =>
    withBroker(kind, ctx, {}, async (broker) => {
      const samplesFile = latencySamplesFile(kind, ctx);
      const run = await loadgen(
        {
          kind: 'latency',
          port: broker.port,
          rate: RATE,
          payloadBytes: 64,
          inflight: 64,
          wait: ctx.latencyWait,
          ...(samplesFile !== undefined ? { samplesFile } : {}),
          ...ctx.durations,
        },
        ctx,
        broker,
      );
      const m = emptyMeasurement();
      if (run.error || !run.result || run.result.kind !== 'latency') return { ...m, error: run.error ?? 'no result' };
      const r = run.result;
      if (r.p50Ms !== undefined) m.metrics.p50Ms = r.p50Ms;
      if (r.p99Ms !== undefined) m.metrics.p99Ms = r.p99Ms;
      if (r.maxMs !== undefined) m.metrics.maxMs = r.maxMs;
      m.lost = r.lost;
      m.loadgenCpu = r.loadgenCpu;
      absorbCpu(m, run);
      const late = r.sendLateP99Ms === undefined ? '' : `; sent p99 ${r.sendLateP99Ms.toFixed(3)} ms after schedule`;
      const gaps =
        r.scheduleGapMinMs === undefined || r.scheduleGapMaxMs === undefined
          ? ''
          : `; ${r.scheduleGapMinMs.toFixed(3)}–${r.scheduleGapMaxMs.toFixed(3)} ms between scheduled sends`;
      // A polling load generator keeps its core busy by design: that is not saturation.
      const waited = r.wait === 'poll' ? '; load generator polled' : r.wait === 'sleep' ? '; load generator slept' : '';
      const saturated = r.wait === 'poll' ? [] : saturationNote(r.loadgenCpu);
      m.notes.push(`${r.samples} samples${late}${gaps}${waited}`, ...saturated, ...r.errors);
      return m;
    }),
};

/** `<broker>-<n>.txt` in the samples directory, n counting this broker's runs; only the C load generator writes it. */
function latencySamplesFile(kind: BrokerKind, ctx: BenchContext): string | undefined {
  if (ctx.latencySamplesDir === undefined || ctx.nativeLoadgen === undefined) return undefined;
  const key = `latency-samples-${kind}`;
  const n = ((ctx.memo.get(key) as number | undefined) ?? 0) + 1;
  ctx.memo.set(key, n);
  return join(ctx.latencySamplesDir, `${kind}-${n}.txt`);
}
