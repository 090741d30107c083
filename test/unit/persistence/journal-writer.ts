import { JournalWriter, type JournalOptions } from '../../../src/persistence/journal.js';

/** A journal writer in `sync` mode over `dir`, starting at generation 0, that throws whatever it fails on. */
export function testJournalWriter(dir: string, extra: Partial<JournalOptions> = {}): JournalWriter {
  return new JournalWriter(
    {
      dir,
      durability: 'sync',
      flushIntervalMs: 1000,
      maxBatchDelayMs: 0,
      onError: (e) => {
        throw e;
      },
      ...extra,
    },
    0,
  );
}
