import { execFileSync } from 'node:child_process';
import { sign } from 'node:crypto';
import { appendFileSync, existsSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../audit/canonical.js';
import { chainHash, checkpointMessage } from '../../../audit/record.js';
import { describeVerifyResult, verifyAuditLog, type VerifyResult } from '../../../audit/verify.js';
import {
  allTempDirs,
  auditFiles,
  deniedPublish,
  findSecrets,
  readLines,
  removeTempDirs,
  tempDir,
  testKey,
  writeLines,
  writeLog,
} from './harness.js';

afterAll(() => {
  expect(findSecrets(allTempDirs())).toEqual([]);
  removeTempDirs();
});

/** Smaller than one record, a few records, many records, and the default. */
const BLOCK_SIZES = [256, 4096, 65_536, undefined];

function essence(result: VerifyResult): unknown {
  return result.kind === 'intact'
    ? { kind: 'intact', summary: result.summary }
    : {
        kind: result.kind,
        problem: result.problem,
        at: result.at,
        detail: result.detail,
        records: result.summary.records,
      };
}

/** The same verdict whatever the block size, i.e. wherever lines are split between reads; returns its report. */
async function verdict(dir: string): Promise<string> {
  const results = await Promise.all(BLOCK_SIZES.map((blockBytes) => verifyAuditLog(dir, { blockBytes })));
  const first = results[0] as VerifyResult;
  for (const r of results.slice(1)) expect(essence(r)).toEqual(essence(first));
  return describeVerifyResult(first);
}

/** Three rotated files of about 2.5 KiB each, 40 events with user names in several scripts. */
async function rotatedLog(): Promise<{ dir: string; files: string[] }> {
  const dir = tempDir();
  await writeLog(dir, 40, { batchMaxRecords: 4, rotateMaxBytes: 6000 }, (i) =>
    deniedPublish(i, { user: { name: ['alice', 'Zoë', '東京-sensor', 'rocket-🚀'][i % 4] as string } }),
  );
  return { dir, files: auditFiles(dir) };
}

describe('verify gives the same exact answer wherever a read splits the lines', () => {
  it('an intact rotated log with non-ASCII names is intact at every block size', async () => {
    const { dir, files } = await rotatedLog();
    expect(files.length).toBeGreaterThan(2);
    expect(await verdict(dir)).toMatch(/^OK \d+ files, \d+ records/);
  });

  it('an edit in the second file is reported at its line at every block size', async () => {
    const { dir, files } = await rotatedLog();
    const file = files[1] as string;
    const lines = readLines(file);
    lines[2] = (lines[2] as string).replace('"qos":1', '"qos":2');
    writeLines(file, lines);
    const seq = (JSON.parse(lines[2] as string) as { seq: number }).seq;
    expect(await verdict(dir)).toBe(
      `BROKEN edited: ${basename(file)} line 3 seq ${seq}: the record does not match its hash: its content was changed after it was written`,
    );
  });

  it('a deleted and a swapped line are told apart at every block size', async () => {
    const { dir, files } = await rotatedLog();
    const file = files[1] as string;
    const lines = readLines(file);
    const seqOf = (l: string | undefined): number => (JSON.parse(l as string) as { seq: number }).seq;
    writeLines(file, [...lines.slice(0, 3), ...lines.slice(4)]);
    expect(await verdict(dir)).toBe(
      `BROKEN deleted: ${basename(file)} line 4 seq ${seqOf(lines[4])}: record seq ${seqOf(lines[3])} is missing before this line`,
    );
    writeLines(file, [...lines.slice(0, 3), lines[4] as string, lines[3] as string, ...lines.slice(5)]);
    expect(await verdict(dir)).toBe(
      `BROKEN reordered: ${basename(file)} line 4 seq ${seqOf(lines[4])}: records are out of order: seq ${seqOf(lines[4])} comes before seq ${seqOf(lines[3])} (expected seq ${seqOf(lines[3])} here)`,
    );
  });

  it('a CRLF line end is not a record', async () => {
    const { dir, files } = await rotatedLog();
    const file = files[0] as string;
    const lines = readLines(file);
    lines[1] = `${lines[1] as string}\r`;
    writeLines(file, lines);
    expect(await verdict(dir)).toBe(
      `BROKEN edited: ${basename(file)} line 2: the line is not a well-formed audit record`,
    );
  });

  it('bytes after the last newline are a torn tail, and a tail cut mid-line likewise', async () => {
    const { dir, files } = await rotatedLog();
    const last = files[files.length - 1] as string;
    // A crash, not a stop: nothing follows a shutdown checkpoint, so the torn line replaces it.
    writeLines(last, readLines(last).slice(0, -1));
    appendFileSync(last, '{"@timestamp":"2026');
    // readLines keeps the torn part as its last element: that is the torn line's number.
    const n = readLines(last).length;
    expect(await verdict(dir)).toMatch(
      new RegExp(`^BROKEN truncated: ${basename(last)} line ${n} seq \\d+: the log ends with a torn line \\(19 bytes`),
    );
    truncateSync(last, statSync(last).size - 100);
    expect(await verdict(dir)).toMatch(/^BROKEN truncated: .* the log ends with a torn line/);
  });

  it('invalid UTF-8 inside a record is an edit', async () => {
    const { dir, files } = await rotatedLog();
    const file = files[0] as string;
    const lines = readLines(file);
    const bytes = Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8');
    const at = bytes.indexOf('Zoë');
    bytes[at + 2] = 0xff;
    writeLines(file, []);
    appendFileSync(file, bytes);
    expect(await verdict(dir)).toMatch(/^BROKEN edited: .* line 2 seq 2: the record does not match its hash/);
  });
});

/**
 * What only the holder of the signing key (or a writer bug) could produce: a record whose bytes are valid JSON
 * but not canonical, correctly hashed as written, and every checkpoint after it re-signed with the real key.
 * Hashes, links and signatures all hold; only the canonical-form check can tell.
 */
function rewriteNonCanonical(lines: string[], index: number, mangle: (body: string) => string): string[] {
  const key = testKey().key;
  let prev = (JSON.parse(lines[index] as string) as { prev_hash: string }).prev_hash;
  return lines.map((line, i) => {
    if (i < index) return line;
    const r = JSON.parse(line) as Record<string, unknown> & {
      seq: number;
      audit?: { checkpoint?: Record<string, unknown>; reason?: string };
    };
    delete r.hash;
    r.prev_hash = prev;
    const cp = r.audit?.checkpoint;
    if (cp) {
      cp.hash = prev;
      cp.seq = r.seq - 1;
      cp.signature = sign(null, checkpointMessage(r.seq - 1, prev, r.audit?.reason ?? ''), key.privateKey).toString(
        'base64',
      );
    }
    const canonical = canonicalJson(r);
    const body = i === index ? mangle(canonical) : canonical;
    const hash = chainHash(prev, body);
    prev = hash;
    return `${body.slice(0, -1)},"hash":"${hash}"}`;
  });
}

describe('a record that is valid JSON but not canonical', () => {
  const mangles: Array<[string, (body: string) => string]> = [
    ['a space after a comma', (b) => b.replace('","', '", "')],
    ['two members swapped', (b) => b.replace(/"qos":1,"reason_code":135/, '"reason_code":135,"qos":1')],
    ['a number written as 1.0', (b) => b.replace('"qos":1', '"qos":1.0')],
    ['a character escaped as \\u', (b) => b.replace('"alice"', '"\\u0061lice"')],
  ];
  for (const [name, mangle] of mangles) {
    it(`${name}: reported as edited at that record, although hashes and signatures hold`, async () => {
      const dir = tempDir();
      await writeLog(dir, 6);
      const file = auditFiles(dir)[0] as string;
      const lines = readLines(file);
      const rewritten = rewriteNonCanonical(lines, 2, mangle);
      expect(rewritten[2]).not.toBe(lines[2]);
      writeLines(file, rewritten);
      expect(await verdict(dir)).toBe(
        `BROKEN edited: ${basename(file)} line 3 seq 3: the record is not in canonical JSON form (RFC 8785): its bytes were rewritten, and another verifier would recompute a different hash`,
      );
      // Without the mangled record the same rewrite is intact: the check is what catches it.
      writeLines(
        file,
        rewriteNonCanonical(lines, 2, (b) => b),
      );
      expect(await verdict(dir)).toMatch(/^OK 1 files, 7 records/);
    });
  }
});

describe('verify on worker threads (the built command)', () => {
  const DIST = resolve(import.meta.dirname, '../../../dist/audit/verify.js');

  function verifyInChild(dir: string): unknown {
    const script = `const { verifyAuditLog } = await import(${JSON.stringify(DIST)});
      const r = await verifyAuditLog(${JSON.stringify(dir)}, { threads: 2, blockBytes: 2048 });
      process.stdout.write(JSON.stringify(r));`;
    const file = join(tempDir('bulwark-verify-child-'), 'verify.mjs');
    writeFileSync(file, script);
    const out = execFileSync(process.execPath, [file], { encoding: 'utf8' });
    return essence(JSON.parse(out) as VerifyResult);
  }

  it('gives the same results as the calling thread for an intact and an edited log', async () => {
    expect(existsSync(DIST)).toBe(true);
    const { dir, files } = await rotatedLog();
    expect(verifyInChild(dir)).toEqual(essence(await verifyAuditLog(dir)));
    expect((verifyInChild(dir) as { kind: string }).kind).toBe('intact');
    const file = files[2] as string;
    const lines = readLines(file);
    lines[3] = (lines[3] as string).replace('"qos":1', '"qos":0');
    writeLines(file, lines);
    const inline = essence(await verifyAuditLog(dir));
    expect(inline).toMatchObject({ kind: 'broken', problem: 'edited', at: { line: 4 } });
    expect(verifyInChild(dir)).toEqual(inline);
  });
});
