import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../../../audit/verify.js';
import { buildWriterForChild } from './child-build.js';
import { allTempDirs, auditFiles, findSecrets, readLines, removeTempDirs, tempDir, testKey } from './harness.js';

afterAll(() => {
  expect(findSecrets(allTempDirs())).toEqual([]);
  removeTempDirs();
});

// The child writes big batches as fast as it can (so a kill is likely to land inside a write), and prints one
// line once the first batch is on disk. With "restart" it records one event and shuts down cleanly.
const CHILD = `
import { openAuditWriter } from './audit/writer.js';
import { loadSigningKey } from './audit/signing-key.js';
const [dir, keyFile, mode] = process.argv.slice(2);
const writer = await openAuditWriter({
  directory: dir, signingKey: loadSigningKey(keyFile, false), fsync: 'never', fsyncIntervalMs: 1000,
  batchDelayMs: 1, batchMaxRecords: 2048, queueMax: 20000, onFailure: 'continue', retryInitialMs: 10,
  retryMaxMs: 100, checkpointIntervalMs: 1000, rotateMaxBytes: 8 * 1024 * 1024, rotateMaxAgeMs: 86400000,
  retentionMaxFiles: 0, retentionMaxAgeMs: 0,
});
const filler = 'x'.repeat(2000);
const event = (i) => ({ event: { action: 'authz.publish_denied', outcome: 'failure' }, mqtt: { client_id: 'c' + i, topic: 't/' + i }, labels: { filler } });
if (mode === 'restart') {
  writer.record({ event: { action: 'broker.started', outcome: 'success' } });
  await writer.close();
  process.stdout.write('closed\\n');
} else {
  let i = 0;
  let announced = false;
  for (;;) {
    while (writer.stats().queueDepth < 15000) writer.record(event(i++));
    await new Promise((r) => setImmediate(r));
    if (!announced && writer.stats().written > 4000) { announced = true; process.stdout.write('writing\\n'); }
  }
}
`;

let work: string;
beforeAll(() => {
  work = tempDir('bulwark-audit-child-');
  buildWriterForChild(work);
  writeFileSync(join(work, 'child.mjs'), CHILD);
});

async function runChild(dir: string, mode: 'write' | 'restart'): Promise<ReturnType<typeof spawn>> {
  const child = spawn(process.execPath, [join(work, 'child.mjs'), dir, testKey().privateKeyFile, mode], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [first] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
  expect(first.toString()).toBe(mode === 'write' ? 'writing\n' : 'closed\n');
  return child;
}

describe('audit writer killed with SIGKILL while logging heavily', () => {
  it('leaves at most a torn tail, which the next start seals so that verify reports nothing else', async () => {
    let tornSeen = 0;
    const dir = tempDir();
    for (let attempt = 0; attempt < 3; attempt++) {
      const child = await runChild(dir, 'write');
      // Let it write on for a moment so the kill lands while batches are in flight.
      await new Promise((r) => setTimeout(r, 50 + attempt * 30));
      child.kill('SIGKILL');
      await once(child, 'exit');

      // Before the restart: everything complete is intact, at most a partial last line and an unsigned tail.
      const crashed = await verifyAuditLog(dir, { live: true });
      expect(crashed.kind).toBe('intact');
      const partial = crashed.summary.openTail?.partialLine === true ? 1 : 0;
      expect((await verifyAuditLog(dir)).kind).toBe('broken');

      const restart = await runChild(dir, 'restart');
      await once(restart, 'exit');
      const result = await verifyAuditLog(dir);
      expect(result.kind).toBe('intact');
      // Nothing lost, and the only additions are the seal (if a line was torn), broker.started and the checkpoint.
      expect(result.summary.records).toBe(crashed.summary.records + partial + 2);
      expect(result.summary.sealedTornTails).toBe(tornSeen + partial);
      tornSeen += partial;
      const files = auditFiles(dir);
      const lastFile = readLines(files[files.length - 1] as string);
      const actions = lastFile.map((l) => (JSON.parse(l) as { event: { action: string } }).event.action);
      expect(actions[actions.length - 1]).toBe('audit.checkpoint');
      if (tornSeen > 0) break;
    }
    // Every seal in the log matches a torn tail verify found; report how many kills tore a line.
    console.info(`[crash test] sealed torn tails: ${tornSeen}`);
  });
});
