import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { AuditRecord } from '../../../audit/record.js';
import { verifyAuditLog, type VerifyResult } from '../../../audit/verify.js';
import { openAuditWriter, type AuditWriter, type AuditWriterOptions } from '../../../audit/writer.js';
import { FaultyDisk } from './faulty-disk.js';
import {
  allTempDirs,
  auditFiles,
  deniedPublish,
  findSecrets,
  removeTempDirs,
  tempDir,
  testKey,
  writerOptions,
} from './harness.js';

afterAll(() => {
  expect(findSecrets(allTempDirs())).toEqual([]);
  removeTempDirs();
});

/** A fixed clock: the same events give the same bytes in every run, so a tear can be aimed at an exact byte. */
const NOW = Date.parse('2026-11-25T10:00:00.000Z');
const BATCH = 8;

async function openOn(disk: FaultyDisk, overrides: Partial<AuditWriterOptions> = {}) {
  const dir = tempDir();
  const writer = await openAuditWriter(
    writerOptions(dir, { fileSystem: disk, batchMaxRecords: BATCH, now: () => NOW, ...overrides }),
  );
  return { dir, writer };
}

function recordRange(writer: AuditWriter, from: number, to: number): void {
  for (let i = from; i < to; i++) writer.record(deniedPublish(i));
}

/** Newline-terminated lines only: a torn tail is not a record, even when it happens to be complete JSON. */
function recordsOf(dir: string): Array<AuditRecord & { file: string }> {
  return auditFiles(dir).flatMap((file) => {
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.pop();
    return lines.map((l) => ({ ...(JSON.parse(l) as AuditRecord), file: basename(file) }));
  });
}

/** The `labels.attempt` of every denied-publish record, in log order. */
const attemptsOf = (dir: string): number[] =>
  recordsOf(dir)
    .filter((r) => r.event.action === 'authz.publish_denied')
    .map((r) => Number(r.labels?.attempt));

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

const verify = (dir: string): Promise<VerifyResult> =>
  verifyAuditLog(dir, { publicKeys: [{ keyId: testKey().key.keyId, publicKey: testKey().key.publicKey }] });

async function recovered(writer: AuditWriter): Promise<void> {
  await vi.waitFor(() => expect(writer.stats().failing).toBe(false), { timeout: 10_000, interval: 5 });
}

/** Byte offsets, within the second batch, where each of its lines ends (learnt from a run on a healthy disk). */
async function secondBatchLineEnds(): Promise<number[]> {
  const { dir, writer } = await openOn(new FaultyDisk());
  recordRange(writer, 0, BATCH);
  await writer.flush();
  recordRange(writer, BATCH, 2 * BATCH);
  await writer.flush();
  await writer.close();
  const lines = readFileSync(auditFiles(dir)[0] as string, 'utf8')
    .split('\n')
    .slice(BATCH, 2 * BATCH);
  let end = 0;
  return lines.map((l) => (end += Buffer.byteLength(l) + 1));
}

