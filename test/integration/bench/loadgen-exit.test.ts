import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runLoadgen } from '../../../bench/loadgen-process.js';

const repoRoot = resolve(import.meta.dirname, '../../..');

describe('a load generator that has exited', () => {
  const dir = mkdtempSync(join(tmpdir(), 'loadgen-exit-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /**
   * On a busy machine the orchestrator saw the C load generator's exit before it had read the result line the
   * process wrote just before exiting, and reported "exited with code 0" instead of the result. Here the result
   * comes certainly later than the exit: the process that was started leaves it to a child still holding its
   * output, so the output ends only when that child is done.
   */
  it('still has its last output read before the run is judged', async () => {
    const result = {
      type: 'result',
      result: {
        kind: 'idle',
        requested: 1,
        connected: 1,
        failed: 0,
        connectMs: 1,
        connectRate: 1000,
        loadgenCpu: 0,
        errors: [],
      },
    };
    const script = join(dir, 'loadgen');
    writeFileSync(script, `#!/bin/sh\n(sleep 0.3; echo '${JSON.stringify(result)}') &\nexit 0\n`);
    chmodSync(script, 0o755);
    const run = await runLoadgen(
      { kind: 'idle', port: 1, connections: 1, concurrency: 1 },
      { repoRoot, cpu: undefined, nice: undefined, brokerPid: process.pid, timeoutMs: 10_000, nativeBinary: script },
    );
    expect(run.error).toBeUndefined();
    expect(run.result).toEqual(result.result);
  });
});
