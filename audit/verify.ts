import { createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AuditAction } from './actions.js';
import { canonicalJson } from './canonical.js';
import { createBlockScanner, FileBlocks, type BlockScanner } from './verify-blocks.js';
import type { ScanRun } from './verify-scan.js';
import { HEAD_FILE, listAuditFiles, readAuditHead, readFileTail, type AuditHead } from './files.js';
import {
  GENESIS_HASH,
  HASH_SUFFIX_LENGTH,
  chainHash,
  checkpointSignatureVersion,
  parseJsonObject,
  parseRecordLine,
  type AuditRecord,
} from './record.js';
import { keyIdOf } from './signing-key.js';

/** What `verify` found wrong, in the reviewer's words. */
export type VerifyProblem =
  /** A record's content does not match its hash, a line is not a record, or a record was replaced. */
  | 'edited'
  /** Records are missing inside a file. */
  | 'deleted'
  /** Records are out of sequence order. */
  | 'reordered'
  /** The log's end is missing: a torn last line that was never sealed, or no shutdown checkpoint at the end. */
  | 'truncated'
  /** A whole file is missing: a gap between files, or the oldest files gone without a retention record. */
  | 'missing-file'
  /** A checkpoint signature does not verify, or it was made by a key that is not trusted. */
  | 'bad-signature'
  /** Hashes are self-consistent but a checkpoint signed a different chain: rewritten without the signing key. */
  | 're-chained'
  /** Nothing in the log is signed. */
  | 'unsigned';

export interface VerifyLocation {
  file: string;
  line: number;
  seq: number | undefined;
}

export interface VerifySummary {
  files: number;
  records: number;
  firstSeq: number | undefined;
  lastSeq: number | undefined;
  checkpoints: number;
  /** Key ids that signed checkpoints. */
  keyIds: string[];
  /** True when signatures were checked against keys given with --public-key. */
  trustedKeys: boolean;
  sealedTornTails: number;
  /** Records before the oldest remaining file, accounted for by `audit.retention_deleted` records. */
  retention: { deletedThroughSeq: number; filesDeleted: number } | undefined;
  /** Files that ended without a checkpoint before the next file began (the broker crashed or a write failed). */
  uncleanEnds: number;
  /** With `live`: records after the last checkpoint (not yet signed), and a partial line being written. */
  openTail: { records: number; afterCheckpointSeq: number | undefined; partialLine: boolean } | undefined;
}

export type VerifyResult =
  | { kind: 'intact'; summary: VerifySummary }
  | { kind: 'broken'; problem: VerifyProblem; at: VerifyLocation; detail: string; summary: VerifySummary };

export interface VerifyOptions {
  /** Trusted Ed25519 public keys; without them the keys embedded in checkpoints are used (detects edits only). */
  publicKeys?: ReadonlyArray<{ keyId: string; publicKey: KeyObject }>;
  /** The broker is running: accept an unsigned tail after the last checkpoint and a partial last line. */
  live?: boolean;
  /**
   * Worker threads that check blocks beside the calling thread: 0 checks on the calling thread only; default: one
   * per further core (at most 3) for logs of 32 MiB and more, when running from the built JavaScript.
   */
  threads?: number;
  /** Bytes read at a time (default 8 MiB); a line longer than this is read whole all the same. */
  blockBytes?: number;
}

class Broken {
  constructor(
    readonly problem: VerifyProblem,
    readonly at: VerifyLocation,
    readonly detail: string,
  ) {}
}

interface TornTail {
  file: string;
  line: number;
  offset: number;
  length: number;
  sha256: string;
  afterSeq: number | undefined;
}

interface Position {
  file: string;
  line: number;
  seq: number;
}

/**
 * Checks a whole audit directory in one streaming pass (memory does not grow with the log): every line's hash,
 * the sequence, the chain across files, every checkpoint signature, sealed torn tails, retention records, and that
 * the log ends signed. Returns the first problem with its file, line and sequence number.
 */
