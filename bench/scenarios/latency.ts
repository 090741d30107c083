import { absorbCpu, loadgen, rotatedPerRound, saturationNote, startBroker, withBroker } from '../harness.js';
import { join } from 'node:path';
import type { BrokerHandle, BrokerKind } from '../brokers.js';
import type { LoadgenRun } from '../loadgen-process.js';
import type { LatencyJob, LatencyResult, LatencyTarget } from '../loadgen/jobs.js';
import { emptyMeasurement, type BenchContext, type Measurement, type MetricSpec, type Scenario } from '../scenario.js';

export const RATE = 5000;

/**
 * How long each broker has the schedule in `latency-qos1-paired` before the next one takes it. The tail on these
 * virtual machines is made of stall episodes of 5–20 ms in which every message is late; two Mosquittos measured
 * against each other in turns of 100 ms still differed by up to 5× at p99 (an episode fell into one's turn or the
 * other's), in turns of 10 ms by up to 1.5×, in turns of 2 ms by 0.85–1.11× (docs/performance.md, session 24).
 * Shorter turns would share the episodes still better, but each broker's trailing work (a scavenge started by the
 * last message of its turn) would run into the next broker's turn more often.
 */
export const PAIRED_BLOCK_MS = 2;

const METRICS: MetricSpec[] = [
  { key: 'p50Ms', label: 'p50', unit: 'ms', better: 'lower', decimals: 3 },
  { key: 'p99Ms', label: 'p99', unit: 'ms', better: 'lower', decimals: 3 },
  { key: 'maxMs', label: 'max', unit: 'ms', better: 'lower', decimals: 3 },
];

function latencyJob(ctx: BenchContext, port: number): LatencyJob {
  return { kind: 'latency', port, rate: RATE, payloadBytes: 64, inflight: 64, wait: ctx.latencyWait, ...ctx.durations };
}

export const latencyScenario: Scenario = {
  name: 'latency-qos1',
  description: `QoS 1 end-to-end latency, 1 publisher → 1 subscriber at a fixed ${RATE} msg/s`,
  brokers: ['bulwark', 'mosquitto', 'aedes', 'external'],
  metrics: METRICS,
  run: (kind, ctx) =>
    withBroker(kind, ctx, {}, async (broker) => {
      const samplesFile = latencySamplesFile(kind, ctx);
      const job = {
        ...latencyJob(ctx, broker.port),
        ...(samplesFile !== undefined ? { samplesFiles: [samplesFile] } : {}),
      };
      const run = await loadgen(job, ctx, broker);
      if (run.error || !run.result || run.result.kind !== 'latency')
        return { ...emptyMeasurement(), error: run.error ?? 'no result' };
      const m = targetMeasurement(run.result, run.result);
      absorbCpu(m, run);
      return m;
    }),
};

/** Results of the round's paired run that the other brokers' turns of this round have not collected yet. */
const PENDING = 'latency-paired-pending';

/**
 * The latency scenario with every broker of the run listening at once and one load generator dealing the schedule
 * out to them in turns of `PAIRED_BLOCK_MS`. Measured one after the other, each broker met its own spells of this
 * shared machine's noise, and a broker's p99 moved by 5× from one of its windows to the next; taking turns every
 * 2 ms, two brokers meet the same spells, and a Mosquitto against another Mosquitto read 0.85–1.11× at p99 (but
 * 0.57–0.66× in windows with stalls of several milliseconds, longer than a turn). Each
 * broker still sees the scenario's rate while it has the schedule (messages at the same spacing) and half of it
 * on average; the window is as many times longer as there are brokers, so each gets as many messages. The first
 * message after another broker's turn is not sampled (it meets that broker's caches; see loadgen.c).
 *
 * The harness asks each broker for its measurement in turn: the round's first turn runs the paired window for all
 * of them, the others collect their share.
 */
export const pairedLatencyScenario: Scenario = {
  name: 'latency-qos1-paired',
  description: `QoS 1 end-to-end latency at ${RATE} msg/s, every broker measured in the same window, taking turns every ${PAIRED_BLOCK_MS} ms`,
  brokers: ['bulwark', 'mosquitto', 'aedes', 'external'],
  metrics: METRICS,
  run: async (kind, ctx) => {
    const pending = ctx.memo.get(PENDING) as Map<BrokerKind, Measurement> | undefined;
    const collected = pending?.get(kind);
    if (collected !== undefined) {
      pending?.delete(kind);
      return collected;
    }
    const kinds = ctx.brokers.filter((b) => pairedLatencyScenario.brokers.includes(b));
    if (kinds.length < 2)
      return {
        ...emptyMeasurement(),
        skipped: 'needs a broker to compare with (--against mosquitto, aedes or external)',
      };
    if (ctx.nativeLoadgen === undefined)
      return {
        ...emptyMeasurement(),
        skipped: 'needs the C load generator (the Node one measures one broker at a time)',
      };
    const results = await measurePaired(rotatedPerRound(ctx, 'latency-paired-order', kinds), ctx);
    const mine = results.get(kind) ?? { ...emptyMeasurement(), error: 'not measured' };
    results.delete(kind);
    ctx.memo.set(PENDING, results);
    return mine;
  },
};

