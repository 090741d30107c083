import { basename, join } from 'node:path';
import {
  startAedes,
  startBulwark,
  startMosquitto,
  type AnonymousStyle,
  type BrokerHandle,
  type BrokerKind,
  type StartOutcome,
} from './brokers.js';
import { attachExternal } from './external-broker.js';
import { runLoadgen, type LoadgenRun } from './loadgen-process.js';
import type { Job } from './loadgen/jobs.js';
import type { BenchContext, Measurement, MetricSpec } from './scenario.js';
import { emptyMeasurement } from './scenario.js';

export interface BrokerVariant {
  /** Merged over the Bulwark base configuration. */
  bulwark?: Record<string, unknown>;
  /** Bulwark listener's `anonymous` flag; default true. */
  anonymous?: boolean;
  /** A Mosquitto password file (PBKDF2-SHA512): Mosquitto reads it, and so does the aedes launcher. */
  mosquittoPasswordFile?: string;
}

export async function startBroker(
  kind: BrokerKind,
  ctx: BenchContext,
  variant: BrokerVariant = {},
): Promise<StartOutcome> {
  if (kind === 'external')
    return ctx.external ? attachExternal(ctx.external) : { ok: false, reason: 'no --against external:PORT given' };
  const fixed = kind === 'mosquitto' ? ctx.mosquittoPort : kind === 'aedes' ? ctx.aedesPort : undefined;
  const port = fixed ?? (await ctx.nextPort());
  const dir = ctx.nextDir(kind);
  const placement = { cpu: ctx.brokerCpu, nice: ctx.nice };
  if (kind === 'bulwark') {
    // The anonymous flag moved from the listener to the chain; a build that refuses one shape gets the other.
    const known = ctx.memo.get('anonymous-style') as AnonymousStyle | undefined;
    let outcome: StartOutcome = { ok: false, reason: 'not started' };
    for (const style of known ? [known] : (['chain', 'listener'] as const)) {
      outcome = await startBulwark({
        repoRoot: ctx.repoRoot,
        dir,
        port,
        config: variant.bulwark ?? {},
        ...(variant.anonymous !== undefined ? { anonymous: variant.anonymous } : {}),
        anonymousStyle: style,
        placement,
        ...(ctx.cpuProfileDir ? { cpuProfileDir: ctx.cpuProfileDir } : {}),
        nodeOptions: ctx.nodeOptions,
        ...(ctx.brokerOutputDir ? { outputFile: join(ctx.brokerOutputDir, `${basename(dir)}.log`) } : {}),
      });
      if (outcome.ok || !/invalid configuration.*authentication/.test(outcome.reason)) {
        if (outcome.ok && !variant.bulwark?.authentication) ctx.memo.set('anonymous-style', style);
        break;
      }
    }
    return outcome;
  }
  if (kind === 'aedes')
    return startAedes({
      repoRoot: ctx.repoRoot,
      dir,
      port,
      placement,
      ...(variant.mosquittoPasswordFile ? { passwordFile: variant.mosquittoPasswordFile } : {}),
    });
  return startMosquitto({
    dir,
    port,
    placement,
    ...(variant.mosquittoPasswordFile ? { passwordFile: variant.mosquittoPasswordFile } : {}),
  });
}

/** Starts a broker, runs `body`, always stops the broker; a start failure becomes an error measurement. */
export async function withBroker(
  kind: BrokerKind,
  ctx: BenchContext,
  variant: BrokerVariant,
  body: (broker: BrokerHandle) => Promise<Measurement>,
): Promise<Measurement> {
  const started = await startBroker(kind, ctx, variant);
  if (!started.ok) return { ...emptyMeasurement(), error: started.reason };
  try {
    return await body(started.broker);
  } finally {
    await started.broker.stop();
  }
}

/** Time a job may take before the load generator is considered hung. */
export function jobTimeoutMs(ctx: BenchContext): number {
  const d = ctx.durations;
  return d.warmupMs + d.durationMs + d.drainMs + 120_000;
}

export function loadgen(
  job: Job,
  ctx: BenchContext,
  broker: BrokerHandle,
  onHeld?: (n: number) => Promise<void>,
): Promise<LoadgenRun> {
  return runLoadgen(job, {
    repoRoot: ctx.repoRoot,
    cpu: ctx.loadgenCpu,
    nice: ctx.nice,
    ...(broker.pid !== undefined ? { brokerPid: broker.pid } : {}),
    timeoutMs: jobTimeoutMs(ctx),
    ...(onHeld ? { onHeld } : {}),
    ...(ctx.nativeLoadgen ? { nativeBinary: ctx.nativeLoadgen } : {}),
  });
}

/** Load generators above this share of their core may be what limits the number (reported, not hidden). */
export const SATURATED = 0.9;

export function saturationNote(loadgenCpu: number | undefined): string[] {
  return loadgenCpu !== undefined && loadgenCpu >= SATURATED
    ? [`load generator saturated its core (${Math.round(loadgenCpu * 100)}% CPU): the number is a lower bound`]
    : [];
}

