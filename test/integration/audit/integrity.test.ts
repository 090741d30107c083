import { createHash } from 'node:crypto';
import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../audit/canonical.js';
import { loadPublicKey } from '../../../audit/signing-key.js';
import { describeVerifyResult, verifyAuditLog } from '../../../audit/verify.js';
import { openAuditWriter, type AuditFileSystem } from '../../../audit/writer.js';
import {
  allTempDirs,
  auditFiles,
  deniedPublish,
  findSecrets,
  readLines,
  rechain,
  removeTempDirs,
  tempDir,
  testKey,
  writeCrashedLog,
  writeLines,
  writeLog,
  writerOptions,
} from './harness.js';

afterAll(() => {
  expect(findSecrets(allTempDirs())).toEqual([]);
  removeTempDirs();
});

const HINT = (dir: string): string =>
  `run \`bulwark audit verify ${dir}\`, keep the directory as evidence (move it aside) and start with an empty audit directory to continue`;

async function report(dir: string, live = false): Promise<string> {
  const publicKeys = [loadPublicKey(testKey().publicKeyFile)];
  return describeVerifyResult(await verifyAuditLog(dir, { publicKeys, live }));
}

/** The start-up error, message and hint, or 'started' when the writer opened (it is then closed). */
async function startUp(dir: string): Promise<string> {
  try {
    const writer = await openAuditWriter(writerOptions(dir));
    await writer.close();
    return 'started';
  } catch (error: unknown) {
    const e = error as { code: string; message: string; hint?: string };
    return `${e.code}: ${e.message} (${e.hint ?? ''})`;
  }
}

/** A record as an attacker without the key makes one: canonical, correctly hashed, chained to `prev`. */
function forge(body: Record<string, unknown>, seq: number, prev: string): string {
  const r = { ...body, '@timestamp': '2026-11-27T12:00:00.000Z', seq, prev_hash: prev };
  const canonical = canonicalJson(r);
  const hash = createHash('sha256').update(`${prev}\n${canonical}`).digest('hex');
  return `${canonical.slice(0, -1)},"hash":"${hash}"}`;
}

const last = (lines: readonly string[]): { seq: number; hash: string } =>
  JSON.parse(lines[lines.length - 1] as string) as { seq: number; hash: string };

/** Three runs, each stopped cleanly: three files, each ending with its shutdown checkpoint. */
async function threeRuns(): Promise<{ dir: string; files: string[] }> {
  const dir = tempDir();
  for (let run = 0; run < 3; run++) await writeLog(dir, 4);
  return { dir, files: auditFiles(dir) };
}

describe('a restart vouches for the end of the log before it continues and signs it', () => {
  it('refuses a forged record appended after the shutdown checkpoint, which verify reports as appended', async () => {
    const { dir, files } = await threeRuns();
    const newest = files[2] as string;
    const lines = readLines(newest);
    const head = last(lines);
    const event = { event: { action: 'admin.command', outcome: 'success', reason: 'ban remove 198.51.100.66' } };
    writeLines(newest, [...lines, forge(event, head.seq + 1, head.hash)]);
    expect(await report(dir)).toBe(
      `BROKEN edited: ${basename(newest)} line 6 seq ${head.seq + 1}: a record follows the shutdown checkpoint at line 5 (seq ${head.seq}), which ended the run that wrote this file: it was appended outside the broker`,
    );
    expect(await startUp(dir)).toBe(
      `BULWARK_ERR_AUDIT: the audit log in ${dir} was changed outside the broker: record seq ${head.seq + 1} in ${basename(newest)} follows the shutdown checkpoint (seq ${head.seq}) that ended the last run, which writes nothing after it; continuing it would sign the change (${HINT(dir)})`,
    );
    expect(auditFiles(dir)).toHaveLength(3);
  });

  it('refuses a forged retention record for a deleted oldest file', async () => {
    const { dir, files } = await threeRuns();
    const oldest = readLines(files[0] as string);
    const newest = files[2] as string;
    const lines = readLines(newest);
    const head = last(lines);
    const retention = {
      actor: 'audit-writer',
      audit: { file: basename(files[0] as string), first_seq: 1, last_seq: 5, last_hash: last(oldest).hash },
      event: { action: 'audit.retention_deleted', outcome: 'success' },
    };
    writeLines(newest, [...lines, forge(retention, head.seq + 1, head.hash)]);
    rmSync(files[0] as string);
    expect(await startUp(dir)).toMatch(
      new RegExp(
        `^BULWARK_ERR_AUDIT: .*record seq ${head.seq + 1} in ${basename(newest)} follows the shutdown checkpoint`,
      ),
    );
  });

  it('refuses complete records joined into one unterminated line, which a crash cannot leave', async () => {
    const { dir, files } = await threeRuns();
    const newest = files[2] as string;
    const lines = readLines(newest);
    const joined = lines.slice(-3).join(' ');
    const offset = Buffer.byteLength(
      lines
        .slice(0, -3)
        .map((l) => `${l}\n`)
        .join(''),
    );
    writeFileSync(
      newest,
      lines
        .slice(0, -3)
        .map((l) => `${l}\n`)
        .join('') + joined,
    );
    expect(await startUp(dir)).toBe(
      `BULWARK_ERR_AUDIT: the audit log in ${dir} was changed outside the broker: the torn tail at the end of ${basename(newest)} (${Buffer.byteLength(joined)} bytes at offset ${offset}) holds 3 complete records joined without newlines, not the beginning of one record; continuing it would sign the change (${HINT(dir)})`,
    );
  });

  it('refuses an unsigned tail whose records do not chain, after a crash', async () => {
    const dir = tempDir();
    await writeCrashedLog(dir, 6);
    const [file] = auditFiles(dir);
    const lines = readLines(file as string);
    lines[3] = (lines[3] as string).replace('"name":"bob"', '"name":"bof"');
    writeLines(file as string, lines);
    expect(await startUp(dir)).toBe(
      `BULWARK_ERR_AUDIT: the audit log in ${dir} was changed outside the broker: record seq 4 in ${basename(file as string)} does not match its hash; continuing it would sign the change (${HINT(dir)})`,
    );
  });

  it('still starts after a crash that left unsigned records and a record cut off just before its newline', async () => {
    const dir = tempDir();
    await writeCrashedLog(dir, 6);
    const [file] = auditFiles(dir);
    const bytes = readFileSync(file as string);
    // The tear fell between the last record and its newline: one complete record, and it continues the chain.
    writeFileSync(file as string, bytes.subarray(0, bytes.length - 1));
    expect(await startUp(dir)).toBe('started');
    const result = await verifyAuditLog(dir);
    expect(result.kind).toBe('intact');
    expect(result.summary).toMatchObject({ sealedTornTails: 1, uncleanEnds: 0, lastSeq: 7 });
  });
});

