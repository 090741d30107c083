import type { BrokerHandle } from './brokers.js';
import { absorbCpu, loadgen, rotated, saturationNote } from './harness.js';
import type { BenchContext, Measurement } from './scenario.js';
import { flowJob, type FlowShape } from './scenarios/flow.js';

/** One configuration of a broker, already running, whose flow is reported under `key` (and `${key}CpuUs`). */
export interface RunningVariant {
  key: string;
  broker: BrokerHandle;
}

/** How many slices a window is cut into, and the shortest slice worth a load generator's start. */
const SLICES = 5;
const MIN_SLICE_MS = 1000;
/** A slice after the first meets a broker whose JIT is warm; it only needs its own connections to be flowing. */
const LATER_SLICE_WARMUP_MS = 500;

/** Slices of the measurement window: 5 of 1 s for the default 5 s window, one for `--quick`'s 1 s. */
function sliceCount(durationMs: number): number {
  return Math.max(1, Math.min(SLICES, Math.floor(durationMs / MIN_SLICE_MS)));
}

interface Totals {
  windowMs: number;
  received: number;
  brokerCpuMs: number;
  /** False once a slice had no CPU reading: a CPU per message over part of the window would mislead. */
  cpuComplete: boolean;
}

/**
 * Measures variants of one broker side by side: every variant's broker runs at once (idle ones cost nothing), and
 * the window is cut into slices run in turn, A B C, B C A, ... One variant after the other, each on its own start,
 * the same configuration's throughput moved ±15% from round to round, more than the 10% the authorization target
 * is about: this shared machine's other load comes and goes over seconds, and slices a second long put every
 * variant under the same load. What slicing cannot remove is each process's own luck (where the JIT and the
 * allocator put things): within one round the three still differed by up to 15%, from round to round in no fixed
 * order, so only rounds (new processes) average that out. Reports each variant's deliveries over its summed
 * windows and its CPU per delivery.
 */
export async function interleavedFlows(
  ctx: BenchContext,
  shape: FlowShape,
  variants: readonly RunningVariant[],
  into: Measurement,
): Promise<void> {
  const slices = sliceCount(ctx.durations.durationMs);
  const sliceMs = Math.round(ctx.durations.durationMs / slices);
  const totals = new Map<string, Totals>();
  for (const v of variants) totals.set(v.key, { windowMs: 0, received: 0, brokerCpuMs: 0, cpuComplete: true });
  const notes = new Set<string>();
  const orders: string[] = [];
  for (let slice = 0; slice < slices; slice++) {
    const order = rotated(variants, slice);
    orders.push(order.map((v) => v.key).join(' '));
    for (const variant of order) {
      const warmupMs = slice === 0 ? ctx.durations.warmupMs : Math.min(ctx.durations.warmupMs, LATER_SLICE_WARMUP_MS);
      const job = { ...flowJob(shape, variant.broker.port, ctx), warmupMs, durationMs: sliceMs };
      const run = await loadgen(job, ctx, variant.broker);
      const total = totals.get(variant.key) as Totals;
      if (run.error || !run.result || run.result.kind !== 'flow') {
        notes.add(`${variant.key}: ${run.error ?? 'no result'}`);
        total.cpuComplete = false;
        continue;
      }
      const r = run.result;
      total.windowMs += r.windowMs;
      total.received += r.windowReceived;
      if (run.brokerCpu === undefined) total.cpuComplete = false;
      else total.brokerCpuMs += run.brokerCpu * r.windowMs;
      into.lost += r.lost;
      into.duplicates += r.duplicates;
      into.loadgenCpu = Math.max(into.loadgenCpu ?? 0, r.loadgenCpu);
      absorbCpu(into, run);
      for (const note of [...saturationNote(r.loadgenCpu), ...r.errors.map((e) => `${variant.key}: ${e}`)])
        notes.add(note);
    }
  }
  for (const [key, total] of totals) {
    if (total.windowMs <= 0 || total.received <= 0) continue;
    into.metrics[key] = (total.received * 1000) / total.windowMs;
    if (total.cpuComplete) into.metrics[`${key}CpuUs`] = (total.brokerCpuMs * 1000) / total.received;
  }
  into.notes.push(`interleaved, ${slices} slice(s) of ${sliceMs} ms each: ${orders.join(' | ')}`, ...notes);
}
