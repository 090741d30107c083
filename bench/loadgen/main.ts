import { runConnectStorm, runIdle } from './connections.js';
import { runFlow } from './flow.js';
import type { Job, JobResult, LoadgenMessage, OrchestratorMessage } from './jobs.js';
import { runLatency } from './latency.js';
import { BROKER_PID_VARIABLE, windowReading } from '../proc.js';

/**
 * The load generator process: pinned by the orchestrator to its own core, it runs one job and exits. It is a
 * separate process so that its CPU time is its own and never competes inside the broker's event loop.
 */
function send(message: LoadgenMessage): void {
  process.send?.(message);
}

const brokerPidText = process.env[BROKER_PID_VARIABLE];
const brokerPid = brokerPidText ? Number(brokerPidText) : undefined;

let release: (() => void) | undefined;

async function runJob(job: Job): Promise<JobResult> {
  const mark = (phase: 'window-start' | 'window-end'): void =>
    send({ type: 'mark', phase, reading: windowReading(brokerPid, process.pid) });
  switch (job.kind) {
    case 'flow':
      return runFlow(job, mark);
    case 'latency':
      return runLatency(job, mark);
    case 'idle':
      return runIdle(job, mark, (connected) => {
        send({ type: 'held', connected });
        return new Promise<void>((resolve) => (release = resolve));
      });
    case 'connect-storm':
      return runConnectStorm(job, mark);
  }
}

process.on('message', (raw: unknown) => {
  const message = raw as OrchestratorMessage;
  if (message.type === 'release') {
    release?.();
    return;
  }
  runJob(message.job).then(
    (result) => {
      send({ type: 'result', result });
      process.disconnect?.();
    },
    (error: unknown) => {
      send({ type: 'error', message: error instanceof Error ? error.message : String(error) });
      process.disconnect?.();
    },
  );
});
