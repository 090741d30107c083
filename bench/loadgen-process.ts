import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Job, JobResult, LoadgenMessage, OrchestratorMessage } from './loadgen/jobs.js';
import { withPlacement } from './brokers.js';
import { processCpuMs, processRunQueueWaitMs } from './proc.js';

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
  brokerPid: number;
  /** Idle-connection jobs: called while the connections are held; resolves when they may be closed. */
  onHeld?: (connected: number) => Promise<void>;
  timeoutMs: number;
}

/** Runs one job in a fresh load-generator process (pinned to its own core) and collects its result. */
export function runLoadgen(job: Job, o: LoadgenOptions): Promise<LoadgenRun> {
  const script = join(o.repoRoot, 'dist/bench/loadgen/main.js');
  const argv = withPlacement([process.execPath, script], { cpu: o.cpu, nice: o.nice });
  const child = spawn('sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', ...argv], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve) => {
    const run: LoadgenRun = {};
    let windowStart:
      | { wall: number; cpu: number | undefined; brokerWait: number | undefined; loadgenWait: number | undefined }
      | undefined;
    const loadgenPid = child.pid as number;
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
    child.on('message', (raw: unknown) => {
      const m = raw as LoadgenMessage;
      switch (m.type) {
        case 'mark':
          if (m.phase === 'window-start')
            windowStart = {
              wall: performance.now(),
              cpu: processCpuMs(o.brokerPid),
              brokerWait: processRunQueueWaitMs(o.brokerPid),
              loadgenWait: processRunQueueWaitMs(loadgenPid),
            };
          else if (windowStart) {
            const wall = performance.now() - windowStart.wall;
            const cpu = processCpuMs(o.brokerPid);
            const brokerWait = processRunQueueWaitMs(o.brokerPid);
            const loadgenWait = processRunQueueWaitMs(loadgenPid);
            if (wall > 0) {
              if (cpu !== undefined && windowStart.cpu !== undefined) run.brokerCpu = (cpu - windowStart.cpu) / wall;
              if (brokerWait !== undefined && windowStart.brokerWait !== undefined)
                run.brokerWait = (brokerWait - windowStart.brokerWait) / wall;
              if (loadgenWait !== undefined && windowStart.loadgenWait !== undefined)
                run.loadgenWait = (loadgenWait - windowStart.loadgenWait) / wall;
            }
          }
          break;
        case 'held':
          void (o.onHeld ?? (() => Promise.resolve()))(m.connected).then(() => {
            const release: OrchestratorMessage = { type: 'release' };
            child.send(release);
          });
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
    child.once('exit', (code) => {
      if (!run.result && !run.error) run.error = `load generator exited with code ${code}`;
      finish();
    });
    child.once('spawn', () => {
      const message: OrchestratorMessage = { type: 'job', job };
      child.send(message);
    });
  });
}