export async function verifyAuditLog(dir: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  const v = new Verifier(dir, options);
  try {
    await v.run();
    return { kind: 'intact', summary: v.summary() };
  } catch (error: unknown) {
    if (error instanceof Broken) {
      return { kind: 'broken', problem: error.problem, at: error.at, detail: error.detail, summary: v.summary() };
    }
    throw error;
  }
}

class Verifier {
  private files = 0;
  private records = 0;
  private firstSeq: number | undefined;
  private firstRecord: (Position & { prevHash: string }) | undefined;
  private expectedSeq: number | undefined;
  private prevHash: string | undefined;
  private prev: Position | undefined;
  private checkpoints = 0;
  private lastCheckpointSeq: number | undefined;
  private lastAction: string | undefined;
  private lastCheckpointReason: string | undefined;
  private recordsSinceCheckpoint = 0;
  private readonly keyIds = new Set<string>();
  private readonly trusted: Map<string, KeyObject> | undefined;
  private readonly embeddedKeys = new Map<string, KeyObject>();
  private pendingTorn: TornTail[] = [];
  private sealed = 0;
  private deletedThrough: { seq: number; hash: string; files: number; recordSeq: number } | undefined;
  private uncleanEnds = 0;
  private gap: { expected: number; found: number; at: Position } | undefined;
  private partialLine = false;
  private presentFiles = new Set<string>();
  private scanner: BlockScanner | undefined;
  /** The last shutdown checkpoint: nothing may follow it in its file (the run ended there). */
  private closedAt: Position | undefined;
  /** Some checkpoint signed its reason (version 2): the broker that wrote it keeps audit-head.json. */
  private signedV2 = false;
  private head: AuditHead | 'damaged' | undefined;

  constructor(
    private readonly dir: string,
    private readonly options: VerifyOptions,
  ) {
    this.trusted = options.publicKeys ? new Map(options.publicKeys.map((k) => [k.keyId, k.publicKey])) : undefined;
  }

  summary(): VerifySummary {
    const live = this.options.live === true && (this.recordsSinceCheckpoint > 0 || this.partialLine);
    return {
      files: this.files,
      records: this.records,
      firstSeq: this.firstSeq,
      lastSeq: this.prev?.seq,
      checkpoints: this.checkpoints,
      keyIds: [...this.keyIds],
      trustedKeys: this.trusted !== undefined,
      sealedTornTails: this.sealed,
      retention: this.deletedThrough
        ? { deletedThroughSeq: this.deletedThrough.seq, filesDeleted: this.deletedThrough.files }
        : undefined,
      uncleanEnds: this.uncleanEnds,
      openTail: live
        ? {
            records: this.recordsSinceCheckpoint,
            afterCheckpointSeq: this.lastCheckpointSeq,
            partialLine: this.partialLine,
          }
        : undefined,
    };
  }

  async run(): Promise<void> {
    if (!existsSync(this.dir) || !statSync(this.dir).isDirectory()) {
      throw new Broken(
        'missing-file',
        { file: this.dir, line: 0, seq: undefined },
        'the audit directory does not exist',
      );
    }
    const files = listAuditFiles(this.dir);
    if (files.length === 0) {
      throw new Broken(
        'missing-file',
        { file: this.dir, line: 0, seq: undefined },
        'the directory holds no audit files',
      );
    }
    this.presentFiles = new Set(files.map((f) => f.name));
    this.head = readAuditHead(this.dir);
    const totalBytes = files.reduce((sum, f) => sum + statSync(join(this.dir, f.name)).size, 0);
    this.scanner = createBlockScanner(totalBytes, this.options.threads);
    try {
      for (let i = 0; i < files.length; i++) {
        const name = (files[i] as { name: string }).name;
        await this.verifyFile(name, i === files.length - 1, this.scanner);
      }
    } finally {
      await this.scanner.close();
    }
    this.finish();
  }

