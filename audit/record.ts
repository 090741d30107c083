import { createHash, hash as oneShotHash, verify, type KeyObject } from 'node:crypto';
import { WRITE_RECORD_BODY, type AuditEvent } from './events.js';
import { canonicalJsonWith } from './canonical.js';

/** `prev_hash` of the very first record of a log. */
export const GENESIS_HASH = '0'.repeat(64);

/** A record as stored: the event plus the chain fields the writer adds. */
export type AuditRecord = AuditEvent & {
  '@timestamp': string;
  seq: number;
  prev_hash: string;
  hash: string;
};

/** Length of `,"hash":"<64 hex>"}` that ends every line; the hashed body is the line without it, plus `}`. */
export const HASH_SUFFIX_LENGTH = ',"hash":"'.length + 64 + '"}'.length;
const HASH_SUFFIX_PREFIX = ',"hash":"';

/**
 * `hash = SHA-256(prev_hash + "\n" + canonical JSON of the record without its hash member)`, lower-case hex.
 * The body already contains `prev_hash`; hashing it in front too makes the chaining explicit for an outside
 * implementation and costs nothing.
 */
export function chainHash(prevHash: string, body: string | Buffer): string {
  // The one-shot form avoids a Hash object per record: it is most of the per-record cost of writing and verifying.
  if (typeof body === 'string') return digest(hashInput(prevHash, body));
  return createHash('sha256').update(prevHash).update('\n').update(body).digest('hex');
}

/** What `chainHash` hashes for a string body. */
function hashInput(prevHash: string, body: string): string {
  return `${prevHash}\n${body}`;
}

/** `chainHash` of a string body, given its `hashInput`. */
function digest(input: string): string {
  return oneShotHash('sha256', input, 'hex');
}

/**
 * Serialises one record to its line (with the trailing newline). The line is the canonical body with the hash
 * member appended last, so a verifier can hash the bytes as they are without re-serialising.
 */
export function encodeRecord(
  event: AuditEvent,
  timestamp: string,
  seq: number,
  prevHash: string,
): { line: string; hash: string } {
  const writeBody = event[WRITE_RECORD_BODY];
  const body =
    writeBody !== undefined
      ? writeBody.call(event, timestamp, seq, prevHash)
      : canonicalJsonWith(event as unknown as Record<string, unknown>, {
          '@timestamp': timestamp,
          seq,
          prev_hash: prevHash,
        });
  const input = hashInput(prevHash, body);
  const hash = digest(input);
  // Hashing made `input` one flat string; the line's body is cut from it rather than from `body`, which an event's
  // own writer builds from many pieces and slicing would copy again: 0.6 KB less garbage per connect's record.
  return { line: `${input.slice(prevHash.length + 1, -1)}${HASH_SUFFIX_PREFIX}${hash}"}\n`, hash };
}

/** Splits a line (without newline) into its hashed body and stated hash, or undefined if it has no hash suffix. */
export function splitLine(line: string): { body: string; hash: string } | undefined {
  if (line.length < HASH_SUFFIX_LENGTH + 2) return undefined;
  const suffixStart = line.length - HASH_SUFFIX_LENGTH;
  if (!line.startsWith(HASH_SUFFIX_PREFIX, suffixStart) || !line.endsWith('"}')) return undefined;
  const hash = line.slice(suffixStart + HASH_SUFFIX_PREFIX.length, line.length - 2);
  if (!/^[0-9a-f]{64}$/.test(hash)) return undefined;
  return { body: `${line.slice(0, suffixStart)}}`, hash };
}

/** A line parsed as a JSON object, or undefined when it is not valid JSON or not an object. */
export function parseJsonObject(line: string): Record<string, unknown> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  return parsed as Record<string, unknown>;
}

/** Parses a line into a record when it has the shape the writer writes; does not check the hash. */
export function parseRecordLine(line: string): AuditRecord | undefined {
  const r = parseJsonObject(line);
  if (!r) return undefined;
  if (typeof r.seq !== 'number' || typeof r.prev_hash !== 'string' || typeof r.hash !== 'string') return undefined;
  if (typeof r['@timestamp'] !== 'string') return undefined;
  const event = r.event as Record<string, unknown> | undefined;
  if (typeof event !== 'object' || event === null || typeof event.action !== 'string') return undefined;
  return r as unknown as AuditRecord;
}

/**
 * The exact bytes a checkpoint signs; the prefix keeps the signature from being valid for anything else.
 *
 * Version 2 (written since the checkpoint's reason was found to be unsigned) also signs `audit.reason`: verify
 * accepts a log that ends at a `shutdown` checkpoint, so an unsigned reason let a truncated log pass as a clean
 * stop by relabelling its last interval checkpoint. The `-v2` prefix keeps a version 2 signature from ever
 * verifying as a version 1 message, so a new checkpoint cannot be downgraded to the weaker form.
 */
export function checkpointMessage(seq: number, hash: string, reason: string): Buffer {
  return Buffer.from(`bulwark-audit-checkpoint-v2\n${seq}\n${hash}\n${reason}`, 'utf8');
}

/** What checkpoints written before version 2 signed: the head only, so their `audit.reason` is not protected. */
export function checkpointMessageV1(seq: number, hash: string): Buffer {
  return Buffer.from(`bulwark-audit-checkpoint\n${seq}\n${hash}`, 'utf8');
}

/** Which form of the message a checkpoint signature verifies against; undefined when neither. */
export function checkpointSignatureVersion(
  cp: { seq: number; hash: string; signature: string },
  reason: string | undefined,
  key: KeyObject,
): 1 | 2 | undefined {
  const signature = Buffer.from(cp.signature, 'base64');
  if (reason !== undefined && verify(null, checkpointMessage(cp.seq, cp.hash, reason), key, signature)) return 2;
  if (verify(null, checkpointMessageV1(cp.seq, cp.hash), key, signature)) return 1;
  return undefined;
}
