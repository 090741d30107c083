import { createPublicKey, type KeyObject } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { BulwarkError } from '../src/errors.js';
import { AuditAction } from './actions.js';
import { listAuditFiles, readAuditHead, readFileTail, HEAD_FILE } from './files.js';
import {
  GENESIS_HASH,
  chainHash,
  checkpointSignatureVersion,
  parseRecordLine,
  splitLine,
  type AuditRecord,
} from './record.js';
import { keyIdOf, type SigningKey } from './signing-key.js';

export interface TornRegion {
  file: string;
  offset: number;
  length: number;
  sha256: string;
}

/** Where the previous runs left the chain, checked before this run continues (and signs over) it. */
export interface RecoveredHead {
  seq: number;
  hash: string;
  lastWasCheckpoint: boolean;
  /** Torn tails to seal, oldest first. */
  seals: TornRegion[];
  /** The log has no head pointer although it was written by a broker that keeps one. */
  headMissing: boolean;
}

interface Link {
  seq: number;
  hash: string;
}

/** `,"hash":"<64 hex>"}`: the end of a complete record (the hash member is always last). */
const RECORD_END = /,"hash":"[0-9a-f]{64}"\}/g;
const CHECKPOINT_MARK = '"action":"audit.checkpoint"';

/**
 * Finds the chain head and checks the end of the log before a new run continues it: from the newest file's last
 * signed checkpoint (or, when it has none, from its first record, which must continue the file before) every
 * record must match its hash and follow the one before; nothing may follow a `shutdown` checkpoint, which is the
 * last thing a run writes; a torn tail may only be the beginning of one record (see tornTailProblem); and the
 * newest file `audit-head.json` names must still be there. A log that fails any of this was changed outside the
 * broker, and continuing it would sign the change: the broker refuses to start instead.
 */
export function recoverChainHead(dir: string, key: SigningKey): RecoveredHead {
  const files = listAuditFiles(dir);
  const head = readAuditHead(dir);
  if (head === 'damaged') refuse(dir, `${HEAD_FILE} is not the head pointer the broker writes`);
  if (head && !files.some((f) => f.name === head.file)) {
    refuse(
      dir,
      `${head.file}, the newest file the broker started (first seq ${head.first_seq}, named by ${HEAD_FILE}), is missing: the newest audit files were deleted`,
    );
  }
  const seals: TornRegion[] = [];
  const torn: Array<TornRegion & { bytes: Buffer }> = [];
  for (let i = files.length - 1; i >= 0; i--) {
    const name = (files[i] as { name: string }).name;
    const path = join(dir, name);
    const tail = readFileTail(path, Number.POSITIVE_INFINITY, (line) => isCheckpointLine(line));
    if (tail.torn) {
      const region = { file: name, ...tail.torn };
      seals.unshift(region);
      torn.unshift({ ...region, bytes: readRange(path, tail.torn.offset, tail.torn.length) });
    }
    if (tail.lastLines.length === 0) continue;
    const lines = tail.lastLines.reverse();
    const found = checkTail(dir, name, lines, key, () =>
      previousRecord(
        dir,
        files.slice(0, i).map((f) => f.name),
      ),
    );
    for (const t of torn) {
      const problem = tornTailProblem(t.bytes, found.last, key);
      if (problem)
        refuse(dir, `the torn tail at the end of ${t.file} (${t.length} bytes at offset ${t.offset}) ${problem}`);
    }
    if (found.lastReason === 'shutdown' && torn.length > 0) {
      refuse(
        dir,
        `${torn[0]?.file ?? name} holds bytes after the shutdown checkpoint (seq ${found.last.seq}) that ended the last run, which writes nothing after it`,
      );
    }
    return {
      seq: found.last.seq,
      hash: found.last.hash,
      lastWasCheckpoint: found.lastReason !== undefined,
      seals,
      headMissing: head === undefined && found.signedV2,
    };
  }
  for (const t of torn) {
    const problem = tornTailProblem(t.bytes, { seq: 0, hash: GENESIS_HASH }, key);
    if (problem)
      refuse(dir, `the torn tail at the end of ${t.file} (${t.length} bytes at offset ${t.offset}) ${problem}`);
  }
  return { seq: 0, hash: GENESIS_HASH, lastWasCheckpoint: false, seals, headMissing: false };
}

/**
 * A torn tail is what a crash or a failed write leaves of the one record being written when it stopped: it holds
 * no newline (trailing NUL bytes from a power loss aside) and no complete record, except that it may be exactly one
 * complete record whose newline was not written, which must then continue the chain from the last complete line
 * (and, if it is a checkpoint, carry a valid signature). Anything else — records joined without their newlines,
 * a record that does not continue the chain — was made outside the broker, and sealing it would hide the records
 * inside it.
 */
export function tornTailProblem(bytes: Buffer, head: Link, key: SigningKey): string | undefined {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  const text = bytes.toString('utf8', 0, end);
  const ends = [...text.matchAll(RECORD_END)];
  if (ends.length === 0) return undefined;
  const only = ends[0] as RegExpMatchArray;
  if (ends.length > 1 || (only.index ?? 0) + only[0].length !== text.length) {
    return `holds ${ends.length} complete records joined without newlines, not the beginning of one record`;
  }
  const problem = lineProblem(text, head, key);
  return problem === undefined ? undefined : `is a complete record without its newline that ${problem}`;
}