describe('a checkpoint signs its reason', () => {
  it('a tail cut back to an interval checkpoint relabelled shutdown fails its signature', async () => {
    const dir = tempDir();
    const writer = await openAuditWriter(writerOptions(dir));
    for (let i = 0; i < 5; i++) writer.record(deniedPublish(i));
    await writer.checkpoint();
    for (let i = 5; i < 10; i++) writer.record(deniedPublish(i));
    await writer.close();
    const [file] = auditFiles(dir);
    const lines = readLines(file as string).slice(0, 6);
    const relabelled = rechain([lines[5] as string], last(lines.slice(0, 5)).hash, (r) => {
      (r.audit as { reason: string }).reason = 'shutdown';
      (r.event as { reason: string }).reason = 'checkpoint at shutdown';
    });
    writeLines(file as string, [...lines.slice(0, 5), ...relabelled]);
    expect(await report(dir)).toBe(
      `BROKEN bad-signature: ${basename(file as string)} line 6 seq 6: the checkpoint signature by key ${testKey().key.keyId} does not verify`,
    );
  });
});

describe('deleting the newest files', () => {
  it('shows in verify and stops the next start, even when the file before ended with a clean stop', async () => {
    const { dir, files } = await threeRuns();
    const [, second, newest] = files as [string, string, string];
    const secondLines = readLines(second);
    rmSync(newest);
    expect(await report(dir)).toBe(
      `BROKEN missing-file: ${basename(second)} line ${secondLines.length} seq ${last(secondLines).seq}: the log ends at seq ${last(secondLines).seq}, but audit-head.json names ${basename(newest)} (from seq ${last(secondLines).seq + 1}) as the newest file the broker started, and it is missing: the newest files were deleted`,
    );
    expect(await startUp(dir)).toBe(
      `BULWARK_ERR_AUDIT: the audit log in ${dir} was changed outside the broker: ${basename(newest)}, the newest file the broker started (first seq ${last(secondLines).seq + 1}, named by audit-head.json), is missing: the newest audit files were deleted; continuing it would sign the change (${HINT(dir)})`,
    );
  });

  it('with the head pointer deleted too: verify and the next start say it is missing', async () => {
    const { dir, files } = await threeRuns();
    const second = files[1] as string;
    const secondLines = readLines(second);
    rmSync(files[2] as string);
    rmSync(join(dir, 'audit-head.json'));
    expect(await report(dir)).toBe(
      `BROKEN missing-file: ${basename(second)} line ${secondLines.length} seq ${last(secondLines).seq}: the log ends at seq ${last(secondLines).seq}, but audit-head.json, which the broker that wrote it keeps, is missing: the newest files may have been deleted with it`,
    );
    expect(await startUp(dir)).toMatch(
      /^BULWARK_ERR_AUDIT: .* has no audit-head\.json, which the broker that wrote it keeps/,
    );
  });
});

