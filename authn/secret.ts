import { timingSafeEqual, createHash } from 'node:crypto';
import { inspect } from 'node:util';

const REDACTED = '[redacted]';

/**
 * A password, token or key as it travels through the broker. Every way a value can reach a log line or an
 * audit record (JSON, string conversion, util.inspect) prints `[redacted]`; only `reveal()` gives the bytes.
 */
export class Secret {
  readonly #value: Buffer;

  constructor(value: Buffer | string) {
    this.#value = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
  }

  get length(): number {
    return this.#value.length;
  }

  get isEmpty(): boolean {
    return this.#value.length === 0;
  }

  reveal(): Buffer {
    return this.#value;
  }

  revealString(): string {
    return this.#value.toString('utf8');
  }

  /** A digest that can key caches without keeping the plaintext. */
  digest(salt: string): string {
    return createHash('sha256').update(salt).update('\0').update(this.#value).digest('base64url');
  }

  equals(other: Secret | Buffer | string): boolean {
    const otherBytes =
      other instanceof Secret ? other.#value : typeof other === 'string' ? Buffer.from(other, 'utf8') : other;
    return constantTimeEqual(this.#value, otherBytes);
  }

  toJSON(): string {
    return REDACTED;
  }

  toString(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}

/** Compares without leaking the position of the first difference or, through hashing, the length. */
export function constantTimeEqual(a: Buffer, b: Buffer): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}