/** Starts every broker, runs one load generator against all of them, stops them; one measurement per broker. */
async function measurePaired(kinds: readonly BrokerKind[], ctx: BenchContext): Promise<Map<BrokerKind, Measurement>> {
  const started: BrokerHandle[] = [];
  const failed = (error: string): Map<BrokerKind, Measurement> =>
    new Map(kinds.map((k) => [k, { ...emptyMeasurement(), error }]));
  try {
    for (const kind of kinds) {
      const outcome = await startBroker(kind, ctx);
      if (!outcome.ok) return failed(`${kind} did not start: ${outcome.reason}`);
      started.push(outcome.broker);
    }
    const n = kinds.length;
    const samplesFiles = kinds.map((kind) => latencySamplesFile(kind, ctx, 'paired-'));
    const [first, ...others] = started as [BrokerHandle, ...BrokerHandle[]];
    const job: LatencyJob = {
      ...latencyJob(ctx, first.port),
      otherPorts: others.map((b) => b.port),
      blockMs: PAIRED_BLOCK_MS,
      warmupMs: ctx.durations.warmupMs * n,
      durationMs: ctx.durations.durationMs * n,
      ...(samplesFiles.every((f) => f !== undefined) ? { samplesFiles: samplesFiles as string[] } : {}),
    };
    // No broker's process is named: its CPU over a window it shares with the others would not be its own.
    const run: LoadgenRun = await loadgen(job, ctx, { ...first, pid: undefined });
    const result = run.result;
    if (run.error || !result || result.kind !== 'latency' || result.targets?.length !== n)
      return failed(run.error ?? 'no result for every broker');
    const order = `turns of ${result.blockMs ?? PAIRED_BLOCK_MS} ms, ${kinds.join(' ')}`;
    return new Map(
      kinds.map((kind, i) => {
        const m = targetMeasurement(result, result.targets?.[i] as LatencyTarget);
        m.notes.push(order);
        return [kind, m];
      }),
    );
  } finally {
    for (const broker of started) await broker.stop();
  }
}

/** One broker's measurement from a latency run: its own percentiles and losses, the run's schedule notes. */
function targetMeasurement(run: LatencyResult, own: LatencyTarget | LatencyResult): Measurement {
  const m = emptyMeasurement();
  if (own.p50Ms !== undefined) m.metrics.p50Ms = own.p50Ms;
  if (own.p99Ms !== undefined) m.metrics.p99Ms = own.p99Ms;
  if (own.maxMs !== undefined) m.metrics.maxMs = own.maxMs;
  m.lost = own.lost;
  m.loadgenCpu = run.loadgenCpu;
  const late = run.sendLateP99Ms === undefined ? '' : `; sent p99 ${run.sendLateP99Ms.toFixed(3)} ms after schedule`;
  const gaps =
    run.scheduleGapMinMs === undefined || run.scheduleGapMaxMs === undefined
      ? ''
      : `; ${run.scheduleGapMinMs.toFixed(3)}–${run.scheduleGapMaxMs.toFixed(3)} ms between scheduled sends`;
  // A polling load generator keeps its core busy by design: that is not saturation.
  const waited = run.wait === 'poll' ? '; load generator polled' : run.wait === 'sleep' ? '; load generator slept' : '';
  const saturated = run.wait === 'poll' ? [] : saturationNote(run.loadgenCpu);
  const skipped = own.afterSwitch ? ` (and ${own.afterSwitch} first messages of a turn, not sampled)` : '';
  m.notes.push(`${own.samples} samples${skipped}${late}${gaps}${waited}`, ...saturated, ...run.errors);
  return m;
}

/**
 * `<prefix><broker>-<n>.txt` in the samples directory, n counting this broker's runs of the scenario; only the C
 * load generator writes it.
 */
function latencySamplesFile(kind: BrokerKind, ctx: BenchContext, prefix = ''): string | undefined {
  if (ctx.latencySamplesDir === undefined || ctx.nativeLoadgen === undefined) return undefined;
  const key = `latency-samples-${prefix}${kind}`;
  const n = ((ctx.memo.get(key) as number | undefined) ?? 0) + 1;
  ctx.memo.set(key, n);
  return join(ctx.latencySamplesDir, `${prefix}${kind}-${n}.txt`);
}
