import { cpSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { journalFiles } from '../../../src/persistence/journal.js';
import type { StoreRecord } from '../../../src/persistence/records.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';
import { testJournalWriter } from '../../unit/persistence/journal-writer.js';

const base64 = (text: string): string => Buffer.from(text).toString('base64');

describe('a crash in the middle of a compaction', () => {
  let broker: TestBroker | undefined;
  const clients: Connected[] = [];
  afterEach(async () => {
    await endAll(...clients.map((c) => c.client));
    clients.length = 0;
    await broker?.stop();
    broker = undefined;
  });

  it('brings back nothing that changed just before the snapshot: no delivered message, ended session or cleared retained message', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-compaction-crash-'));
    const dir = join(dataDir, 'store');
    const writer = testJournalWriter(dir);
    const kept: StoreRecord = {
      t: 's',
      id: 'kept',
      v: 5,
      exp: 3600,
      subs: [{ k: 't/#', f: 't/#', q: 1, nl: false, rap: false, rh: 0 }],
      at: Date.now(),
    };
    const written = [
      kept,
      // In flight to `kept` when the broker last wrote: its PUBACK is what the pending `d` below records.
      { t: 'o', id: 'kept', k: 1, m: { t: 't/one', p: base64('delivered'), q: 1, r: false }, q: 1, r: false, p: 1 },
      { t: 's', id: 'gone', v: 5, exp: 3600, subs: [], at: Date.now() },
      { t: 'R', m: { t: 'status/old', p: base64('stale'), q: 0, r: true } },
    ] satisfies StoreRecord[];
    let last = 0;
    for (const record of written) last = writer.append(record);
    await writer.durableThrough(last);
    // What changed in the same turn as the store took its snapshot: appended, not yet written, and in the snapshot.
    writer.append({ t: 'd', id: 'kept', k: 1 } satisfies StoreRecord);
    writer.append({ t: 'e', id: 'gone' } satisfies StoreRecord);
    writer.append({ t: 'X', topic: 'status/old' } satisfies StoreRecord);
    const compaction = writer.compact([kept]);
    // The writer writes nothing while it waits on the marker's syncs: the folder as it is once the new generation is
    // in place is what a kill -9 at that moment leaves behind.
    const crashed = mkdtempSync(join(tmpdir(), 'bulwark-compaction-crashed-'));
    while (!existsSync(join(dir, 'journal-00000001.log'))) await new Promise((resolve) => setImmediate(resolve));
    cpSync(dir, join(crashed, 'store'), { recursive: true });
    await compaction;
    await writer.close();
    expect(journalFiles(join(crashed, 'store'))).toEqual(['journal-00000000.log', 'journal-00000001.log']);

    broker = await startBroker({ config: { data_dir: crashed, persistence: { durability: 'sync' } } });
    const subscriber = await connectClient(broker.url, {
      clientId: 'kept',
      clean: false,
      protocolVersion: 5,
      properties: { sessionExpiryInterval: 3600 },
    });
    clients.push(subscriber);
    expect(subscriber.connack.sessionPresent).toBe(true);
    // Anything re-sent from the session comes right after CONNACK, ahead of this one.
    await subscriber.client.publishAsync('t/two', 'fresh', { qos: 1 });
    await subscriber.received.waitForTopic('t/two');
    expect(subscriber.received.messages.map((m) => `${m.topic} ${m.payload}`)).toEqual(['t/two fresh']);

    const ended = await connectClient(broker.url, {
      clientId: 'gone',
      clean: false,
      protocolVersion: 5,
      properties: { sessionExpiryInterval: 3600 },
    });
    clients.push(ended);
    expect(ended.connack.sessionPresent).toBe(false);
    expect(broker.server.broker.retained.get('status/old')).toBeUndefined();
    // The start-up compaction removed the superseded file.
    expect(journalFiles(join(crashed, 'store'))).toEqual(['journal-00000002.log']);
    expect(broker.logs.some((line) => String(line.msg).includes('superseded by the newest'))).toBe(true);
  });
});