describe('audit writer on a disk that fails at an exact byte', () => {
  it('leaves a log that verifies intact, with every event exactly once, wherever a full disk tears a batch', async () => {
    const ends = await secondBatchLineEnds();
    const starts = [0, ...ends.slice(0, -1)];
    // Around every line boundary (the byte before a newline too: a torn tail that is complete JSON), and mid-line.
    const offsets = [
      ...new Set(starts.flatMap((s, i) => [s, s + 1, s + 100, (ends[i] as number) - 2, (ends[i] as number) - 1])),
    ].sort((a, b) => a - b);
    expect(offsets.length).toBeGreaterThan(30);

    for (const tearAt of offsets) {
      const disk = new FaultyDisk();
      const { dir, writer } = await openOn(disk);
      recordRange(writer, 0, BATCH);
      await writer.flush();
      disk.leave(tearAt);
      recordRange(writer, BATCH, 2 * BATCH);
      await writer.flush();
      expect(writer.stats()).toMatchObject({ failing: true, writable: false, lastError: 'ENOSPC', dropped: 0 });
      // Recorded while the disk is full: fail-closed keeps them.
      recordRange(writer, 2 * BATCH, 3 * BATCH);
      disk.free();
      await recovered(writer);
      await writer.close();

      const torn = tearAt > 0 && !ends.includes(tearAt);
      const result = await verify(dir);
      expect({ tearAt, kind: result.kind }).toEqual({ tearAt, kind: 'intact' });
      expect(result.summary.sealedTornTails).toBe(torn ? 1 : 0);
      expect(attemptsOf(dir)).toEqual(range(3 * BATCH));
      const recovery = recordsOf(dir).filter((r) => r.event.action === 'audit.write_recovered');
      expect(recovery).toHaveLength(1);
      expect(recovery[0]?.audit).toMatchObject({ dropped: 0, reason: 'ENOSPC' });
      expect(writer.stats()).toMatchObject({ dropped: 0, failing: false });
    }
  });

  it('seals both torn lines in order when the disk fills again inside the record that seals the first', async () => {
    const disk = new FaultyDisk();
    const { dir, writer } = await openOn(disk);
    recordRange(writer, 0, BATCH);
    await writer.flush();
    disk.leave(250);
    recordRange(writer, BATCH, 2 * BATCH);
    await writer.flush();
    expect(writer.stats().failing).toBe(true);
    // Room for 40 bytes: the retry tears the seal record itself, in the new file.
    const before = disk.used;
    disk.leave(40);
    await vi.waitFor(() => expect(disk.used).toBe(before + 40), { timeout: 10_000, interval: 5 });
    expect(writer.stats().failing).toBe(true);
    disk.free();
    await recovered(writer);
    await writer.close();

    const result = await verify(dir);
    expect(result.kind).toBe('intact');
    expect(result.summary.sealedTornTails).toBe(2);
    const seals = recordsOf(dir).filter((r) => r.event.action === 'audit.torn_tail_sealed');
    expect(seals.map((s) => [s.audit?.length, s.audit?.offset])).toEqual([
      [250, expect.any(Number)],
      [40, 0],
    ]);
    expect(attemptsOf(dir)).toEqual(range(2 * BATCH));
  });

  it('writes every byte of a batch that the disk takes in several short writes, without any failure', async () => {
    const disk = new FaultyDisk();
    disk.maxPerWrite = 97;
    const { dir, writer } = await openOn(disk);
    recordRange(writer, 0, 5 * BATCH);
    await writer.close();
    expect(disk.writeCalls).toBeGreaterThan(5 * BATCH);
    expect(writer.stats()).toMatchObject({ failures: 0, dropped: 0 });
    expect((await verify(dir)).kind).toBe('intact');
    expect(attemptsOf(dir)).toEqual(range(5 * BATCH));
  });

  it('abandons a file whose fdatasync failed and continues the chain in a new file', async () => {
    const disk = new FaultyDisk();
    const { dir, writer } = await openOn(disk, { fsync: 'always' });
    recordRange(writer, 0, BATCH);
    await writer.flush();
    disk.failSyncs = 1;
    recordRange(writer, BATCH, 2 * BATCH);
    await writer.flush();
    expect(writer.stats()).toMatchObject({ failing: true, lastError: 'EIO', writable: false });
    await recovered(writer);
    recordRange(writer, 2 * BATCH, 3 * BATCH);
    await writer.close();

    const result = await verify(dir);
    expect(result.kind).toBe('intact');
    expect(result.summary.uncleanEnds).toBe(1);
    const records = recordsOf(dir);
    expect(attemptsOf(dir)).toEqual(range(3 * BATCH));
    const fileOf = (attempt: number) => records.find((r) => r.labels?.attempt === String(attempt))?.file;
    // The batch whose sync failed stays where it is; nothing is appended after it in that file.
    expect(fileOf(2 * BATCH - 1)).toBe(fileOf(0));
    expect(fileOf(2 * BATCH)).not.toBe(fileOf(0));
    expect(records.find((r) => r.event.action === 'audit.write_recovered')?.file).not.toBe(fileOf(0));
  });

  it('seals a rotation checkpoint that the full disk tore and keeps rotating afterwards', async () => {
    const disk = new FaultyDisk();
    // Every batch ends its file.
    const { dir, writer } = await openOn(disk, { rotateMaxBytes: 1 });
    recordRange(writer, 0, BATCH);
    await writer.flush();
    disk.leave(100);
    recordRange(writer, BATCH, 2 * BATCH);
    await writer.flush();
    expect(writer.stats().failing).toBe(true);
    // What tore is the checkpoint that was to end the first file.
    const first = readFileSync(auditFiles(dir)[0] as string, 'utf8');
    const tail = first.slice(first.lastIndexOf('\n') + 1);
    expect(tail).toHaveLength(100);
    expect(tail).toContain('"checkpoint":');
    disk.free();
    await recovered(writer);
    recordRange(writer, 2 * BATCH, 3 * BATCH);
    await writer.close();

    const result = await verify(dir);
    expect(result.kind).toBe('intact');
    expect(result.summary.sealedTornTails).toBe(1);
    expect(result.summary.files).toBeGreaterThan(3);
    expect(attemptsOf(dir)).toEqual(range(3 * BATCH));
  });

  it('ends the log with the shutdown checkpoint when close() arrives while the recovery is still writing', async () => {
    const disk = new FaultyDisk();
    const { dir, writer } = await openOn(disk, { batchMaxRecords: 4 });
    recordRange(writer, 0, 4);
    await writer.flush();
    disk.fill();
    recordRange(writer, 4, 8);
    await writer.flush();
    recordRange(writer, 8, 16);
    expect(writer.stats()).toMatchObject({ failing: true, queueDepth: 12 });
    // The first write after the disk is back succeeds (the writer is writable again); the second is held, so
    // close() lands while the retry is still draining the queue.
    disk.free();
    const held = disk.holdWrite(2);
    await held.reached;
    expect(writer.writable).toBe(true);
    const closed = writer.close();
    held.release();
    await closed;

    const result = await verify(dir);
    expect(result).toMatchObject({ kind: 'intact' });
    const records = recordsOf(dir);
    expect(records.at(-1)?.audit?.reason).toBe('shutdown');
    expect(records.filter((r) => r.event.action === 'audit.write_recovered')).toHaveLength(1);
    expect(attemptsOf(dir)).toEqual(range(16));
    expect(writer.stats().dropped).toBe(0);
  });

  it('records the recovery before the shutdown checkpoint when the last attempt at close() succeeds', async () => {
    const disk = new FaultyDisk();
    const { dir, writer } = await openOn(disk, { retryInitialMs: 60_000, retryMaxMs: 60_000 });
    recordRange(writer, 0, BATCH);
    await writer.flush();
    disk.fill();
    recordRange(writer, BATCH, 2 * BATCH);
    await writer.flush();
    expect(writer.stats().failing).toBe(true);
    // The retry timer is a minute away: close() makes the only attempt.
    disk.free();
    await writer.close();

    expect((await verify(dir)).kind).toBe('intact');
    const recovery = recordsOf(dir).find((r) => r.event.action === 'audit.write_recovered');
    expect(recovery?.audit).toMatchObject({ dropped: 0, reason: 'ENOSPC' });
    expect(attemptsOf(dir)).toEqual(range(2 * BATCH));
  });

  it('counts what a close() on a still-full disk loses, and the next start seals the torn line', async () => {
    const disk = new FaultyDisk();
    const { dir, writer } = await openOn(disk);
    recordRange(writer, 0, BATCH);
    await writer.flush();
    disk.leave(300);
    recordRange(writer, BATCH, 2 * BATCH);
    await writer.flush();
    await writer.close();
    const written = attemptsOf(dir);
    // The complete lines before the tear count as written; the rest was still queued and is counted as lost.
    expect(writer.stats().dropped).toBe(2 * BATCH - written.length);
    expect(written).toEqual(range(written.length));
    const before = await verify(dir);
    expect(before).toMatchObject({ kind: 'broken', problem: 'truncated' });

    disk.free();
    const again = await openAuditWriter(writerOptions(dir, { fileSystem: disk, now: () => NOW }));
    recordRange(again, 100, 101);
    await again.close();
    const after = await verify(dir);
    expect(after.kind).toBe('intact');
    expect(after.summary.sealedTornTails).toBe(1);
    expect(attemptsOf(dir)).toEqual([...written, 100]);
  });

  it('continue keeps accepting, drops and counts what exceeds the queue, and records that count on recovery', async () => {
    const disk = new FaultyDisk();
    const { dir, writer } = await openOn(disk, { onFailure: 'continue', queueMax: 10 });
    recordRange(writer, 0, BATCH);
    await writer.flush();
    disk.leave(700);
    recordRange(writer, BATCH, 2 * BATCH);
    await writer.flush();
    expect(writer.stats()).toMatchObject({ failing: true, writable: true });
    recordRange(writer, 2 * BATCH, 4 * BATCH);
    const dropped = writer.stats().dropped;
    expect(dropped).toBeGreaterThan(0);
    disk.free();
    await recovered(writer);
    await writer.close();

    expect((await verify(dir)).kind).toBe('intact');
    const attempts = attemptsOf(dir);
    expect(new Set(attempts).size).toBe(attempts.length);
    expect(attempts.length + dropped).toBe(4 * BATCH);
    expect(writer.stats().dropped).toBe(dropped);
    const recovery = recordsOf(dir).find((r) => r.event.action === 'audit.write_recovered');
    expect(recovery?.audit?.dropped).toBe(dropped);
  });
});
