import { CircuitBreaker, type BreakerState } from './breaker.js';
import { VerificationCache } from './cache.js';
import { Coalescer } from './coalesce.js';
import { ConcurrencyPool } from './pool.js';

export interface VerificationSettings {
  hashConcurrency: number;
  hashQueue: number;
  sqlConcurrency: number;
  sqlQueue: number;
  cacheMaxEntries: number;
  cacheTtlMs: number;
  breakerFailureThreshold: number;
  breakerResetMs: number;
}

/**
 * Defaults, reasoned for a 2-core box: argon2id (OWASP params) runs on libuv's 4-thread pool shared with fs
 * and DNS, so at most 2 hashes run at once; 1000 waiting verifications is ~15–30 s of work, beyond which
 * answering `serverUnavailable` at once is kinder than queueing. Cached successes live 5 minutes.
 */
export const DEFAULT_VERIFICATION: VerificationSettings = {
  hashConcurrency: 2,
  hashQueue: 1000,
  sqlConcurrency: 16,
  sqlQueue: 1000,
  cacheMaxEntries: 10_000,
  cacheTtlMs: 300_000,
  breakerFailureThreshold: 5,
  breakerResetMs: 10_000,
};

/** Shared by every authenticator of one broker: the bound on expensive work is global, not per step. */
export class VerificationServices {
  readonly hashPool: ConcurrencyPool;
  readonly sqlPool: ConcurrencyPool;
  /** Remembers only that a (user, secret, stored credential) triple verified; identities are rebuilt each time. */
  readonly cache: VerificationCache<true>;
  readonly coalescer = new Coalescer<unknown>();
  readonly #breakers = new Map<string, CircuitBreaker>();

  constructor(
    readonly settings: VerificationSettings = DEFAULT_VERIFICATION,
    private readonly hooks: {
      now?: () => number;
      onBreakerChange?: (backend: string, state: BreakerState) => void;
    } = {},
  ) {
    this.hashPool = new ConcurrencyPool('hash', settings.hashConcurrency, settings.hashQueue);
    this.sqlPool = new ConcurrencyPool('sql', settings.sqlConcurrency, settings.sqlQueue);
    this.cache = new VerificationCache({ maxEntries: settings.cacheMaxEntries, ttlMs: settings.cacheTtlMs });
  }

  /** One breaker per backend name; authenticators sharing a backend share its breaker. */
  breaker(backend: string): CircuitBreaker {
    let b = this.#breakers.get(backend);
    if (!b) {
      b = new CircuitBreaker(backend, {
        failureThreshold: this.settings.breakerFailureThreshold,
        resetTimeoutMs: this.settings.breakerResetMs,
        ...(this.hooks.now ? { now: this.hooks.now } : {}),
        onStateChange: (state) => this.hooks.onBreakerChange?.(backend, state),
      });
      this.#breakers.set(backend, b);
    }
    return b;
  }

  /** Each backend's breaker state, by backend name (`type://user@host:port/database`, an LDAP URL). */
  breakerStates(): Iterable<readonly [string, BreakerState]> {
    return [...this.#breakers].map(([backend, breaker]) => [backend, breaker.state] as const);
  }

  coalesce<T>(key: string, task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.coalescer.run(key, task, signal) as Promise<T>;
  }
}