  /**
   * Blocks of lines come pre-checked by the fast scan (verify-scan.ts): runs of ordinary records are applied as a
   * whole when they continue the chain exactly; every other line goes through `line()`, which makes every
   * decision and every error report.
   */
  private async verifyFile(name: string, isLast: boolean, scanner: BlockScanner): Promise<void> {
    this.files++;
    const path = join(this.dir, name);
    const reader = new FileBlocks(path, scanner, this.options.blockBytes);
    let base = 0;
    for await (const block of reader.blocks()) {
      for (const item of block.result.items) {
        if (item.kind === 'slow') {
          this.line(
            block.buf.toString('utf8', item.start, item.end),
            name,
            base + item.line + 1,
            base + item.line === 0,
          );
        } else {
          this.applyRun(item, block.buf, name, base);
        }
      }
      base += block.result.lines;
    }
    const lineNo = base;
    this.resolveGap();
    const endedWithCheckpoint = this.lastAction === AuditAction.auditCheckpoint;
    if (reader.rest.length > 0) {
      const tail = readFileTail(path, 0);
      const closed = this.closedAt;
      if (closed?.file === name) {
        throw new Broken(
          'edited',
          { file: name, line: lineNo + 1, seq: undefined },
          `bytes follow the shutdown checkpoint at line ${closed.line} (seq ${closed.seq}), which ended the run that wrote this file: they were appended outside the broker`,
        );
      }
      if (isLast && this.options.live) {
        this.partialLine = true;
      } else if (tail.torn) {
        this.pendingTorn.push({ file: name, line: lineNo + 1, afterSeq: this.prev?.seq, ...tail.torn });
      }
    } else if (!isLast && !endedWithCheckpoint && lineNo > 0) {
      this.uncleanEnds++;
    }
  }

  /** A run of lines the fast scan found canonical, hash-correct and chained to each other. */
  private applyRun(run: ScanRun, buf: Buffer, file: string, base: number): void {
    let start = run.start;
    for (let i = 0; i < run.count; i++) {
      const seq = run.firstSeq + i;
      const prevHash = i === 0 ? run.firstPrevHash : this.prevHash;
      const continues =
        this.gap === undefined &&
        this.pendingTorn.length === 0 &&
        this.closedAt?.file !== file &&
        this.expectedSeq === seq &&
        this.prevHash === prevHash;
      if (continues) {
        const n = run.count - i;
        this.records += n;
        this.recordsSinceCheckpoint += n;
        this.expectedSeq = run.lastSeq + 1;
        this.prevHash = run.lastHash;
        this.prev = { file, line: base + run.line + run.count, seq: run.lastSeq };
        this.lastAction = undefined;
        return;
      }
      // Where the chain does not simply continue (a file's first line, a gap, a pending seal), the exact path
      // decides, one line at a time, until it does.
      const nl = buf.indexOf(0x0a, start);
      const lineIndex = base + run.line + i;
      this.line(buf.toString('utf8', start, nl), file, lineIndex + 1, lineIndex === 0);
      start = nl + 1;
    }
  }

