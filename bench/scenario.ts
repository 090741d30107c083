import type { BrokerKind } from './brokers.js';
import type { ExternalBroker } from './external-broker.js';
import type { Credential } from './fixtures.js';
import type { LatencyWait } from './loadgen/jobs.js';

/** One number a scenario reports, and how to read it. */
export interface MetricSpec {
  key: string;
  label: string;
  unit: string;
  better: 'higher' | 'lower';
  /** The Mosquitto (and aedes) metric this one is compared with (default: the same key). */
  compareTo?: string;
  /** Without a Mosquitto counterpart: compare with this metric of the same broker (e.g. the plain run). */
  baselineKey?: string;
  /** Format with decimals (latencies) instead of as an integer. */
  decimals?: number;
}

/** What one run of a scenario on one broker produced. */
export interface Measurement {
  metrics: Record<string, number>;
  /** Messages (or deliveries) sent but never received; zero is the target. */
  lost: number;
  duplicates: number;
  /** Why a metric (or the whole scenario) has no value: "skipped: <reason>". */
  notes: string[];
  loadgenCpu?: number;
  brokerCpu?: number;
  /** Share of the window the broker / load generator were runnable but waited for a CPU (other load). */
  brokerWait?: number;
  loadgenWait?: number;
  skipped?: string;
  error?: string;
}

export interface Durations {
  warmupMs: number;
  durationMs: number;
  drainMs: number;
}

export interface BenchContext {
  repoRoot: string;
  /** Every broker of this run, Bulwark first (a scenario that measures them together starts them itself). */
  brokers: readonly BrokerKind[];
  workDir: string;
  brokerCpu: string | undefined;
  loadgenCpu: string | undefined;
  /** How the latency scenario's C load generator waits (`poll` only when it has a core of its own). */
  latencyWait: LatencyWait;
  /** Where each latency run's samples are kept, when asked (`<broker>-<n>.txt`, n counting that broker's runs). */
  latencySamplesDir: string | undefined;
  /** `nice -n` for brokers and load generator (same for both brokers), or undefined. */
  nice: number | undefined;
  durations: Durations;
  quick: boolean;
  big: boolean;
  credentials: Credential[];
  /** Directory for `node --cpu-prof` output of every Bulwark process, when profiling. */
  cpuProfileDir: string | undefined;
  /** The C load generator built for this run, when a compiler was there (idle, storm and latency jobs). */
  nativeLoadgen: string | undefined;
  /** Extra `node` options for every Bulwark process. */
  nodeOptions: string[];
  /** Where each Bulwark process's output is kept, when asked. */
  brokerOutputDir: string | undefined;
  /** Fresh directory per broker start. */
  nextDir(label: string): string;
  nextPort(): Promise<number>;
  /** Fixed port for Mosquitto (`--against mosquitto:PORT`); otherwise a free one per start. */
  mosquittoPort: number | undefined;
  /** Fixed port for aedes (`--against aedes:PORT`); otherwise a free one per start. */
  aedesPort: number | undefined;
  /** The running broker of `--against external:PORT`, as checked before the first round. */
  external: ExternalBroker | undefined;
  /** Feature detections remembered across rounds (which configuration shape works, or why none does). */
  memo: Map<string, unknown>;
  log(line: string): void;
}

export interface Scenario {
  name: string;
  description: string;
  metrics: MetricSpec[];
  /** Brokers the scenario applies to; others show "n/a". */
  brokers: readonly BrokerKind[];
  run(broker: BrokerKind, ctx: BenchContext): Promise<Measurement>;
}

export function emptyMeasurement(): Measurement {
  return { metrics: {}, lost: 0, duplicates: 0, notes: [] };
}
