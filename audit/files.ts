import { closeSync, openSync, readdirSync, readFileSync, readSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';

/**
 * Audit files are named after the sequence number of their first record and a generation number that only
 * grows when a file with the same first sequence already exists (a run that crashed before completing its first
 * record). Ordering by (seq, generation) is the chain order; names never depend on the clock.
 */
const FILE_PATTERN = /^audit-(\d{16})-(\d{3})\.jsonl$/;

export interface AuditFileName {
  name: string;
  firstSeq: number;
  generation: number;
}

export function auditFileName(firstSeq: number, generation: number): string {
  return `audit-${String(firstSeq).padStart(16, '0')}-${String(generation).padStart(3, '0')}.jsonl`;
}

export function parseAuditFileName(name: string): AuditFileName | undefined {
  const m = FILE_PATTERN.exec(name);
  if (!m) return undefined;
  return { name, firstSeq: Number(m[1]), generation: Number(m[2]) };
}

/** The audit files of a directory in chain order; other files are ignored. */
export function listAuditFiles(dir: string): AuditFileName[] {
  const files: AuditFileName[] = [];
  for (const name of readdirSync(dir)) {
    const parsed = parseAuditFileName(name);
    if (parsed) files.push(parsed);
  }
  return files.sort((a, b) => a.firstSeq - b.firstSeq || a.generation - b.generation);
}

export interface FileTail {
  size: number;
  /** Bytes after the last newline: a torn line left by a crash or a failed write (empty when the file is clean). */
  torn: { offset: number; length: number; sha256: string } | undefined;
  /** The complete lines before the torn part, newest first, as far as `maxLines` reaches. */
  lastLines: string[];
}

const CHUNK = 64 * 1024;

/**
 * Reads a file from its end: the torn tail (if any) and up to `maxLines` complete lines before it, or, with
 * `stopAt`, the lines back to and including the newest one it accepts (all of them when none does).
 */
export function readFileTail(path: string, maxLines = 1, stopAt?: (line: string) => boolean): FileTail {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    let pos = size;
    let pending: Buffer = Buffer.alloc(0);
    let tornEnd: number | undefined;
    const lines: string[] = [];
    let torn: FileTail['torn'];
    let stopped = false;
    while (pos > 0 && !stopped && (tornEnd === undefined || lines.length < maxLines)) {
      const len = Math.min(CHUNK, pos);
      pos -= len;
      const chunk = Buffer.alloc(len);
      readSync(fd, chunk, 0, len, pos);
      pending = Buffer.concat([chunk, pending]);
      if (tornEnd === undefined) {
        const nl = pending.lastIndexOf(0x0a);
        if (nl === -1) continue;
        const tornStart = pos + nl + 1;
        torn =
          tornStart < size
            ? { offset: tornStart, length: size - tornStart, sha256: hashRange(fd, tornStart, size) }
            : undefined;
        tornEnd = tornStart;
        pending = pending.subarray(0, nl + 1);
      }
      // `pending` ends with a newline here; peel complete lines off its end.
      while (lines.length < maxLines && !stopped) {
        // Search before the line's own newline; a negative offset would count from the end instead.
        const prev = pending.length < 2 ? -1 : pending.lastIndexOf(0x0a, pending.length - 2);
        if (prev === -1 && pos > 0) break;
        const line = pending.subarray(prev + 1, pending.length - 1).toString('utf8');
        lines.push(line);
        stopped = stopAt?.(line) === true;
        pending = pending.subarray(0, prev + 1);
        if (pending.length === 0) break;
      }
    }
    if (tornEnd === undefined && size > 0) {
      torn = { offset: 0, length: size, sha256: hashRange(fd, 0, size) };
    }
    return { size, torn, lastLines: lines };
  } finally {
    closeSync(fd);
  }
}

/** SHA-256 hex of a byte range of an open file, read in chunks. */
export function hashRange(fd: number, start: number, end: number): string {
  const hash = createHash('sha256');
  const buf = Buffer.alloc(CHUNK);
  for (let pos = start; pos < end;) {
    const n = readSync(fd, buf, 0, Math.min(CHUNK, end - pos), pos);
    if (n <= 0) break;
    hash.update(buf.subarray(0, n));
    pos += n;
  }
  return hash.digest('hex');
}

export function auditFilePath(dir: string, name: string): string {
  return join(dir, name);
}

/**
 * `audit-head.json` names the newest file the broker started. Closed files are never written again, so nothing in
 * the remaining files can show that a newer one was deleted; this pointer, rewritten (by rename) each time a file
 * is created, is what lets the writer at start and `verify` notice that the newest file is gone.
 */
export const HEAD_FILE = 'audit-head.json';

export interface AuditHead {
  file: string;
  first_seq: number;
}

/** The head pointer; undefined when there is none, 'damaged' when it is not what the writer writes. */
export function readAuditHead(dir: string): AuditHead | 'damaged' | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, HEAD_FILE), 'utf8');
  } catch (error: unknown) {
    if (typeof error === 'object' && error !== null && 'code' in error && error.code === 'ENOENT') return undefined;
    return 'damaged';
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return 'damaged';
  }
  if (typeof parsed !== 'object' || parsed === null) return 'damaged';
  const head = parsed as Record<string, unknown>;
  const name = typeof head.file === 'string' ? parseAuditFileName(head.file) : undefined;
  if (!name || head.first_seq !== name.firstSeq) return 'damaged';
  return { file: name.name, first_seq: name.firstSeq };
}
