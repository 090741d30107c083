import { hash as oneShotHash } from 'node:crypto';

/**
 * The fast path of `verify`: checks a block of complete lines on raw bytes, without decoding, parsing or
 * re-serialising. A line passes only when it is certainly a canonical, correctly hashed ordinary record chained to
 * the line before it; everything else (the writer's own `audit.*` records, anything unusual, anything wrong) is
 * handed back as a "slow" line for the exact checks and error reports of the main verifier. So the fast path can
 * only ever accept less than the exact path, never more.
 *
 * Kept free of other imports so a worker thread can load it on its own.
 */

/** Consecutive ordinary records whose hashes, canonical form, sequence and chain links were all checked. */
export interface ScanRun {
  kind: 'run';
  /** Index of the first line within the block (0-based). */
  line: number;
  /** Byte offset of the first line in the buffer. */
  start: number;
  count: number;
  firstSeq: number;
  firstPrevHash: string;
  lastSeq: number;
  lastHash: string;
}

/** A line the main verifier must check itself; offsets are into the scanned buffer, without the newline. */
export interface ScanSlow {
  kind: 'slow';
  line: number;
  start: number;
  end: number;
}

export type ScanItem = ScanRun | ScanSlow;

export interface ScanResult {
  items: ScanItem[];
  /** Newlines in the block. */
  lines: number;
}

/** `,"hash":"` + 64 hex + `"}`: the last bytes of every line (see record.ts). */
const SUFFIX = 75;
const HASH_MARK = Buffer.from(',"hash":"', 'latin1');
const TIMESTAMP_START = Buffer.from('{"@timestamp":"', 'latin1');
const TRUE = Buffer.from('true', 'latin1');
const FALSE = Buffer.from('false', 'latin1');
const NULL = Buffer.from('null', 'latin1');
const KEY_SEQ = Buffer.from('seq', 'latin1');
const KEY_PREV = Buffer.from('prev_hash', 'latin1');
const KEY_TS = Buffer.from('@timestamp', 'latin1');
const KEY_HASH = Buffer.from('hash', 'latin1');
const KEY_EVENT = Buffer.from('event', 'latin1');
const KEY_ACTION = Buffer.from('action', 'latin1');
const WRITER_ACTION = Buffer.from('audit.', 'latin1');
/** Deeper nesting than any record has goes to the exact path. */
const MAX_DEPTH = 12;
/** Integers of up to 15 digits are exact doubles and print as written. */
const MAX_DIGITS = 15;

class Fail {}
const FAIL = new Fail();

/**
 * A conservative recogniser for the canonical JSON of record.ts (RFC 8785 for the values a record holds): it
 * accepts no whitespace, members in strictly increasing key order (ASCII keys only), the escapes JSON.stringify
 * writes other than \u (anything else is "not sure"), well-formed UTF-8, integers of at most 15 digits without a
 * sign on zero, and the top-level members the chain needs.
 */
class LineScanner {
  private buf: Buffer = Buffer.alloc(0);
  private p = 0;
  private limit = 0;
  seq = -1;
  prevStart = -1;
  /** The last checked line's prev_hash equals the hash stated at the end of the line right before it. */
  linked = false;
  private timestamp = false;
  private action = false;
  private scratch = Buffer.alloc(4096);

