import { afterAll, describe, expect, it, vi } from 'vitest';
import { verifyAuditLog } from '../../../audit/verify.js';
import { openAuditWriter } from '../../../audit/writer.js';
import { FaultyDisk } from './faulty-disk.js';
import { deniedPublish, removeTempDirs, tempDir, writerOptions } from './harness.js';

afterAll(() => removeTempDirs());

describe('audit group commit under load', () => {
  it('events that arrive while a batch is being written wait for their own batch delay, not one write each', async () => {
    const disk = new FaultyDisk();
    const dir = tempDir();
    // A delay long enough that the checks below always run inside it, even on a loaded machine.
    const writer = await openAuditWriter(
      writerOptions(dir, { fileSystem: disk, fsync: 'always', batchDelayMs: 1_500 }),
    );
    const held = disk.holdWrite(1);
    writer.record(deniedPublish(0));
    await held.reached; // the first batch, written by its own timer
    writer.record(deniedPublish(1));
    writer.record(deniedPublish(2));
    held.release();
    await vi.waitFor(() => expect(disk.syncCalls).toBeGreaterThanOrEqual(1));
    // The first batch is on disk. A writer that loops write + fdatasync back to back would already be writing
    // events 1 and 2; this one waits, so event 3 joins them.
    expect(disk.writeCalls).toBe(1);
    writer.record(deniedPublish(3));
    await writer.flush();
    expect(disk.writeCalls).toBe(2);
    expect(writer.stats()).toMatchObject({ written: 4, dropped: 0 });
    await writer.close();
    expect((await verifyAuditLog(dir)).kind).toBe('intact');
  });
});
