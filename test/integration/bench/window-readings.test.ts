import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerHandle } from '../../../bench/brokers.js';
import { runLoadgen, type LoadgenRun } from '../../../bench/loadgen-process.js';
import { buildNativeLoadgen } from '../../../bench/native-loadgen.js';
import { repoRoot, startBenchBulwark } from '../../helpers/bench-bulwark.js';

/** Keeps this process's event loop from running for `ms`, as a busy machine does to the bench's orchestrator. */
function blockEventLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * The broker's CPU over a load generator's window is what the load generator read at its two marks. The
 * orchestrator handles a mark only when its event loop gets to it: on a loaded machine (the test suite's own
 * workers) it got both marks of a 500-connect burst together after the burst, read no CPU in between, and the
 * bench reported no CPU per connect. Here the orchestrator is held up for longer than the whole burst.
 */
describe('window readings', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-window-'));
  let broker: BrokerHandle;

  beforeAll(async () => {
    broker = await startBenchBulwark(dir);
  }, 60_000);

  afterAll(async () => {
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function lateOrchestrator(nativeBinary?: string): Promise<LoadgenRun> {
    const job = { kind: 'idle', port: broker.port, connections: 300, concurrency: 32 } as const;
    const run = runLoadgen(job, {
      repoRoot,
      cpu: undefined,
      nice: undefined,
      brokerPid: broker.pid,
      timeoutMs: 60_000,
      ...(nativeBinary ? { nativeBinary } : {}),
    });
    // The Node load generator's job goes out on the child's `spawn` event: let that be sent first.
    await new Promise((resolve) => setImmediate(resolve));
    blockEventLoop(3_000);
    return run;
  }

  /** A connect costs a broker some CPU, and less than the load generator's whole window per client. */
  function expectCpuPerConnect(run: LoadgenRun): void {
    expect(run.error).toBeUndefined();
    expect(run.result?.kind === 'idle' && run.result.connected).toBe(300);
    const perConnectUs = ((run.brokerCpu ?? 0) * 1e6) / (run.result?.kind === 'idle' ? run.result.connectRate : 1);
    expect(perConnectUs).toBeGreaterThan(1);
    expect(perConnectUs).toBeLessThan(1e6);
  }

  it('the C load generator reads the broker CPU at its marks, however late the orchestrator reads them', async () => {
    const native = buildNativeLoadgen(repoRoot, dir);
    if (!native.ok) throw new Error(`the C load generator did not build: ${native.reason}`);
    expectCpuPerConnect(await lateOrchestrator(native.binary));
  }, 60_000);

  it('so does the Node load generator', async () => {
    expectCpuPerConnect(await lateOrchestrator());
  }, 60_000);
});
