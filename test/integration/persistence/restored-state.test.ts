import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startBroker } from '../../helpers/broker.js';
import { until } from '../../helpers/until.js';
import { JournalWriter, journalFiles, readJournal } from '../../../src/persistence/journal.js';
import type { StoreRecord } from '../../../src/persistence/records.js';

/** Writes a store as an earlier run (or an older version) left it, straight through the journal writer. */
async function writeStore(dataDir: string, records: StoreRecord[]): Promise<void> {
  const writer = new JournalWriter(
    {
      dir: join(dataDir, 'store'),
      durability: 'sync',
      flushIntervalMs: 1000,
      maxBatchDelayMs: 0,
      onError: (error) => {
        throw error;
      },
    },
    0,
  );
  let last = 0;
  for (const record of records) last = writer.append(record);
  await writer.durableThrough(last);
  await writer.close();
}

function storedRecords(dataDir: string): StoreRecord[] {
  const dir = join(dataDir, 'store');
  return journalFiles(dir).flatMap((file) => readJournal<StoreRecord>(join(dir, file), false).records);
}

const retainedTopics = (records: StoreRecord[]): string[] =>
  records.flatMap((r) => (r.t === 'R' ? [r.m.t] : [])).sort();

const base64 = (text: string): string => Buffer.from(text).toString('base64');

describe('what a restart restores', () => {
  it('$SYS retained values are not written into snapshots', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-sys-'));
    const broker = await startBroker({
      config: { data_dir: dataDir, sys_interval_seconds: 1, persistence: { durability: 'sync' } },
    });
    await until(
      () => [...broker.server.broker.retained.all()].some((m) => m.topic === '$SYS/broker/version'),
      '$SYS values',
    );
    broker.server.broker.retained.set({
      topic: 'keep/me',
      payload: Buffer.from('v'),
      qos: 1,
      retain: true,
      properties: undefined,
      expiresAt: undefined,
      publisherId: 'test',
    });
    // Stopping compacts: the snapshot is written from the live retained store, $SYS values included in it.
    await broker.stop();
    expect(retainedTopics(storedRecords(dataDir))).toEqual(['keep/me']);
  });

  it('$SYS retained values an older version left in the store are dropped at load, not served', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-sys-'));
    await writeStore(dataDir, [
      { t: 'R', m: { t: '$SYS/broker/version', p: base64('bulwark 0.0.1'), q: 0, r: true } },
      { t: 'R', m: { t: '$SYS/broker/clients/connected', p: base64('42'), q: 0, r: true } },
      { t: 'R', m: { t: 'keep/me', p: base64('v'), q: 1, r: true } },
    ]);
    const broker = await startBroker({ config: { data_dir: dataDir, persistence: { durability: 'sync' } } });
    expect(broker.logs.find((l) => String(l.msg).startsWith('store restored'))?.msg).toBe(
      'store restored: 0 sessions, 0 messages, 1 retained',
    );
    expect([...broker.server.broker.retained.all()].map((m) => m.topic)).toEqual(['keep/me']);
    await broker.stop();
    expect(retainedTopics(storedRecords(dataDir))).toEqual(['keep/me']);
  });

  it('a lowered limits.max_session_expiry_interval caps restored sessions as it caps them at CONNECT', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-cap-'));
    const now = Date.now();
    await writeStore(dataDir, [
      // Offline for 10 s with "never expires": past a 5 s limit.
      { t: 's', id: 'offline-10s', v: 4, exp: 0xffff_ffff, subs: [], at: now - 10_000 },
      { t: 's', id: 'offline-now', v: 5, exp: 3600, subs: [], at: now },
    ]);
    const broker = await startBroker({
      config: { data_dir: dataDir, persistence: { durability: 'sync' }, limits: { max_session_expiry_interval: 5 } },
    });
    expect(broker.logs.find((l) => String(l.msg).startsWith('store restored'))?.msg).toBe(
      'store restored: 1 sessions, 0 messages, 0 retained',
    );
    const sessions = broker.server.broker.sessions;
    expect([...sessions.keys()]).toEqual(['offline-now']);
    expect(sessions.get('offline-now')!.expiryInterval).toBe(5);
    await broker.stop();
    expect(storedRecords(dataDir).filter((r) => r.t === 's')).toMatchObject([{ id: 'offline-now', exp: 5 }]);
  });
});
