import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

// Counts the synchronous syncs the journal makes: a running broker's compaction must not hold the event loop for
// one (a folder sync can take milliseconds on a busy disk, and every connection's packets wait behind it).
const syncCalls = vi.hoisted(() => ({ count: 0 }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const counted =
    <A extends unknown[], R>(f: (...args: A) => R) =>
    (...args: A): R => {
      syncCalls.count++;
      return f(...args);
    };
  return { ...fs, fsyncSync: counted(fs.fsyncSync), fdatasyncSync: counted(fs.fdatasyncSync) };
});

const { journalFiles } = await import('../../../src/persistence/journal.js');
const { testJournalWriter } = await import('./journal-writer.js');

describe('compaction of a running journal', () => {
  afterEach(() => {
    syncCalls.count = 0;
  });

  it('syncs the new generation and its newest-generation marker without a synchronous sync', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-compaction-'));
    const writer = testJournalWriter(dir);
    await writer.durableThrough(writer.append({ n: 0 }));
    syncCalls.count = 0;
    await writer.compact([{ snapshot: 1 }]);
    expect(syncCalls.count).toBe(0);
    // The compaction did take place and named its generation: the count is not zero for want of work.
    expect(journalFiles(dir)).toEqual(['journal-00000001.log']);
    expect(readFileSync(join(dir, 'newest-generation'), 'utf8')).toBe('1\n');
    await writer.close();
    // The spy does see the journal's synchronous syncs (the shutdown's, which belong there).
    expect(syncCalls.count).toBeGreaterThan(0);
  });
});
