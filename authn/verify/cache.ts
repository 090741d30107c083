import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Secret } from '../secret.js';
import { HmacSha256 } from './hmac-sha256.js';

export interface VerificationCacheOptions {
  /** Upper bound on entries; the least recently used entry is evicted first. */
  maxEntries: number;
  /** How long a successful verification is remembered, in milliseconds. */
  ttlMs: number;
}

export interface CacheKeyParts {
  authenticator: string;
  username: string;
  secret: Secret;
  /**
   * Anything that changes when the stored credential changes: the stored hash itself, a row version, a key
   * id. Changing the password changes this, so the old entry can never match again.
   */
  credentialVersion: string;
}

/**
 * A bounded cache of successful verifications. It stores no plaintext and no reversible digest: keys are an
 * HMAC under a random per-process key of (authenticator, username, secret, credential version), so a memory
 * dump does not give an offline-guessable password hash, and a changed password or credential can never hit
 * an entry made for the old one. Only successes are cached; a refusal is always re-verified.
 */
export class VerificationCache<T> {
  readonly #lru: LRUCache<string, { value: T }>;
  readonly #hmac = new HmacSha256(randomBytes(32));

  constructor(readonly options: VerificationCacheOptions) {
    this.#lru = new LRUCache({ max: Math.max(1, options.maxEntries), ttl: Math.max(1, options.ttlMs) });
  }

  get enabled(): boolean {
    return this.options.maxEntries > 0 && this.options.ttlMs > 0;
  }

  get size(): number {
    return this.#lru.size;
  }

  key(parts: CacheKeyParts): string {
    // Each field is length-prefixed (`<bytes>:<field>`), so no two different tuples feed the HMAC the same bytes.
    const { authenticator, username, credentialVersion } = parts;
    const secret = parts.secret.reveal();
    const head =
      `${Buffer.byteLength(authenticator)}:${authenticator}${Buffer.byteLength(username)}:${username}` +
      `${Buffer.byteLength(credentialVersion)}:${credentialVersion}${secret.length}:`;
    return this.#hmac.digest(head, secret, 'base64url');
  }

  get(key: string): T | undefined {
    if (!this.enabled) return undefined;
    return this.#lru.get(key)?.value;
  }

  /** `ttlMs` may only shorten the configured lifetime, e.g. to a token's expiry. */
  set(key: string, value: T, ttlMs?: number): void {
    if (!this.enabled) return;
    const ttl = ttlMs === undefined ? this.options.ttlMs : Math.min(ttlMs, this.options.ttlMs);
    if (ttl <= 0) return;
    this.#lru.set(key, { value }, { ttl });
  }

  clear(): void {
    this.#lru.clear();
  }
}