/**
 * `items` rotated by one more place on every call with the same `key` (per run, through `ctx.memo`): variants of
 * one broker start in a different order each round, so the machine slowing down or speeding up over a round does
 * not always favour the same one.
 */
export function rotatedPerRound<T>(ctx: BenchContext, key: string, items: readonly T[]): T[] {
  const turn = (ctx.memo.get(key) as number | undefined) ?? 0;
  ctx.memo.set(key, turn + 1);
  return rotated(items, turn);
}

/**
 * The order brokers run a scenario in, in round `round` (from 1): rotated a place each round, so over as many rounds
 * as there are brokers each runs in every place once. Alternating forward and reversed, as before, never put the
 * middle one of three first or last, so whatever a place costs or gives (coming right after another scenario's
 * runs, say) never fell on it.
 */
export function brokerOrder<T>(brokers: readonly T[], round: number): T[] {
  return rotated(brokers, round - 1);
}

/** `items` rotated left by `turn` places (modulo their number). */
export function rotated<T>(items: readonly T[], turn: number): T[] {
  const start = items.length === 0 ? 0 : turn % items.length;
  return [...items.slice(start), ...items.slice(0, start)];
}

/** Below this share of its core neither a broker nor a load generator limits a run that should saturate one. */
export const IDLE = 0.6;

/**
 * A connect run is meant to saturate the broker or the load generator. When neither was busy something else set the
 * pace: in some Mosquitto rounds both sat at 30–40% while the rate fell to a third (the kernel's handling of the
 * previous run's closed connections, or other load). Said in the notes, so a reader weighs that round accordingly.
 */
export function unsaturatedNote(brokerCpu: number | undefined, loadgenCpu: number | undefined): string[] {
  return brokerCpu !== undefined && loadgenCpu !== undefined && brokerCpu < IDLE && loadgenCpu < IDLE
    ? [
        `neither the broker (${Math.round(brokerCpu * 100)}% CPU) nor the load generator (${Math.round(loadgenCpu * 100)}%) was busy: something outside both limited this round`,
      ]
    : [];
}

export interface Candidate {
  /** How this configuration shape is described in a skip message. */
  label: string;
  variant: BrokerVariant;
}

/**
 * Features that are still being wired are detected by trying: each candidate configuration is started and
 * checked (`check` answers undefined when the feature is in effect, or why not). The first that works is used
 * and remembered under `memoKey` for later rounds; when none does, the scenario is skipped with the reasons.
 */
export async function withFirstWorking(
  kind: BrokerKind,
  ctx: BenchContext,
  memoKey: string,
  candidates: readonly Candidate[],
  check: (broker: BrokerHandle) => Promise<string | undefined>,
  body: (broker: BrokerHandle) => Promise<Measurement>,
): Promise<Measurement> {
  const known = ctx.memo.get(memoKey);
  if (typeof known === 'string') return { ...emptyMeasurement(), skipped: known };
  const order = typeof known === 'number' ? [known] : candidates.map((_, i) => i);
  const reasons: string[] = [];
  for (const i of order) {
    const candidate = candidates[i] as Candidate;
    const started = await startBroker(kind, ctx, candidate.variant);
    if (!started.ok) {
      reasons.push(`${candidate.label}: ${started.reason}`);
      continue;
    }
    try {
      const failure = await check(started.broker);
      if (failure) {
        reasons.push(`${candidate.label}: ${failure}`);
        continue;
      }
      ctx.memo.set(memoKey, i);
      return await body(started.broker);
    } finally {
      await started.broker.stop();
    }
  }
  const short = reasons.map((r) => (r.length > 200 ? `${r.slice(0, 197)}...` : r));
  const reason = `not available in this build (${short.join('; ')})`;
  ctx.memo.set(memoKey, reason);
  return { ...emptyMeasurement(), skipped: reason };
}

/** Copies the CPU accounting of a load-generator run into a measurement (the table shows the waits). */
export function absorbCpu(into: Measurement, run: LoadgenRun): void {
  if (run.brokerCpu !== undefined) into.brokerCpu = run.brokerCpu;
  if (run.brokerWait !== undefined) into.brokerWait = run.brokerWait;
  if (run.loadgenWait !== undefined) into.loadgenWait = run.loadgenWait;
}

/**
 * Broker CPU time per message, in microseconds. Throughput alone moved ±25% between broker starts on a shared
 * machine (a window where the broker waits for its core delivers less), so variants of one broker are compared by
 * what each message cost: the CPU the broker used in the window over the messages it carried.
 */
export function cpuPerMessageUs(rate: number, brokerCpu: number | undefined): number | undefined {
  return brokerCpu !== undefined && brokerCpu > 0 && rate > 0 ? (brokerCpu * 1e6) / rate : undefined;
}

/** A broker-CPU-per-connect metric (µs, lower is better), optionally compared with another broker's own key. */
export function cpuPerConnectMetric(key: string, label: string, compareTo?: string): MetricSpec {
  return { key, label, unit: 'µs', better: 'lower', decimals: 1, ...(compareTo ? { compareTo } : {}) };
}
