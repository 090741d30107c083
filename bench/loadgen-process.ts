import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Job, JobResult, LoadgenMessage, OrchestratorMessage, WindowReading } from './loadgen/jobs.js';
import { withPlacement } from './brokers.js';
import { BROKER_PID_VARIABLE } from './proc.js';

export interface LoadgenRun {
  result?: JobResult;
  error?: string;
  /** Broker CPU over the load generator's measurement window, as a fraction of one core. */
  brokerCpu?: number;
  /** Share of the window the broker's and the load generator's threads waited for a CPU (other load). */
  brokerWait?: number;
  loadgenWait?: number;
}

export interface LoadgenOptions {
  repoRoot: string;
  /** `taskset -c` core list for the load generator. */
  cpu: string | undefined;
  nice: number | undefined;
  /** Whose CPU the load generator reads at its window marks; without one the run has no broker CPU. */
  brokerPid?: number;
  /** Idle-connection jobs: called while the connections are held; resolves when they may be closed. */
  onHeld?: (connected: number) => Promise<void>;
  timeoutMs: number;
  /**
   * The C load generator, for idle, connect-storm and latency jobs (the Node one saturates its core below what
   * Mosquitto accepts, and its millisecond timers cannot keep a schedule of 5,000 msg/s). It speaks the same
   * messages as JSON lines on stdout and stdin.
   */
  nativeBinary?: string;
}

/** Runs one job in a fresh load-generator process (pinned to its own core) and collects its result. */
export function runLoadgen(job: Job, o: LoadgenOptions): Promise<LoadgenRun> {
  const native =
    o.nativeBinary !== undefined && (job.kind === 'idle' || job.kind === 'connect-storm' || job.kind === 'latency');
  const command = native
    ? [o.nativeBinary as string, ...nativeArguments(job)]
    : [process.execPath, join(o.repoRoot, 'dist/bench/loadgen/main.js')];
  const argv = withPlacement(command, { cpu: o.cpu, nice: o.nice });
  const child = spawn('sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', ...argv], {
    env: { ...process.env, [BROKER_PID_VARIABLE]: o.brokerPid === undefined ? '' : String(o.brokerPid) },
    stdio: native ? ['pipe', 'pipe', 'inherit'] : ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const channel = native ? lineChannel(child) : ipcChannel(child);
  return new Promise((resolve) => {
    const run: LoadgenRun = {};
    let windowStart: WindowReading | undefined;
    let settled = false;
    const finish = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (child.exitCode === null) child.kill('SIGKILL');
      resolve(run);
    };
    const timer = setTimeout(() => {
      run.error = `load generator timed out after ${Math.round(o.timeoutMs / 1000)} s`;
      finish();
    }, o.timeoutMs);
    channel.onMessage((m) => {
      switch (m.type) {
        case 'mark':
          if (m.phase === 'window-start') windowStart = m.reading;
          else if (windowStart) Object.assign(run, windowShares(windowStart, m.reading));
          break;
        case 'held':
          void (o.onHeld ?? (() => Promise.resolve()))(m.connected).then(() => channel.send({ type: 'release' }));
          break;
        case 'result':
          run.result = m.result;
          finish();
          break;
        case 'error':
          run.error = m.message;
          finish();
          break;
      }
    });
    // 'close', not 'exit': a process that wrote its result and exited may be reaped before this event loop has
    // read the last lines of its output (as happens when the orchestrator was busy while the job ran).
    child.once('close', (code) => {
      if (!run.result && !run.error) run.error = `load generator exited with code ${code}`;
      finish();
    });
    // The native load generator takes its job on the command line.
    if (!native) child.once('spawn', () => channel.send({ type: 'job', job }));
  });
}

interface Channel {
  onMessage(handler: (m: LoadgenMessage) => void): void;
  send(message: OrchestratorMessage): void;
}

function ipcChannel(child: ChildProcess): Channel {
  return {
    onMessage: (handler) => child.on('message', (raw: unknown) => handler(raw as LoadgenMessage)),
    send: (message) => child.send(message),
  };
}

/** The same messages as JSON lines; a line that is not one becomes an error message. */
function lineChannel(child: ChildProcess): Channel {
  return {
    onMessage: (handler) => {
      const lines = createInterface({ input: child.stdout! });
      lines.on('line', (line) => {
        try {
          handler(JSON.parse(line) as LoadgenMessage);
        } catch {
          handler({ type: 'error', message: `load generator wrote: ${line.slice(0, 200)}` });
        }
      });
    },
    send: (message) => {
      child.stdin?.write(`${JSON.stringify(message)}\n`);
    },
  };
}

type WindowShares = Pick<LoadgenRun, 'brokerCpu' | 'brokerWait' | 'loadgenWait'>;

/** The broker's CPU and both sides' run-queue waits over a window, as shares of its length; what was not read is absent. */
export function windowShares(start: WindowReading, end: WindowReading): WindowShares {
  const shares: WindowShares = {};
  const wall = end.atMs - start.atMs;
  if (!(wall > 0)) return shares;
  const readings = [
    ['brokerCpu', 'brokerCpuMs'],
    ['brokerWait', 'brokerWaitMs'],
    ['loadgenWait', 'loadgenWaitMs'],
  ] as const;
  for (const [share, reading] of readings) {
    const [from, to] = [start[reading], end[reading]];
    if (from !== undefined && to !== undefined) shares[share] = (to - from) / wall;
  }
  return shares;
}

function nativeArguments(job: Job): string[] {
  switch (job.kind) {
    case 'idle':
      return ['idle', String(job.port), String(job.connections), String(job.concurrency)];
    case 'connect-storm':
      return [
        'storm',
        String(job.port),
        String(job.durationMs),
        String(job.concurrency),
        ...job.credentials.flatMap((c) => [c.username, c.password]),
      ];
    case 'latency':
      return [
        'latency',
        [job.port, ...(job.otherPorts ?? [])].join(','),
        String(job.rate),
        String(job.payloadBytes),
        String(job.inflight),
        String(job.warmupMs),
        String(job.durationMs),
        String(job.drainMs),
        job.wait,
        String(job.blockMs ?? 2),
        ...(job.samplesFiles ?? []),
      ];
    default:
      throw new Error(`the native load generator does not run ${job.kind} jobs`);
  }
}
