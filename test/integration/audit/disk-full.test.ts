import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditRecord } from '../../../audit/record.js';
import { verifyAuditLog } from '../../../audit/verify.js';
import { canMountTmpfs, SmallFilesystems } from '../../helpers/small-filesystem.js';
import { openAuditWriter, type AuditWriterStats, type FailurePolicy } from '../../../audit/writer.js';
import { createLogger } from '../../../src/log.js';
import {
  allTempDirs,
  auditFiles,
  deniedPublish,
  findSecrets,
  removeTempDirs,
  tempDir,
  writerOptions,
} from './harness.js';

const filesystems = new SmallFilesystems();
afterEach(() => filesystems.unmountAll());
afterAll(() => {
  expect(findSecrets(allTempDirs())).toEqual([]);
  removeTempDirs();
});

/** A 64 KiB filesystem, so the disk really fills up. */
function smallFilesystem(): string | undefined {
  return filesystems.mount(tempDir('bulwark-audit-tmpfs-'), '64k');
}

const canMount = canMountTmpfs();

function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { logger: createLogger('info', stream), lines };
}

async function fillTheDisk(onFailure: FailurePolicy, queueMax: number) {
  const fs = smallFilesystem() as string;
  // Holds space the test frees later, so "the disk has room again" is real too.
  writeFileSync(join(fs, 'ballast'), Buffer.alloc(40 * 1024));
  const dir = join(fs, 'audit');
  mkdirSync(dir);
  const { logger, lines } = capturingLogger();
  const changes: AuditWriterStats[] = [];
  const writer = await openAuditWriter(
    writerOptions(dir, { onFailure, queueMax, batchMaxRecords: 8, logger, onStateChange: (s) => changes.push(s) }),
  );
  // Batches of 8, each written before the next, until the disk refuses one: no event is dropped before that.
  let recorded = 0;
  while (!writer.stats().failing && recorded < EVENTS) {
    for (let i = 0; i < 8; i++) writer.record(deniedPublish(recorded++));
    await writer.flush();
  }
  expect(writer.stats()).toMatchObject({ failing: true, dropped: 0 });
  return { fs, dir, writer, lines, changes, recorded };
}

/** ~600 bytes each: more than the 24 KiB left beside the ballast, less than the 64 KiB once it is gone. */
const EVENTS = 60;
const MORE = 30;

/**
 * The records of the log: newline-terminated lines only. The torn line a full disk leaves (sealed later) is not a
 * record even when it is complete JSON (the disk filled exactly before its newline); that event is written again
 * after the seal, so counting the torn copy would count it twice.
 */
const actionsOf = (dir: string): AuditRecord[] =>
  auditFiles(dir).flatMap((f) => {
    const lines = readFileSync(f, 'utf8').split('\n');
    lines.pop();
    return lines.map((l) => JSON.parse(l) as AuditRecord);
  });

describe.skipIf(!canMount)('audit log on a full disk', () => {
  it('fail-closed stops being writable, raises an alarm, keeps every event and recovers once space is free', async () => {
    const { fs, dir, writer, lines, changes, recorded } = await fillTheDisk('fail-closed', 100_000);
    expect(writer.writable).toBe(false);
    for (let i = recorded; i < EVENTS; i++) writer.record(deniedPublish(i));
    expect(writer.stats()).toMatchObject({ failing: true, writable: false, lastError: 'ENOSPC', dropped: 0 });
    expect(changes[0]).toMatchObject({ failing: true, writable: false });
    expect(lines.some((l) => l.includes('ALARM audit log cannot be written: refusing new connections'))).toBe(true);

    rmSync(join(fs, 'ballast'));
    await vi.waitFor(() => expect(writer.writable).toBe(true), { timeout: 10_000 });
    await writer.close();
    const stats = writer.stats();
    expect(stats.dropped).toBe(0);
    const records = actionsOf(dir);
    expect(records.filter((r) => r.event.action === 'authz.publish_denied')).toHaveLength(EVENTS);
    const recovered = records.find((r) => r.event.action === 'audit.write_recovered');
    expect(recovered?.audit).toMatchObject({ dropped: 0, reason: 'ENOSPC' });
    expect(recovered?.audit?.failures).toBeGreaterThan(0);
    expect(lines.some((l) => l.includes('audit log writable again'))).toBe(true);
    expect((await verifyAuditLog(dir)).kind).toBe('intact');
  });

  it('continue keeps accepting, counts dropped events, and records how many were lost once it recovers', async () => {
    const { fs, dir, writer, lines, recorded } = await fillTheDisk('continue', 20);
    expect(writer.writable).toBe(true);
    // The broker keeps serving and recording; the queue holds 20, the rest is dropped and counted.
    for (let i = 0; i < MORE; i++) writer.record(deniedPublish(recorded + i));
    expect(writer.writable).toBe(true);
    expect(writer.stats().dropped).toBeGreaterThanOrEqual(MORE - 20);
    expect(lines.some((l) => l.includes('ALARM audit log cannot be written: still serving'))).toBe(true);
    const dropped = writer.stats().dropped;

    rmSync(join(fs, 'ballast'));
    await vi.waitFor(() => expect(writer.stats().failing).toBe(false), { timeout: 10_000 });
    await writer.close();
    const records = actionsOf(dir);
    const written = records.filter((r) => r.event.action === 'authz.publish_denied').length;
    expect(written + dropped).toBe(recorded + MORE);
    const recovered = records.find((r) => r.event.action === 'audit.write_recovered');
    expect(recovered?.audit?.dropped).toBe(dropped);
    expect((await verifyAuditLog(dir)).kind).toBe('intact');
  });
});
