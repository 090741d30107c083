import { createPrivateKey, createPublicKey, sign } from 'node:crypto';
import { rmSync, truncateSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { checkpointMessage } from '../../../audit/record.js';
import { keyIdOf, loadPublicKey } from '../../../audit/signing-key.js';
import { describeVerifyResult, verifyAuditLog } from '../../../audit/verify.js';
import { openAuditWriter } from '../../../audit/writer.js';
import {
  allTempDirs,
  attackerKey,
  auditFiles,
  deniedPublish,
  findSecrets,
  readLines,
  rechain,
  removeTempDirs,
  tempDir,
  testKey,
  writeLines,
  writeLog,
  writerOptions,
} from './harness.js';

afterAll(() => {
  expect(findSecrets(allTempDirs())).toEqual([]);
  removeTempDirs();
});

const FILE = 'audit-0000000000000001-000.jsonl';
const TRUNCATED_HINT =
  'the tail was cut off, or the broker crashed and has not restarted, or it is still running (use --live)';

/** 10 events, a checkpoint (line 11), 10 events, the shutdown checkpoint (line 22): one file. */
async function standardLog(): Promise<{ dir: string; file: string; lines: string[] }> {
  const dir = tempDir();
  const writer = await openAuditWriter(writerOptions(dir));
  for (let i = 0; i < 10; i++) writer.record(deniedPublish(i));
  await writer.checkpoint();
  for (let i = 10; i < 20; i++) writer.record(deniedPublish(i));
  await writer.close();
  const file = join(dir, FILE);
  return { dir, file, lines: readLines(file) };
}

const hashOf = (line: string): string => (JSON.parse(line) as { hash: string }).hash;

async function report(dir: string, trusted = false): Promise<string> {
  const publicKeys = trusted ? [loadPublicKey(testKey().publicKeyFile)] : undefined;
  return describeVerifyResult(await verifyAuditLog(dir, { publicKeys }));
}

describe('verify reports each kind of tampering at the first broken record', () => {
  let log: Awaited<ReturnType<typeof standardLog>>;
  beforeEach(async () => {
    log = await standardLog();
  });

  it('an untouched log is intact', async () => {
    expect(await report(log.dir, true)).toBe(
      `OK 1 files, 22 records (seq 1..22), 2 checkpoints; signed by trusted key ${testKey().key.keyId}`,
    );
  });

  it('an edited field', async () => {
    const lines = [...log.lines];
    lines[4] = (lines[4] as string).replace('"name":"alice"', '"name":"alicf"');
    writeLines(log.file, lines);
    expect(await report(log.dir)).toBe(
      `BROKEN edited: ${FILE} line 5 seq 5: the record does not match its hash: its content was changed after it was written`,
    );
  });

  it('a deleted line', async () => {
    writeLines(
      log.file,
      log.lines.filter((_, i) => i !== 4),
    );
    expect(await report(log.dir)).toBe(
      `BROKEN deleted: ${FILE} line 5 seq 6: record seq 5 is missing before this line`,
    );
  });

  it('two swapped lines', async () => {
    const lines = [...log.lines];
    [lines[4], lines[5]] = [lines[5] as string, lines[4] as string];
    writeLines(log.file, lines);
    expect(await report(log.dir)).toBe(
      `BROKEN reordered: ${FILE} line 5 seq 6: records are out of order: seq 6 comes before seq 5 (expected seq 5 here)`,
    );
  });

  it('a tail cut at a line boundary', async () => {
    writeLines(log.file, log.lines.slice(0, 19));
    expect(await report(log.dir)).toBe(
      `BROKEN truncated: ${FILE} line 19 seq 19: the log ends at seq 19 without a shutdown checkpoint; 8 records after the last checkpoint (seq 11) are unsigned: ${TRUNCATED_HINT}`,
    );
  });

  it('a tail cut in the middle of a line', async () => {
    const size = statSync(log.file).size;
    truncateSync(log.file, size - 100);
    const tornLength = Buffer.byteLength(log.lines[21] as string) + 1 - 100;
    expect(await report(log.dir)).toBe(
      `BROKEN truncated: ${FILE} line 22 seq 21: the log ends with a torn line (${tornLength} bytes after seq 21) that was never sealed: the file was truncated, or the broker crashed and has not restarted since`,
    );
  });

  it('the whole file re-chained without the key after an edit', async () => {
    const head = log.lines.slice(0, 4);
    const rest = rechain(log.lines.slice(4), hashOf(log.lines[3] as string), (r, i) => {
      if (i === 0) (r.user as { name: string }).name = 'mallory';
    });
    writeLines(log.file, [...head, ...rest]);
    const signed = hashOf(log.lines[9] as string).slice(0, 16);
    const now = hashOf(rest[5] as string).slice(0, 16);
    expect(await report(log.dir)).toBe(
      `BROKEN re-chained: ${FILE} line 11 seq 11: the checkpoint signed hash ${signed}… for seq 10, but the chain holds ${now}… there: the log was rewritten without the signing key`,
    );
  });

  it('the whole file re-chained with the checkpoints left out', async () => {
    const events = log.lines.filter((l) => !l.includes('"action":"audit.checkpoint"'));
    const renumbered = rechain(events, '0'.repeat(64), (r, i) => {
      r.seq = i + 1;
    });
    writeLines(log.file, renumbered);
    expect(await report(log.dir)).toBe(
      `BROKEN unsigned: ${FILE} line 20 seq 20: the log holds no checkpoint: nothing is signed, so a rewrite without the signing key cannot be ruled out`,
    );
  });

  it('a checkpoint whose signature was altered', async () => {
    const head = log.lines.slice(0, 10);
    const rest = rechain(log.lines.slice(10), hashOf(log.lines[9] as string), (r, i) => {
      if (i !== 0) return;
      const cp = (r.audit as { checkpoint: { signature: string } }).checkpoint;
      const sig = Buffer.from(cp.signature, 'base64');
      sig[0] = (sig[0] as number) ^ 1;
      cp.signature = sig.toString('base64');
    });
    writeLines(log.file, [...head, ...rest]);
    expect(await report(log.dir)).toBe(
      `BROKEN bad-signature: ${FILE} line 11 seq 11: the checkpoint signature by key ${testKey().key.keyId} does not verify`,
    );
  });

  it('the whole file re-chained and re-signed with another key: caught only against the trusted public key', async () => {
    const attacker = attackerKey();
    const privateKey = createPrivateKey(attacker.privateKey);
    const publicKey = createPublicKey(attacker.publicKey);
    const keyId = keyIdOf(publicKey);
    const forged = rechain(log.lines, '0'.repeat(64), (r, _i, prev) => {
      if (r.seq === 3) (r.user as { name: string }).name = 'mallory';
      const a = r.audit as { checkpoint?: Record<string, unknown> } | undefined;
      if (!a?.checkpoint) return;
      const seq = (r.seq as number) - 1;
      a.checkpoint = {
        seq,
        hash: prev,
        key_id: keyId,
        public_key: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
        signature: sign(
          null,
          checkpointMessage(seq, prev, (r.audit as { reason: string }).reason),
          privateKey,
        ).toString('base64'),
      };
    });
    writeLines(log.file, forged);
    expect(await report(log.dir, true)).toBe(
      `BROKEN bad-signature: ${FILE} line 11 seq 11: the checkpoint was signed by key ${keyId}, which is not one of the trusted public keys`,
    );
    // Without --public-key the forgery is self-consistent; the report names the foreign key id for the reviewer.
    expect(await report(log.dir)).toBe(
      `OK 1 files, 22 records (seq 1..22), 2 checkpoints; signed by key ${keyId} named in the log itself (pass --public-key to rule out a rewrite with another key)`,
    );
  });
});

describe('verify across rotated files', () => {
  async function rotatedLog(): Promise<{ dir: string; files: string[] }> {
    const dir = tempDir();
    await writeLog(dir, 40, { rotateMaxBytes: 3000, batchMaxRecords: 4 });
    return { dir, files: auditFiles(dir) };
  }
  const firstSeqOf = (file: string): number => (JSON.parse(readLines(file)[0] as string) as { seq: number }).seq;

  it('a deleted rotated file in the middle', async () => {
    const { dir, files } = await rotatedLog();
    const [a, b, c] = [files[0] as string, files[1] as string, files[2] as string];
    const [bSeq, cSeq] = [firstSeqOf(b), firstSeqOf(c)];
    rmSync(b);
    expect(await report(dir)).toBe(
      `BROKEN missing-file: ${basename(c)} line 1 seq ${cSeq}: records seq ${bSeq}..${cSeq - 1} are missing between ${basename(a)} and ${basename(c)}: a file was deleted`,
    );
  });

  it('the oldest file deleted outside the broker', async () => {
    const { dir, files } = await rotatedLog();
    rmSync(files[0] as string);
    const b = files[1] as string;
    expect(await report(dir)).toBe(
      `BROKEN missing-file: ${basename(b)} line 1 seq ${firstSeqOf(b)}: the log starts at seq ${firstSeqOf(b)}, but no retention record accounts for records 1..${firstSeqOf(b) - 1}: older files were deleted outside the broker`,
    );
  });

  it('the newest file deleted', async () => {
    const { dir, files } = await rotatedLog();
    const last = files[files.length - 1] as string;
    const before = files[files.length - 2] as string;
    rmSync(last);
    const lines = readLines(before);
    const seq = (JSON.parse(lines[lines.length - 1] as string) as { seq: number }).seq;
    expect(await report(dir)).toBe(
      `BROKEN missing-file: ${basename(before)} line ${lines.length} seq ${seq}: the log ends at seq ${seq}, but audit-head.json names ${basename(last)} (from seq ${seq + 1}) as the newest file the broker started, and it is missing: the newest files were deleted`,
    );
  });

  it('a live log is accepted with --live and its unsigned tail reported', async () => {
    const dir = tempDir();
    const writer = await openAuditWriter(writerOptions(dir));
    for (let i = 0; i < 5; i++) writer.record(deniedPublish(i));
    await writer.checkpoint();
    for (let i = 5; i < 8; i++) writer.record(deniedPublish(i));
    await writer.flush();
    expect((await verifyAuditLog(dir)).kind).toBe('broken');
    const live = await verifyAuditLog(dir, { live: true });
    expect(live.kind).toBe('intact');
    expect(live.summary.openTail).toEqual({ records: 3, afterCheckpointSeq: 6, partialLine: false });
    await writer.close();
    writeFileSync(join(dir, 'notes.txt'), 'files that are not audit files are ignored');
    expect((await verifyAuditLog(dir)).kind).toBe('intact');
  });
});