  private line(line: string, file: string, lineNo: number, firstInFile: boolean): void {
    const parsed = readLine(line);
    if (!parsed) {
      throw new Broken('edited', { file, line: lineNo, seq: undefined }, 'the line is not a well-formed audit record');
    }
    const record = parsed.record;
    const here: Position = { file, line: lineNo, seq: parsed.seq };
    const computed = chainHash(parsed.prevHash, `${line.slice(0, line.length - HASH_SUFFIX_LENGTH)}}`);
    if (computed !== parsed.hash) {
      throw new Broken(
        'edited',
        { file, line: lineNo, seq: parsed.seq },
        'the record does not match its hash: its content was changed after it was written',
      );
    }
    if (!isCanonical(line)) {
      throw new Broken(
        'edited',
        { file, line: lineNo, seq: parsed.seq },
        'the record is not in canonical JSON form (RFC 8785): its bytes were rewritten, and another verifier would recompute a different hash',
      );
    }

    if (this.gap) {
      // One line after a sequence gap tells a swap (the missing record comes next) from a deletion.
      const gap = this.gap;
      this.gap = undefined;
      if (parsed.seq < gap.found) {
        throw new Broken(
          'reordered',
          { file: gap.at.file, line: gap.at.line, seq: gap.at.seq },
          `records are out of order: seq ${gap.found} comes before seq ${parsed.seq} (expected seq ${gap.expected} here)`,
        );
      }
      throw new Broken(
        'deleted',
        { file: gap.at.file, line: gap.at.line, seq: gap.at.seq },
        gap.found - gap.expected === 1
          ? `record seq ${gap.expected} is missing before this line`
          : `records seq ${gap.expected}..${gap.found - 1} are missing before this line`,
      );
    }

    const closed = this.closedAt;
    if (closed?.file === file) {
      throw new Broken(
        'edited',
        here,
        `a record follows the shutdown checkpoint at line ${closed.line} (seq ${closed.seq}), which ended the run that wrote this file: it was appended outside the broker`,
      );
    }
    if (this.pendingTorn.length > 0) this.checkSeal(record, here);
    else if (record?.event.action === AuditAction.auditTornTailSealed) this.checkOrphanSeal(record, here);

    if (this.expectedSeq === undefined) {
      this.firstSeq = parsed.seq;
      this.firstRecord = { ...here, prevHash: parsed.prevHash };
      if (parsed.seq === 1 && parsed.prevHash !== GENESIS_HASH) {
        throw new Broken(
          'edited',
          { file, line: lineNo, seq: 1 },
          'the first record does not start from the genesis hash',
        );
      }
    } else if (parsed.seq !== this.expectedSeq) {
      if (parsed.seq < this.expectedSeq) {
        throw new Broken(
          'reordered',
          { file, line: lineNo, seq: parsed.seq },
          `records are out of order: seq ${parsed.seq} follows seq ${this.expectedSeq - 1}`,
        );
      }
      if (firstInFile) {
        throw new Broken(
          'missing-file',
          { file, line: lineNo, seq: parsed.seq },
          `records seq ${this.expectedSeq}..${parsed.seq - 1} are missing between ${this.prev?.file ?? '?'} and ${file}: a file was deleted`,
        );
      }
      this.gap = { expected: this.expectedSeq, found: parsed.seq, at: here };
    } else if (parsed.prevHash !== this.prevHash) {
      const prev = this.prev as Position;
      throw new Broken(
        'edited',
        { file: prev.file, line: prev.line, seq: prev.seq },
        `record seq ${prev.seq} was replaced: seq ${parsed.seq} was chained to a different record`,
      );
    }

    const action = record?.event.action;
    if (record && action === AuditAction.auditCheckpoint) this.checkCheckpoint(record, here);
    else this.recordsSinceCheckpoint++;
    if (record && action === AuditAction.auditRetentionDeleted) this.noteRetention(record);

    this.records++;
    this.expectedSeq = parsed.seq + 1;
    this.prevHash = parsed.hash;
    this.prev = here;
    this.lastAction = action;
  }

  private resolveGap(): void {
    if (!this.gap) return;
    const gap = this.gap;
    this.gap = undefined;
    throw new Broken(
      'deleted',
      { file: gap.at.file, line: gap.at.line, seq: gap.at.seq },
      `records seq ${gap.expected}..${gap.found - 1} are missing before this line`,
    );
  }

