import {
  appendFileSync,
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  encodeRecord,
  JournalCorruptError,
  JournalWriter,
  journalFiles,
  readJournal,
  readNewestGeneration,
} from '../../../src/persistence/journal.js';
import { foldRecords } from '../../../src/persistence/restore.js';
import type { StoreRecord } from '../../../src/persistence/records.js';
import { testJournalWriter } from './journal-writer.js';

const tmp = (): string => mkdtempSync(join(tmpdir(), 'bulwark-journal-'));
const writer = testJournalWriter;

describe('journal', () => {
  it('writes batches and reads back every record in order', async () => {
    const dir = tmp();
    const w = writer(dir);
    let last = 0;
    for (let i = 0; i < 100; i++) last = w.append({ n: i });
    await w.durableThrough(last);
    expect(w.durableSeq).toBe(100);
    await w.close();
    const [file] = journalFiles(dir);
    const result = readJournal<{ n: number }>(join(dir, file!), false);
    expect(result.records.map((r) => r.n)).toEqual([...Array(100).keys()]);
    expect(result.tornTailBytes).toBe(0);
  });

  it('reports a torn final record as a tail, not as corruption, and sealing removes it', () => {
    const dir = tmp();
    const file = join(dir, 'journal-00000000.log');
    writeFileSync(file, Buffer.concat([encodeRecord({ a: 1 }), encodeRecord({ a: 2 }).subarray(0, 10)]));
    const result = readJournal(file, false);
    expect(result.records).toEqual([{ a: 1 }]);
    expect(result.tornTailBytes).toBe(10);
    JournalWriter.sealTornTail(file, 10);
    expect(statSync(file).size).toBe(encodeRecord({ a: 1 }).length);
  });

  it('refuses a record whose checksum does not match, naming the file and offset', () => {
    const dir = tmp();
    const file = join(dir, 'journal-00000000.log');
    const first = encodeRecord({ a: 1 });
    const second = encodeRecord({ a: 2 });
    second[second.length - 2] ^= 0xff;
    writeFileSync(file, Buffer.concat([first, second, encodeRecord({ a: 3 })]));
    expect(() => readJournal(file, false)).toThrow(JournalCorruptError);
    try {
      readJournal(file, false);
    } catch (error) {
      expect((error as Error).message).toContain(file);
      expect((error as Error).message).toContain(`byte ${first.length}`);
    }
  });

  it('in repair mode keeps what precedes the damage and reports the rest as dropped', () => {
    const dir = tmp();
    const file = join(dir, 'journal-00000000.log');
    const first = encodeRecord({ a: 1 });
    writeFileSync(file, first);
    appendFileSync(file, Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3]));
    const result = readJournal(file, true);
    expect(result.records).toEqual([{ a: 1 }]);
    expect(result.droppedBytes).toBe(11);
  });

  it('compaction replaces older generations with a snapshot and keeps appending', async () => {
    const dir = tmp();
    const w = writer(dir);
    for (let i = 0; i < 50; i++) w.append({ n: i });
    await w.compact([{ snapshot: true }]);
    const seq = w.append({ after: true });
    await w.durableThrough(seq);
    await w.close();
    const files = journalFiles(dir);
    expect(files).toEqual(['journal-00000001.log']);
    expect(readJournal(join(dir, files[0]!), false).records).toEqual([{ snapshot: true }, { after: true }]);
    expect(readFileSync(join(dir, files[0]!)).length).toBeGreaterThan(0);
  });
});

