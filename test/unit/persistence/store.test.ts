import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { JournalWriter } from '../../../src/persistence/journal.js';
import type { StoreRecord } from '../../../src/persistence/records.js';
import { SessionStore } from '../../../src/persistence/store.js';

describe('session store loading', () => {
  it('loads a journal of 200,000 records (a spread of them would overflow the stack)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-store-'));
    const writer = new JournalWriter(
      {
        dir: join(dataDir, 'store'),
        durability: 'periodic',
        flushIntervalMs: 60_000,
        maxBatchDelayMs: 0,
        onError: (error) => {
          throw error;
        },
      },
      0,
    );
    const count = 200_000;
    let last = writer.append({ t: 's', id: 'many', v: 4, exp: 3600, subs: [] } satisfies StoreRecord);
    const message = { t: 'm/x', p: '', q: 1 as const, r: false };
    for (let k = 1; k < count; k++) last = writer.append({ t: 'o', id: 'many', k, m: message, q: 1, r: false });
    await writer.durableThrough(last);
    await writer.close();

    const store = new SessionStore({
      dataDir,
      durability: 'sync',
      flushIntervalMs: 1000,
      maxBatchDelayMs: 0,
      compactMinBytes: 1 << 26,
      repair: false,
      log: pino({ level: 'silent' }),
    });
    const loaded = store.load();
    expect(loaded.records).toHaveLength(count);
    expect(loaded.records.at(-1)).toMatchObject({ t: 'o', k: count - 1 });
  });
});
