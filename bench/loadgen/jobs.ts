/** What the orchestrator asks of the load generator process, and what it answers (over the IPC channel). */

export interface FlowJob {
  kind: 'flow';
  port: number;
  publishers: number;
  subscribers: number;
  /** `fanin`: every subscriber takes `prefix/+`; `fanout`: every subscriber takes the one publisher's topic. */
  shape: 'fanin' | 'fanout';
  qos: 0 | 1 | 2;
  payloadBytes: number;
  /** Messages a publisher may have sent but not yet seen delivered to every subscriber (end-to-end window). */
  window: number;
  /** Unacknowledged QoS 1/2 PUBLISH per publisher connection (protocol in-flight window). */
  inflight: number;
  warmupMs: number;
  durationMs: number;
  /** Give up waiting for outstanding deliveries after this long without progress. */
  drainMs: number;
  credentials?: { username: string; password: string };
  /** Subscribers use persistent sessions, so every message is journaled (durability scenarios). */
  persistentSubscribers?: boolean;
}

export interface LatencyJob {
  kind: 'latency';
  port: number;
  rate: number;
  payloadBytes: number;
  inflight: number;
  warmupMs: number;
  durationMs: number;
  drainMs: number;
  /**
   * How the C load generator waits between sends and deliveries: `poll` keeps its core busy so that its own
   * wake-ups stay out of the samples (only when it has a core to itself); `sleep` waits on a timer and epoll. The
   * Node load generator always sleeps.
   */
  wait: LatencyWait;
  /**
   * More brokers measured in the same window (C load generator only): the schedule is dealt out to `port` and
   * these in turns of `blockMs`, each with its own publisher and subscriber; the result has one entry per port in
   * `targets`.
   */
  otherPorts?: number[];
  /** How long each broker has the schedule before the next takes it; default 2 (only with `otherPorts`). */
  blockMs?: number;
  /**
   * The C load generator writes every latency of the window here, in milliseconds, in the order they arrived: one
   * file per port, in the order `port`, then `otherPorts`.
   */
  samplesFiles?: string[];
}

export type LatencyWait = 'poll' | 'sleep';

export interface IdleJob {
  kind: 'idle';
  port: number;
  connections: number;
  concurrency: number;
}

export interface ConnectStormJob {
  kind: 'connect-storm';
  port: number;
  durationMs: number;
  concurrency: number;
  /** Known clients reconnecting: connection k uses credentials[k % length]. Empty: anonymous. */
  credentials: { username: string; password: string }[];
}

export type Job = FlowJob | LatencyJob | IdleJob | ConnectStormJob;

export interface FlowResult {
  kind: 'flow';
  sent: number;
  /** Deliveries expected: sent × subscribers. */
  expected: number;
  received: number;
  lost: number;
  duplicates: number;
  windowMs: number;
  windowReceived: number;
  /** Deliveries per second in the measurement window. */
  rate: number;
  loadgenCpu: number;
  errors: string[];
}

/** What a latency run measured: over all its brokers, and with one broker that broker's percentiles too. */
export interface LatencyResult extends Omit<LatencyTarget, 'port'> {
  kind: 'latency';
  /** How late the load generator sent (p99, against the schedule); the C load generator reports it. */
  sendLateP99Ms?: number;
  /**
   * The shortest and longest gap between two scheduled sends in the window; the C load generator reports them. It
   * sends each message at a pseudo-random point in the first half of its slot, so they are about half and one and
   * a half intervals rather than one.
   */
  scheduleGapMinMs?: number;
  scheduleGapMaxMs?: number;
  /** How the C load generator waited; absent from the Node one, which sleeps. */
  wait?: LatencyWait;
  /** Each port's own figures, in the job's order (C load generator); `p50Ms`... above are set for one port only. */
  targets?: LatencyTarget[];
  /** The turns' length, when several brokers took turns. */
  blockMs?: number;
  loadgenCpu: number;
  errors: string[];
}

/** One broker's share of a latency run (a message sent but never delivered counts as lost). */
export interface LatencyTarget {
  port: number;
  sent: number;
  received: number;
  lost: number;
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
  samples: number;
  /**
   * Messages of the window left out of the samples because the slot before went to another broker (they meet
   * caches that broker's turn filled, which a broker alone never does); absent or 0 with one broker.
   */
  afterSwitch?: number;
}

export interface IdleResult {
  kind: 'idle';
  requested: number;
  connected: number;
  failed: number;
  connectMs: number;
  connectRate: number;
  loadgenCpu: number;
  errors: string[];
}

export interface ConnectStormResult {
  kind: 'connect-storm';
  accepted: number;
  refused: number;
  failed: number;
  rate: number;
  loadgenCpu: number;
  errors: string[];
}

export type JobResult = FlowResult | LatencyResult | IdleResult | ConnectStormResult;

/**
 * What the load generator read at one edge of its measurement window, at that instant: the orchestrator handles a
 * mark when its own event loop gets to it, which on a busy machine can be after the whole window (a 500-connect
 * burst takes 40 ms), so readings it took itself would miss the broker's work. Times are in milliseconds; `atMs`
 * is on the load generator's own monotonic clock, so only differences between its readings mean anything. A
 * reading it could not take is absent.
 */
export interface WindowReading {
  atMs: number;
  /** All the broker's threads' time on a CPU. */
  brokerCpuMs?: number;
  /** Time the broker's and the load generator's main threads were runnable but waited for a CPU. */
  brokerWaitMs?: number;
  loadgenWaitMs?: number;
}

/** Load generator → orchestrator. `mark` gives the orchestrator the broker's CPU over the same window. */
export type LoadgenMessage =
  | { type: 'mark'; phase: 'window-start' | 'window-end'; reading: WindowReading }
  | { type: 'held'; connected: number }
  | { type: 'result'; result: JobResult }
  | { type: 'error'; message: string };

/** Orchestrator → load generator. */
export type OrchestratorMessage = { type: 'job'; job: Job } | { type: 'release' };