  private checkCheckpoint(record: AuditRecord, here: Position): void {
    const cp = record.audit?.checkpoint;
    const at = { file: here.file, line: here.line, seq: record.seq };
    if (!cp || typeof cp.signature !== 'string' || typeof cp.key_id !== 'string') {
      throw new Broken('bad-signature', at, 'the checkpoint carries no signature');
    }
    if (cp.seq !== record.seq - 1 || cp.hash !== record.prev_hash) {
      throw new Broken(
        're-chained',
        at,
        `the checkpoint signed hash ${cp.hash.slice(0, 16)}… for seq ${cp.seq}, but the chain holds ${record.prev_hash.slice(0, 16)}… there: the log was rewritten without the signing key`,
      );
    }
    const key = this.keyFor(cp.key_id, cp.public_key, at);
    // Version 2 signs the reason too; a version 1 checkpoint (older brokers) signs only the head, so its reason
    // is taken as written.
    const version = checkpointSignatureVersion(cp, record.audit?.reason, key);
    if (version === undefined) {
      throw new Broken('bad-signature', at, `the checkpoint signature by key ${cp.key_id} does not verify`);
    }
    if (version === 2) this.signedV2 = true;
    this.keyIds.add(cp.key_id);
    this.checkpoints++;
    this.lastCheckpointSeq = record.seq;
    this.lastCheckpointReason = record.audit?.reason;
    this.recordsSinceCheckpoint = 0;
    if (this.lastCheckpointReason === 'shutdown') this.closedAt = { file: here.file, line: here.line, seq: record.seq };
  }

  private keyFor(keyId: string, embedded: string | undefined, at: VerifyLocation): KeyObject {
    if (this.trusted) {
      const key = this.trusted.get(keyId);
      if (!key) {
        throw new Broken(
          'bad-signature',
          at,
          `the checkpoint was signed by key ${keyId}, which is not one of the trusted public keys`,
        );
      }
      return key;
    }
    const cached = this.embeddedKeys.get(keyId);
    if (cached) return cached;
    let key: KeyObject;
    try {
      key = createPublicKey({ key: Buffer.from(embedded ?? '', 'base64'), format: 'der', type: 'spki' });
    } catch {
      throw new Broken('bad-signature', at, 'the checkpoint names no usable public key');
    }
    if (keyIdOf(key) !== keyId) throw new Broken('bad-signature', at, 'the checkpoint key id does not match its key');
    this.embeddedKeys.set(keyId, key);
    return key;
  }

  private checkSeal(record: AuditRecord | undefined, here: Position): void {
    const torn = this.pendingTorn[0] as TornTail;
    const a = record?.audit;
    const matches =
      record?.event.action === AuditAction.auditTornTailSealed &&
      a?.file === torn.file &&
      a.offset === torn.offset &&
      a.length === torn.length &&
      a.sha256 === torn.sha256;
    if (!matches) {
      throw new Broken(
        'truncated',
        { file: torn.file, line: torn.line, seq: torn.afterSeq },
        `torn line at the end of ${torn.file} (${torn.length} bytes after seq ${torn.afterSeq ?? 'none'}) was not sealed by the next record (${here.file} line ${here.line})`,
      );
    }
    this.pendingTorn.shift();
    this.sealed++;
  }

  /** A seal with no torn tail before it is fine only when its file is gone, i.e. deleted by retention. */
  private checkOrphanSeal(record: AuditRecord, here: Position): void {
    const file = record.audit?.file;
    if (this.expectedSeq === undefined && file !== undefined && !this.presentFiles.has(file)) {
      this.sealed++;
      return;
    }
    throw new Broken(
      'edited',
      { file: here.file, line: here.line, seq: record.seq },
      `the record seals a torn tail of ${file ?? '?'}, but that file ends cleanly`,
    );
  }

  private noteRetention(record: AuditRecord): void {
    const a = record.audit;
    if (typeof a?.last_seq !== 'number' || typeof a.last_hash !== 'string') return;
    const files = (this.deletedThrough?.files ?? 0) + 1;
    if (!this.deletedThrough || a.last_seq >= this.deletedThrough.seq) {
      this.deletedThrough = { seq: a.last_seq, hash: a.last_hash, files, recordSeq: record.seq };
    } else {
      this.deletedThrough.files = files;
    }
  }