describe('folding records', () => {
  const msg = { t: 'a', p: '', q: 1 as const, r: false };
  it('applies upserts and deletes, and a session end removes everything of it', () => {
    const records: StoreRecord[] = [
      { t: 's', id: 'c1', v: 5, exp: 60, subs: [] },
      { t: 'o', id: 'c1', k: 1, m: msg, q: 1, r: false },
      { t: 'o', id: 'c1', k: 2, m: msg, q: 2, r: false },
      { t: 'u', id: 'c1', k: 2, p: 7, st: 'pubrel' },
      { t: 'd', id: 'c1', k: 1 },
      { t: 'i', id: 'c1', p: 3 },
      { t: 'i', id: 'c1', p: 4 },
      { t: 'j', id: 'c1', p: 3 },
      { t: 's', id: 'c2', v: 4, exp: 60, subs: [] },
      { t: 'e', id: 'c2' },
      { t: 'R', m: { ...msg, t: 'keep' } },
      { t: 'R', m: { ...msg, t: 'gone' } },
      { t: 'X', topic: 'gone' },
    ];
    const { sessions, retained } = foldRecords(records);
    expect([...sessions.keys()]).toEqual(['c1']);
    const c1 = sessions.get('c1')!;
    expect([...c1.outbound.keys()]).toEqual([2]);
    expect(c1.outbound.get(2)).toMatchObject({ p: 7, st: 'pubrel' });
    expect([...c1.inboundQos2]).toEqual([4]);
    expect([...retained.keys()]).toEqual(['keep']);
  });
});

describe('journal file modes', () => {
  it('creates the store folder 0700 and every generation 0600, whatever the umask allows', async () => {
    const dir = join(tmp(), 'store');
    const old = process.umask(0o022);
    try {
      const w = writer(dir);
      await w.durableThrough(w.append({ n: 1 }));
      await w.compact([{ n: 2 }]);
      await w.close();
    } finally {
      process.umask(old);
    }
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const files = journalFiles(dir);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
  });

  it('narrows a folder and journal an older version left readable to everyone', async () => {
    const dir = join(tmp(), 'store');
    const first = writer(dir);
    await first.durableThrough(first.append({ n: 1 }));
    await first.close();
    chmodSync(dir, 0o755);
    const [file] = journalFiles(dir);
    chmodSync(join(dir, file!), 0o644);
    const again = writer(dir);
    await again.close();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, file!)).mode & 0o777).toBe(0o600);
  });
});

describe('torn tail or damaged length', () => {
  const damagedLength = (records: Buffer[], index: number): Buffer => {
    const copy = records.map((r) => Buffer.from(r));
    // What the review did with dd: the length's top bytes become 0x00 0x10, about 1 MiB, past the end of the file.
    copy[index]![1] = 0x10;
    return Buffer.concat(copy);
  };
  const threeRecords = (): Buffer[] => [
    encodeRecord({ t: 's', id: 'c1' }),
    encodeRecord({ t: 'o', id: 'c1', k: 1 }),
    encodeRecord({ t: 'R', m: { t: 'r' } }),
  ];

  it.each([
    ['the second record', 1],
    ['the first record', 0],
  ])(
    'a length in %s that runs past the end over further records is corruption at its offset, not a torn tail',
    (_name, index) => {
      const dir = tmp();
      const file = join(dir, 'journal-00000000.log');
      const records = threeRecords();
      const bytes = damagedLength(records, index);
      writeFileSync(file, bytes);
      const offset = records.slice(0, index).reduce((n, r) => n + r.length, 0);
      const length = bytes.readUInt32BE(offset);
      expect(() => readJournal(file, false)).toThrow(
        new JournalCorruptError(
          file,
          offset,
          `impossible record length ${length}: it runs past the end of the file over bytes that are not the start of one record`,
        ),
      );
      expect(readFileSync(file)).toEqual(bytes);
      const repaired = readJournal(file, true);
      expect(repaired.records).toHaveLength(index);
      expect(repaired.tornTailBytes).toBe(0);
      expect(repaired.droppedBytes).toBe(bytes.length - offset);
    },
  );

  it('a last record whose length runs past the end over zeros is corruption', () => {
    const dir = tmp();
    const file = join(dir, 'journal-00000000.log');
    const [first, second] = threeRecords();
    const header = second!.subarray(0, 8);
    writeFileSync(file, Buffer.concat([first!, header, Buffer.alloc(5)]));
    expect(() => readJournal(file, false)).toThrow(`corrupt at byte ${first!.length}: impossible record length`);
  });

  it.each([
    ['inside the header', 5],
    ['right after the header', 8],
    ['one byte into the body', 9],
    ['one byte before the end', -1],
  ])('a last record cut %s is a torn tail', (_name, cut) => {
    const dir = tmp();
    const file = join(dir, 'journal-00000000.log');
    const [first, second] = threeRecords();
    // A body with multi-byte characters: a cut inside one leaves bytes above 0x7f, not control bytes.
    const last = encodeRecord({ t: 'R', m: { t: 'é/ü', p: 'ünïcode' } });
    const kept = last.subarray(0, cut < 0 ? last.length + cut : cut);
    writeFileSync(file, Buffer.concat([first!, second!, kept]));
    const result = readJournal(file, false);
    expect(result.records).toHaveLength(2);
    expect(result.tornTailBytes).toBe(kept.length);
  });
});