  /** True when the line [s, e) is an ordinary record in canonical form whose stated hash is right. */
  check(buf: Buffer, s: number, e: number): boolean {
    const bodyEnd = e - SUFFIX;
    // The exact path reads only lines that begin with `{"@timestamp":"`, as every record the writer writes does.
    if (bodyEnd - s < TIMESTAMP_START.length) return false;
    for (let i = 0; i < TIMESTAMP_START.length; i++) if (buf[s + i] !== TIMESTAMP_START[i]) return false;
    for (let i = 0; i < HASH_MARK.length; i++) if (buf[bodyEnd + i] !== HASH_MARK[i]) return false;
    // The stated hash needs no check of its own: it must equal the computed hex digest below.
    const hashStart = bodyEnd + HASH_MARK.length;
    if (buf[e - 2] !== 0x22 || buf[e - 1] !== 0x7d) return false;

    this.buf = buf;
    this.p = s + 1;
    this.limit = bodyEnd;
    this.seq = -1;
    this.prevStart = -1;
    this.timestamp = false;
    this.action = false;
    try {
      this.topLevel();
    } catch (error: unknown) {
      if (error === FAIL) return false;
      throw error;
    }
    if (this.seq < 0 || this.prevStart < 0 || !this.timestamp || !this.action) return false;

    // hash = SHA-256(prev_hash "\n" body "}"), the body being the line up to the suffix (record.ts chainHash).
    const prev = this.prevStart;
    let digest: string;
    this.linked =
      s >= 67 &&
      buf[s - 1] === 0x0a &&
      buf[s - 2] === 0x7d &&
      buf[s - 3] === 0x22 &&
      buf.compare(buf, prev, prev + 64, s - 67, s - 3) === 0;
    if (this.linked) {
      // The line before ends with `<its hash>"}\n` and that hash is this line's prev_hash: moved two bytes on,
      // it sits right before "\n" and this body, so the input is hashed where it lies instead of being copied.
      // Every byte is put back before returning.
      buf.copyWithin(s - 65, s - 67, s - 3);
      buf[bodyEnd] = 0x7d;
      digest = oneShotHash('sha256', buf.subarray(s - 65, bodyEnd + 1), 'hex');
      buf[bodyEnd] = 0x2c;
      buf.copyWithin(s - 67, s - 65, s - 1);
      buf[s - 3] = 0x22;
      buf[s - 2] = 0x7d;
    } else {
      const n = 64 + 1 + (bodyEnd - s) + 1;
      if (this.scratch.length < n) this.scratch = Buffer.alloc(Math.max(n, this.scratch.length * 2));
      const scratch = this.scratch;
      buf.copy(scratch, 0, prev, prev + 64);
      scratch[64] = 0x0a;
      buf.copy(scratch, 65, s, bodyEnd);
      scratch[n - 1] = 0x7d;
      digest = oneShotHash('sha256', scratch.subarray(0, n), 'hex');
    }
    for (let i = 0; i < 64; i++) if (digest.charCodeAt(i) !== buf[hashStart + i]) return false;
    return true;
  }

  private fail(): never {
    throw FAIL;
  }

  /** The top-level object: its closing brace is the one after the hash member, outside the body. */
  private topLevel(): void {
    const buf = this.buf;
    let prevKeyStart = -1;
    let prevKeyEnd = -1;
    if (this.p === this.limit) this.fail();
    for (;;) {
      const ks = this.p + 1;
      this.key();
      const ke = this.p - 1;
      if (prevKeyStart >= 0 && compareBytes(buf, prevKeyStart, prevKeyEnd, ks, ke) >= 0) this.fail();
      prevKeyStart = ks;
      prevKeyEnd = ke;
      if (buf[this.p++] !== 0x3a) this.fail();
      if (equalsKey(buf, ks, ke, KEY_SEQ)) {
        this.seq = this.integer();
      } else if (equalsKey(buf, ks, ke, KEY_PREV)) {
        const vs = this.p + 1;
        this.string();
        // Its value is checked by the chain: it must equal the previous record's verified hash.
        if (this.p - 1 - vs !== 64) this.fail();
        this.prevStart = vs;
      } else if (equalsKey(buf, ks, ke, KEY_TS)) {
        if (buf[this.p] !== 0x22) this.fail();
        this.string();
        this.timestamp = true;
      } else if (equalsKey(buf, ks, ke, KEY_HASH)) {
        // A second `hash` member inside the body would not survive a third party's parse.
        this.fail();
      } else if (equalsKey(buf, ks, ke, KEY_EVENT)) {
        if (buf[this.p] !== 0x7b) this.fail();
        this.object(2, true);
      } else {
        this.value(1);
      }
      // A nested value that ran into the hash suffix is not part of the body.
      if (this.p > this.limit) this.fail();
      if (this.p === this.limit) return;
      if (buf[this.p++] !== 0x2c || this.p >= this.limit) this.fail();
    }
  }