  /**
   * Closed files are never written again, so nothing in the remaining files shows that a newer file was deleted;
   * audit-head.json, which the broker rewrites each time it starts a file, names the newest one.
   */
  private checkHead(last: Position): void {
    const head = this.head;
    const at = { file: last.file, line: last.line, seq: last.seq };
    if (head === 'damaged') {
      throw new Broken('missing-file', at, `${HEAD_FILE} is not the head pointer the broker writes`);
    }
    if (head === undefined) {
      if (!this.signedV2) return;
      throw new Broken(
        'missing-file',
        at,
        `the log ends at seq ${last.seq}, but ${HEAD_FILE}, which the broker that wrote it keeps, is missing: the newest files may have been deleted with it`,
      );
    }
    if (!this.presentFiles.has(head.file)) {
      throw new Broken(
        'missing-file',
        at,
        `the log ends at seq ${last.seq}, but ${HEAD_FILE} names ${head.file} (from seq ${head.first_seq}) as the newest file the broker started, and it is missing: the newest files were deleted`,
      );
    }
  }

  private finish(): void {
    const torn = this.pendingTorn[0];
    if (torn) {
      throw new Broken(
        'truncated',
        { file: torn.file, line: torn.line, seq: torn.afterSeq },
        `the log ends with a torn line (${torn.length} bytes after seq ${torn.afterSeq ?? 'none'}) that was never sealed: the file was truncated, or the broker crashed and has not restarted since`,
      );
    }
    const first = this.firstRecord;
    const last = this.prev;
    if (!first || !last) {
      throw new Broken('truncated', { file: this.dir, line: 0, seq: undefined }, 'the audit files hold no records');
    }
    if (first.seq > 1) {
      const d = this.deletedThrough;
      if (!d || d.seq !== first.seq - 1 || d.hash !== first.prevHash) {
        throw new Broken(
          'missing-file',
          { file: first.file, line: first.line, seq: first.seq },
          `the log starts at seq ${first.seq}, but no retention record accounts for records 1..${first.seq - 1}: older files were deleted outside the broker`,
        );
      }
      // Only a signed retention record counts: an unsigned one at the end of a live log could have been appended by
      // whoever deleted the files.
      if (this.lastCheckpointSeq === undefined || this.lastCheckpointSeq < d.recordSeq) {
        throw new Broken(
          'missing-file',
          { file: first.file, line: first.line, seq: first.seq },
          `the log starts at seq ${first.seq}, and the retention record (seq ${d.recordSeq}) that accounts for records 1..${first.seq - 1} is not covered by a signed checkpoint: older files may have been deleted outside the broker`,
        );
      }
    }
    this.checkHead(last);
    if (this.checkpoints === 0 && (!this.options.live || this.files > 1)) {
      throw new Broken(
        'unsigned',
        { file: last.file, line: last.line, seq: last.seq },
        this.files > 1
          ? `the log holds no checkpoint although ${this.files} files were closed: nothing is signed, so a rewrite without the signing key cannot be ruled out`
          : 'the log holds no checkpoint: nothing is signed, so a rewrite without the signing key cannot be ruled out',
      );
    }
    const closed = this.lastAction === AuditAction.auditCheckpoint && this.lastCheckpointReason === 'shutdown';
    if (!closed && !this.options.live) {
      const tail =
        this.lastCheckpointSeq === undefined
          ? 'no record is signed'
          : `${this.recordsSinceCheckpoint} records after the last checkpoint (seq ${this.lastCheckpointSeq}) are unsigned`;
      throw new Broken(
        'truncated',
        { file: last.file, line: last.line, seq: last.seq },
        `the log ends at seq ${last.seq} without a shutdown checkpoint; ${tail}: the tail was cut off, or the broker crashed and has not restarted, or it is still running (use --live)`,
      );
    }
  }
}

