import { hash } from 'node:crypto';

const BLOCK_BYTES = 64;
const DIGEST_BYTES = 32;

/**
 * HMAC-SHA-256 (RFC 2104) under one fixed key, computed as two one-shot SHA-256 digests of the padded key blocks.
 * `createHmac` sets up an OpenSSL MAC context per call, and a fresh Buffer per step was most of what remained, so
 * both blocks live in scratch buffers kept by the instance: a reconnect storm computes one of these per CONNECT.
 * Keys longer than a block are not needed here.
 */
export class HmacSha256 {
  /** `K ^ ipad`, then the message; wiped after every digest because the message holds a secret. */
  #inner = Buffer.alloc(BLOCK_BYTES + 256);
  /** `K ^ opad`, then the inner digest. */
  readonly #outer = Buffer.alloc(BLOCK_BYTES + DIGEST_BYTES);

  constructor(key: Buffer) {
    if (key.length > BLOCK_BYTES) throw new RangeError(`an HMAC key of at most ${BLOCK_BYTES} bytes is expected`);
    this.#inner.fill(0x36, 0, BLOCK_BYTES);
    this.#outer.fill(0x5c, 0, BLOCK_BYTES);
    for (let i = 0; i < key.length; i++) {
      this.#inner[i]! ^= key[i]!;
      this.#outer[i]! ^= key[i]!;
    }
  }

  /** The MAC of `text` (UTF-8) followed by `secret`. */
  digest(text: string, secret: Buffer, encoding: 'base64url' | 'hex'): string {
    const length = BLOCK_BYTES + Buffer.byteLength(text) + secret.length;
    if (length > this.#inner.length) {
      const grown = Buffer.alloc(Math.max(length, 2 * this.#inner.length));
      this.#inner.copy(grown, 0, 0, BLOCK_BYTES);
      this.#inner.fill(0);
      this.#inner = grown;
    }
    const inner = this.#inner;
    const textEnd = BLOCK_BYTES + inner.write(text, BLOCK_BYTES, 'utf8');
    secret.copy(inner, textEnd);
    // A plain view: hashing a Buffer slice would construct a Buffer, which costs more than the digest.
    const innerDigest = hash('sha256', new Uint8Array(inner.buffer, inner.byteOffset, length), 'binary');
    inner.fill(0, BLOCK_BYTES, length);
    this.#outer.write(innerDigest, BLOCK_BYTES, 'binary');
    return hash('sha256', this.#outer, encoding);
  }
}