  private value(depth: number): void {
    const c = this.buf[this.p];
    if (c === 0x22) this.string();
    else if (c === 0x7b) this.object(depth + 1, false);
    else if (c === 0x5b) this.array(depth + 1);
    else if (c === 0x74) this.literal(TRUE);
    else if (c === 0x66) this.literal(FALSE);
    else if (c === 0x6e) this.literal(NULL);
    else this.integer();
  }

  private object(depth: number, isEvent: boolean): void {
    if (depth > MAX_DEPTH) this.fail();
    const buf = this.buf;
    this.p++;
    if (buf[this.p] === 0x7d) {
      this.p++;
      return;
    }
    let prevKeyStart = -1;
    let prevKeyEnd = -1;
    for (;;) {
      const ks = this.p + 1;
      this.key();
      const ke = this.p - 1;
      if (prevKeyStart >= 0 && compareBytes(buf, prevKeyStart, prevKeyEnd, ks, ke) >= 0) this.fail();
      prevKeyStart = ks;
      prevKeyEnd = ke;
      if (buf[this.p++] !== 0x3a) this.fail();
      if (isEvent && equalsKey(buf, ks, ke, KEY_ACTION)) {
        const vs = this.p + 1;
        if (buf[this.p] !== 0x22) this.fail();
        this.string();
        // The writer's own records (checkpoints, seals, retention) carry facts only the exact path reads.
        if (startsWith(buf, vs, this.p - 1, WRITER_ACTION)) this.fail();
        this.action = true;
      } else {
        this.value(depth);
      }
      const c = buf[this.p++];
      if (c === 0x7d) return;
      if (c !== 0x2c) this.fail();
    }
  }

  private array(depth: number): void {
    if (depth > MAX_DEPTH) this.fail();
    const buf = this.buf;
    this.p++;
    if (buf[this.p] === 0x5d) {
      this.p++;
      return;
    }
    for (;;) {
      this.value(depth);
      const c = buf[this.p++];
      if (c === 0x5d) return;
      if (c !== 0x2c) this.fail();
    }
  }

  /** A member name: plain printable ASCII only, so byte order is the UTF-16 order RFC 8785 sorts by. */
  private key(): void {
    const buf = this.buf;
    const limit = this.limit;
    if (buf[this.p] !== 0x22) this.fail();
    let p = this.p + 1;
    for (;;) {
      if (p >= limit) this.fail();
      const c = buf[p] as number;
      if (c === 0x22) break;
      if (c < 0x20 || c >= 0x7f || c === 0x5c) this.fail();
      p++;
    }
    this.p = p + 1;
  }

  private string(): void {
    const buf = this.buf;
    let p = this.p + 1;
    // The hash suffix after the body starts with a quote, so this loop stops there at the latest; bytes past the
    // body are refused below.
    for (;;) {
      const c = buf[p] as number;
      if (c > 0x22 && c < 0x7f) {
        if (c !== 0x5c) {
          p++;
          continue;
        }
        // The short escapes JSON.stringify writes; \u (controls, lone surrogates) is left to the exact path.
        const d = buf[p + 1];
        if (d !== 0x22 && d !== 0x5c && d !== 0x62 && d !== 0x66 && d !== 0x6e && d !== 0x72 && d !== 0x74) {
          this.fail();
        }
        p += 2;
      } else if (c === 0x22) {
        break;
      } else if (c === 0x20 || c === 0x21) {
        p++;
      } else if (c >= 0x80) {
        p = this.utf8(p, c);
      } else {
        this.fail();
      }
    }
    if (p >= this.limit) this.fail();
    this.p = p + 1;
  }