/** One line of the report `bulwark audit verify` prints. */
export function describeVerifyResult(result: VerifyResult): string {
  const s = result.summary;
  if (result.kind === 'broken') {
    const seq = result.at.seq === undefined ? '' : ` seq ${result.at.seq}`;
    return `BROKEN ${result.problem}: ${result.at.file} line ${result.at.line}${seq}: ${result.detail}`;
  }
  const parts = [
    `OK ${s.files} files, ${s.records} records (seq ${s.firstSeq ?? '-'}..${s.lastSeq ?? '-'}), ${s.checkpoints} checkpoints`,
    s.trustedKeys
      ? `signed by trusted key ${s.keyIds.join(', ')}`
      : `signed by key ${s.keyIds.join(', ') || '-'} named in the log itself (pass --public-key to rule out a rewrite with another key)`,
  ];
  if (s.sealedTornTails > 0) parts.push(`${s.sealedTornTails} torn tails sealed after a crash`);
  if (s.uncleanEnds > 0) parts.push(`${s.uncleanEnds} files ended without a checkpoint (crash or failed write)`);
  if (s.retention) {
    parts.push(`records 1..${s.retention.deletedThroughSeq} deleted by retention (${s.retention.filesDeleted} files)`);
  }
  if (s.openTail) {
    parts.push(
      `live: ${s.openTail.records} records after checkpoint seq ${s.openTail.afterCheckpointSeq ?? '-'} not yet signed${s.openTail.partialLine ? ', a line is being written' : ''}`,
    );
  }
  return parts.join('; ');
}

interface LineFacts {
  seq: number;
  prevHash: string;
  hash: string;
  /** Parsed in full only for the writer's own records (checkpoints, seals, retention), which verify inspects. */
  record: AuditRecord | undefined;
}

const HASH_MARK = ',"hash":"';
const PREV_MARK = ',"prev_hash":"';
const SEQ_MARK = ',"seq":';
const WRITER_RECORD = '"action":"audit.';

/**
 * Reads the chain fields of a line without a full JSON parse: in the canonical form the writer stores, the hash is
 * the last member and `prev_hash` and `seq` are adjacent top-level members after every nested object that could
 * hold such a key. Exactness does not depend on this parse: the hash covers every byte, and anything the fast path
 * cannot read is parsed in full.
 */
function readLine(line: string): LineFacts | undefined {
  const suffix = line.length - HASH_SUFFIX_LENGTH;
  if (
    suffix <= 0 ||
    !line.startsWith(HASH_MARK, suffix) ||
    !line.endsWith('"}') ||
    !line.startsWith('{"@timestamp":"')
  ) {
    return undefined;
  }
  const hash = line.slice(suffix + HASH_MARK.length, line.length - 2);
  if (line.includes(WRITER_RECORD)) return fullParse(line, hash);
  const p = line.lastIndexOf(PREV_MARK, suffix);
  const seqAt = p + PREV_MARK.length + 64 + 1;
  if (p === -1 || !line.startsWith(SEQ_MARK, seqAt)) return fullParse(line, hash);
  let seq = 0;
  let i = seqAt + SEQ_MARK.length;
  for (let c = line.charCodeAt(i); c >= 48 && c <= 57; c = line.charCodeAt(++i)) seq = seq * 10 + (c - 48);
  const next = line.charCodeAt(i);
  if (i === seqAt + SEQ_MARK.length || (next !== 44 && i !== suffix)) return fullParse(line, hash);
  return { seq, prevHash: line.slice(p + PREV_MARK.length, p + PREV_MARK.length + 64), hash, record: undefined };
}

/** The line is exactly the canonical JSON of its record with the hash member appended last (record.ts). */
function isCanonical(line: string): boolean {
  const parsed = parseJsonObject(line);
  if (!parsed) return false;
  const { hash, ...rest } = parsed;
  if (typeof hash !== 'string') return false;
  const body = canonicalJson(rest);
  return (
    line.length === body.length + HASH_SUFFIX_LENGTH - 1 &&
    line.startsWith(body.slice(0, -1)) &&
    line.endsWith(`"hash":"${hash}"}`)
  );
}

function fullParse(line: string, hash: string): LineFacts | undefined {
  const record = parseRecordLine(line);
  if (!record || record.hash !== hash) return undefined;
  return { seq: record.seq, prevHash: record.prev_hash, hash, record };
}