function isCheckpointLine(line: string): boolean {
  return line.includes(CHECKPOINT_MARK) && parseRecordLine(line)?.event.action === AuditAction.auditCheckpoint;
}

interface TailFacts {
  last: Link;
  /** `audit.reason` of the last line when it is a checkpoint. */
  lastReason: string | undefined;
  signedV2: boolean;
}

function checkTail(
  dir: string,
  file: string,
  lines: readonly string[],
  key: SigningKey,
  before: () => Link | undefined,
): TailFacts {
  let prev: Link | undefined;
  let reason: string | undefined;
  let signedV2 = false;
  lines.forEach((line, i) => {
    const record = parseRecordLine(line);
    if (!record) refuse(dir, `a line near the end of audit file ${file} holds no readable record`);
    if (i === 0 && reason === undefined && !isCheckpoint(record)) {
      // No checkpoint in this file: its first record must continue the file before it.
      const link = before();
      if (link && (record.seq !== link.seq + 1 || record.prev_hash !== link.hash)) {
        refuse(dir, `the first record of ${file} (seq ${record.seq}) does not continue the file before it`);
      }
    }
    if (prev && reason === 'shutdown') {
      refuse(
        dir,
        `record seq ${record.seq} in ${file} follows the shutdown checkpoint (seq ${prev.seq}) that ended the last run, which writes nothing after it`,
      );
    }
    const problem = lineProblem(line, prev, key, record);
    if (problem) refuse(dir, `record seq ${record.seq} in ${file} ${problem}`);
    reason = isCheckpoint(record) ? (record.audit?.reason ?? '') : undefined;
    if (isCheckpoint(record) && signatureVersion(record, key) === 2) signedV2 = true;
    prev = { seq: record.seq, hash: record.hash };
  });
  return { last: prev as Link, lastReason: reason, signedV2 };
}

/** Why a line is not a record that continues `prev` (hash, sequence, signature); undefined when it is. */
function lineProblem(line: string, prev: Link | undefined, key: SigningKey, parsed?: AuditRecord): string | undefined {
  const record = parsed ?? parseRecordLine(line);
  if (!record) return 'is not a readable record';
  const split = splitLine(line);
  if (!split || chainHash(record.prev_hash, split.body) !== split.hash || split.hash !== record.hash) {
    return 'does not match its hash';
  }
  if (prev && (record.seq !== prev.seq + 1 || record.prev_hash !== prev.hash)) {
    return `does not follow seq ${prev.seq} in the chain`;
  }
  if (isCheckpoint(record)) {
    const cp = record.audit?.checkpoint;
    if (!cp || cp.seq !== record.seq - 1 || cp.hash !== record.prev_hash) return 'is a checkpoint of another chain';
    if (signatureVersion(record, key) === undefined) return 'is a checkpoint whose signature does not verify';
  }
  return undefined;
}

function isCheckpoint(record: AuditRecord): boolean {
  return record.event.action === AuditAction.auditCheckpoint;
}

function signatureVersion(record: AuditRecord, key: SigningKey): 1 | 2 | undefined {
  const cp = record.audit?.checkpoint;
  if (!cp || typeof cp.signature !== 'string') return undefined;
  let publicKey: KeyObject = key.publicKey;
  if (cp.key_id !== key.keyId) {
    // Signed before a key rotation: check it against the key it names, which must match its id.
    try {
      publicKey = createPublicKey({ key: Buffer.from(cp.public_key, 'base64'), format: 'der', type: 'spki' });
    } catch {
      return undefined;
    }
    if (keyIdOf(publicKey) !== cp.key_id) return undefined;
  }
  return checkpointSignatureVersion(cp, record.audit?.reason, publicKey);
}

/** The last complete record of the nearest older file that has one, hash-checked; undefined at the log's start. */
function previousRecord(dir: string, older: readonly string[]): Link | undefined {
  for (let i = older.length - 1; i >= 0; i--) {
    const name = older[i] as string;
    const line = readFileTail(join(dir, name), 1).lastLines[0];
    if (line === undefined) continue;
    const record = parseRecordLine(line);
    const split = splitLine(line);
    if (!record || !split || chainHash(record.prev_hash, split.body) !== split.hash) {
      refuse(dir, `the last line of ${name} is not an intact record`);
    }
    return { seq: record.seq, hash: record.hash };
  }
  return undefined;
}

function readRange(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, buf, done, length - done, offset + done);
      if (n <= 0) break;
      done += n;
    }
    return buf.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

function refuse(dir: string, what: string): never {
  throw new BulwarkError(
    'BULWARK_ERR_AUDIT',
    `the audit log in ${dir} was changed outside the broker: ${what}; continuing it would sign the change`,
    undefined,
    `run \`bulwark audit verify ${dir}\`, keep the directory as evidence (move it aside) and start with an empty audit directory to continue`,
  );
}