  /** One well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates); returns the next offset. */
  private utf8(p: number, c: number): number {
    const buf = this.buf;
    const limit = this.limit;
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c === 0xe0) lo = 0xa0;
      else if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c === 0xf0) lo = 0x90;
      else if (c === 0xf4) hi = 0x8f;
    } else this.fail();
    if (p + n >= limit) this.fail();
    const first = buf[p + 1] as number;
    if (first < lo || first > hi) this.fail();
    for (let i = 2; i <= n; i++) {
      const b = buf[p + i] as number;
      if (b < 0x80 || b > 0xbf) this.fail();
    }
    return p + n + 1;
  }

  private integer(): number {
    const buf = this.buf;
    let p = this.p;
    const negative = buf[p] === 0x2d;
    if (negative) p++;
    const first = buf[p] as number;
    if (first < 0x30 || first > 0x39) this.fail();
    // No leading zeros, and no -0 (JSON.stringify(-0) is "0").
    if (first === 0x30 && (negative || isDigit(buf[p + 1]))) this.fail();
    let value = 0;
    let digits = 0;
    while (p < this.limit && isDigit(buf[p])) {
      value = value * 10 + ((buf[p] as number) - 0x30);
      p++;
      digits++;
    }
    if (digits > MAX_DIGITS) this.fail();
    const next = buf[p];
    // Fractions and exponents have one canonical spelling that is not worth recomputing here.
    if (next === 0x2e || next === 0x65 || next === 0x45) this.fail();
    this.p = p;
    return negative ? -value : value;
  }

  private literal(word: Buffer): void {
    for (let i = 0; i < word.length; i++) if (this.buf[this.p + i] !== word[i]) this.fail();
    if (this.p + word.length > this.limit) this.fail();
    this.p += word.length;
  }
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x39;
}

function equalsKey(buf: Buffer, s: number, e: number, key: Buffer): boolean {
  if (e - s !== key.length) return false;
  for (let i = 0; i < key.length; i++) if (buf[s + i] !== key[i]) return false;
  return true;
}

function startsWith(buf: Buffer, s: number, e: number, prefix: Buffer): boolean {
  if (e - s < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buf[s + i] !== prefix[i]) return false;
  return true;
}

/** Byte order of [as, ae) against [bs, be): negative, zero or positive. */
function compareBytes(buf: Buffer, as: number, ae: number, bs: number, be: number): number {
  const n = Math.min(ae - as, be - bs);
  for (let i = 0; i < n; i++) {
    const d = (buf[as + i] as number) - (buf[bs + i] as number);
    if (d !== 0) return d;
  }
  return ae - as - (be - bs);
}

const scanner = new LineScanner();

/**
 * Scans the complete lines in `buf[start, end)` (`end` just after a newline). Consecutive ordinary lines that are
 * canonical, hash-correct and chained (seq + 1, prev_hash = previous hash) become runs; every other line is slow.
 */
export function scanBlock(buf: Buffer, start: number, end: number): ScanResult {
  const items: ScanItem[] = [];
  let line = 0;
  let run: ScanRun | undefined;
  let runHashAt = -1;
  const closeRun = (): void => {
    if (!run) return;
    run.lastHash = buf.toString('latin1', runHashAt, runHashAt + 64);
    items.push(run);
    run = undefined;
  };
  for (let pos = start; pos < end; line++) {
    let nl = buf.indexOf(0x0a, pos);
    if (nl === -1 || nl >= end) nl = end;
    if (scanner.check(buf, pos, nl)) {
      const seq = scanner.seq;
      const prevStart = scanner.prevStart;
      const hashAt = nl - 66;
      if (
        run &&
        seq === run.lastSeq + 1 &&
        ((scanner.linked && runHashAt === pos - 67) ||
          buf.compare(buf, prevStart, prevStart + 64, runHashAt, runHashAt + 64) === 0)
      ) {
        run.count++;
        run.lastSeq = seq;
      } else {
        closeRun();
        run = {
          kind: 'run',
          line,
          start: pos,
          count: 1,
          firstSeq: seq,
          firstPrevHash: buf.toString('latin1', prevStart, prevStart + 64),
          lastSeq: seq,
          lastHash: '',
        };
      }
      runHashAt = hashAt;
    } else {
      closeRun();
      items.push({ kind: 'slow', line, start: pos, end: nl });
    }
    pos = nl + 1;
  }
  closeRun();
  return { items, lines: line };
}