describe('verify --live', () => {
  it('refuses a log of several files with every checkpoint stripped and the chain recomputed', async () => {
    const { dir, files } = await threeRuns();
    let prev = '0'.repeat(64);
    let seq = 0;
    for (const file of files) {
      const kept = readLines(file).filter((l) => !l.includes('"action":"audit.checkpoint"'));
      const forged = rechain(kept, prev, (r) => {
        r.seq = ++seq;
      });
      writeLines(file, forged);
      prev = last(forged).hash;
    }
    const newest = readLines(files[2] as string);
    expect(await report(dir, true)).toBe(
      `BROKEN unsigned: ${basename(files[2] as string)} line ${newest.length} seq ${seq}: the log holds no checkpoint although 3 files were closed: nothing is signed, so a rewrite without the signing key cannot be ruled out`,
    );
  });

  it('refuses a retention record that no signed checkpoint covers', async () => {
    const dir = tempDir();
    await writeLog(dir, 4);
    await writeLog(dir, 4);
    const writer = await writeCrashedLog(dir, 2);
    const [oldest, , newest] = auditFiles(dir) as [string, string, string];
    const oldestLines = readLines(oldest);
    const lines = readLines(newest);
    const head = last(lines);
    const retention = {
      actor: 'audit-writer',
      audit: {
        file: basename(oldest),
        first_seq: 1,
        last_hash: last(oldestLines).hash,
        last_seq: last(oldestLines).seq,
        reason: 'max_files',
      },
      event: { action: 'audit.retention_deleted', outcome: 'success', reason: `retention max_files: deleted x` },
    };
    writeLines(newest, [...lines, forge(retention, head.seq + 1, head.hash)]);
    rmSync(oldest);
    const second = auditFiles(dir)[0] as string;
    expect(await report(dir, true)).toBe(
      `BROKEN missing-file: ${basename(second)} line 1 seq 6: the log starts at seq 6, and the retention record (seq ${head.seq + 1}) that accounts for records 1..5 is not covered by a signed checkpoint: older files may have been deleted outside the broker`,
    );
    expect(writer.stats().written).toBe(2);
  });
});

describe('checkpoint_interval under sustained load', () => {
  it('signs within the interval while the queue never drains, without extra writes', async () => {
    const dir = tempDir();
    let now = Date.parse('2026-11-01T00:00:00Z');
    let writes = 0;
    // Each write takes 250 ms on the injected clock: the queue of 400 events never drains between batches.
    const slowDisk: AuditFileSystem = {
      open: async (path, flags, mode) => {
        const handle = await open(path, flags, mode);
        return {
          write: async (buffer, offset, length) => {
            writes++;
            now += 250;
            return handle.write(buffer, offset, length);
          },
          datasync: () => handle.datasync(),
          close: () => handle.close(),
        };
      },
    };
    const writer = await openAuditWriter(
      writerOptions(dir, {
        now: () => now,
        fileSystem: slowDisk,
        batchMaxRecords: 10,
        batchDelayMs: 60_000,
        checkpointIntervalMs: 1000,
      }),
    );
    for (let i = 0; i < 400; i++) writer.record(deniedPublish(i));
    await writer.flush();
    expect(writer.stats().queueDepth).toBe(0);
    await writer.close();
    const reasons = auditFiles(dir)
      .flatMap(readLines)
      .map((l) => JSON.parse(l) as { event: { action: string }; audit?: { reason: string } })
      .filter((r) => r.event.action === 'audit.checkpoint')
      .map((r) => r.audit?.reason);
    // 40 batches of 10, one every 250 ms: from the fifth (1000 ms in) an interval checkpoint ends every fourth batch;
    // the shutdown checkpoint is a write of its own.
    expect(reasons).toEqual([...Array<string>(9).fill('interval'), 'shutdown']);
    expect(writes).toBe(41);
    expect((await verifyAuditLog(dir)).kind).toBe('intact');
  });
});

describe('rotate_max_age: 0', () => {
  it('is off, like the other durations, instead of a new file after every batch', async () => {
    const dir = tempDir();
    const writer = await openAuditWriter(writerOptions(dir, { rotateMaxAgeMs: 0 }));
    for (let i = 0; i < 3; i++) {
      writer.record(deniedPublish(i));
      await writer.flush();
    }
    await writer.close();
    expect(auditFiles(dir)).toHaveLength(1);
    appendFileSync(join(dir, 'notes.txt'), 'ignored');
    expect((await verifyAuditLog(dir)).kind).toBe('intact');
  });
});