describe('journal writer failures', () => {
  it('a failed compaction keeps the pending records: they are written to the current file before they count as written', async () => {
    const dir = tmp();
    const w = writer(dir);
    await w.durableThrough(w.append({ n: 0 }));
    // The next generation's name is taken by a folder: the snapshot is written to .tmp, and the rename fails.
    mkdirSync(join(dir, 'journal-00000001.log'));
    const pending = w.append({ n: 1 });
    await expect(w.compact([{ snapshot: true }])).rejects.toThrow();
    const after = w.append({ n: 2 });
    await w.durableThrough(after);
    expect(w.durableSeq).toBe(after);
    expect(pending).toBeLessThan(after);
    expect(readJournal<{ n: number }>(join(dir, 'journal-00000000.log'), false).records).toEqual([
      { n: 0 },
      { n: 1 },
      { n: 2 },
    ]);
    expect(readdirSync(dir).sort()).toEqual(['journal-00000000.log', 'journal-00000001.log']);
    await w.close();
  });

  it('compaction names the new generation in newest-generation; if that fails, it keeps the new file and the old ones', async () => {
    const dir = tmp();
    const markerFailures: Error[] = [];
    const w = writer(dir, { onMarkerFailed: (e) => markerFailures.push(e) });
    await w.durableThrough(w.append({ n: 0 }));
    await w.compact([{ snapshot: 1 }]);
    expect(readFileSync(join(dir, 'newest-generation'), 'utf8')).toBe('1\n');
    expect(readNewestGeneration(dir)).toBe(1);
    expect(journalFiles(dir)).toEqual(['journal-00000001.log']);

    // The marker cannot be replaced (its temporary name is taken by a folder). The snapshot is written and synced
    // and is the newest file, which a start reads: the writer goes on appending there, so nothing written after
    // the compaction can be lost to a stale snapshot; the older file stays until a marker names the new one.
    mkdirSync(join(dir, 'newest-generation.tmp'));
    await w.compact([{ snapshot: 2 }]);
    expect(markerFailures).toHaveLength(1);
    expect(readNewestGeneration(dir)).toBe(1);
    expect(journalFiles(dir)).toEqual(['journal-00000001.log', 'journal-00000002.log']);
    const after = w.append({ n: 3 });
    await w.durableThrough(after);
    expect(readJournal<unknown>(join(dir, 'journal-00000002.log'), false).records).toEqual([{ snapshot: 2 }, { n: 3 }]);
    expect(readJournal<unknown>(join(dir, 'journal-00000001.log'), false).records).toEqual([{ snapshot: 1 }]);

    // Once the marker can be written again, the next compaction names its generation and removes the others.
    rmdirSync(join(dir, 'newest-generation.tmp'));
    await w.compact([{ snapshot: 3 }]);
    expect(readNewestGeneration(dir)).toBe(3);
    expect(journalFiles(dir)).toEqual(['journal-00000003.log']);
    await w.close();
  });

  it('newest-generation holds digits only: an empty file, an exponent or garbage is refused, never guessed at', () => {
    const dir = tmp();
    for (const text of ['', '1e3', '2abc', '-1', ' 7', '12345678901234567890']) {
      writeFileSync(join(dir, 'newest-generation'), text);
      expect(() => readNewestGeneration(dir)).toThrow(/does not hold a generation number/);
    }
    writeFileSync(join(dir, 'newest-generation'), '42\n');
    expect(readNewestGeneration(dir)).toBe(42);
  });
});
