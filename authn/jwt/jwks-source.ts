import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';

export interface JwksSourceOptions {
  url: URL;
  /** Refetch when the copy is older than this (`jwks_refresh_ms`). */
  refreshMs: number;
  /** Ask the provider at most this often, whether the last request succeeded or not (`jwks_min_refetch_ms`). */
  minRefetchMs: number;
  /** Deadline of one request (`jwks_timeout_ms`). */
  timeoutMs: number;
  /** Largest response body accepted (`jwks_max_bytes`). */
  maxBytes: number;
  /**
   * How much longer than `refreshMs` the last good copy keeps verifying while the provider cannot be had
   * (`jwks_stale_if_error_ms`); 0 refuses tokens then (fail closed).
   */
  staleIfErrorMs?: number;
  /** Told once per failed refresh that the last good copy is used instead (for the operator's log). */
  onStaleUse?: (ageMs: number, failure: string) => void;
  /**
   * The step's accepted `alg` values: a set none of whose keys could verify one of them is refused like an empty
   * one. Without it every key with a `kty` counts.
   */
  algorithms?: readonly string[];
  /** Injected for tests. */
  now?: () => number;
}

/** The JWKS could not be had: the step throws it, so the chain answers serverUnavailable (fail closed). */
export class JwksUnavailableError extends Error {
  override readonly name = 'JwksUnavailableError';
}

type KeySet = (...args: Parameters<JWTVerifyGetKey>) => ReturnType<JWTVerifyGetKey>;

/**
 * A remote JWKS fetched by the broker itself, then handed to jose's `createLocalJWKSet`. jose's
 * `createRemoteJWKSet` records its cooldown only when a fetch succeeds, so a provider answering 500 or garbage was
 * asked again on every CONNECT carrying a random `kid`; and it reads a body of any size. Here every request,
 * whatever its outcome, starts the `minRefetchMs` back-off, and a body over `maxBytes` is refused as it streams in.
 *
 * The copy is refreshed when older than `refreshMs`; while it is stale and the provider cannot be asked (back-off)
 * or fails, tokens are refused as unverifiable (serverUnavailable), as with a provider that never answered, unless
 * the operator allowed the last good copy to serve for `staleIfErrorMs` longer. An unknown `kid` refetches early,
 * within the same back-off; one the provider could not be asked about is unverifiable, never a refusal. Concurrent
 * callers share one request.
 */
export class JwksSource {
  readonly #o: JwksSourceOptions;
  readonly #now: () => number;
  #keys: KeySet | undefined;
  #fetchedAt = 0;
  /** When the provider was last asked; undefined before the first request. */
  #askedAt: number | undefined;
  #lastFailure: string | undefined;
  #inFlight: Promise<void> | undefined;

  constructor(options: JwksSourceOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => Date.now());
  }

  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    let refreshFailure: JwksUnavailableError | undefined;
    if (this.#keys === undefined || this.#now() - this.#fetchedAt >= this.#o.refreshMs) {
      try {
        await this.#refresh();
      } catch (error) {
        if (!(error instanceof JwksUnavailableError) || !this.#mayServeStale()) throw error;
        refreshFailure = error;
      }
    }
    const keys = this.#keys;
    if (!keys) throw new JwksUnavailableError('JWKS unavailable');
    try {
      return await keys(header, token);
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey)) throw error;
      // A key the provider may have added since the last good copy: not knowable while it fails.
      if (refreshFailure) throw refreshFailure;
      if (!this.#mayAsk()) {
        // In the back-off after a failed request the provider could not be asked about this kid either: a rotation
        // during an outage is unverifiable, not a bad token (which the guard would count against a valid user).
        if (this.#lastFailure !== undefined)
          throw new JwksUnavailableError(`JWKS not refetched yet (back-off after: ${this.#lastFailure})`);
        throw error;
      }
      // Perhaps a rotation the copy has not seen yet.
      await this.#refresh();
      return await (this.#keys ?? keys)(header, token);
    }
  };

  /**
   * Why the copy that verifies tokens now is past `refreshMs` (served because the provider failed), or undefined
   * when it is current: the step reports it with each CONNECT it allows that way.
   */
  staleness(): string | undefined {
    const age = this.#now() - this.#fetchedAt;
    if (this.#keys === undefined || age < this.#o.refreshMs) return undefined;
    return `verified with a JWKS copy ${Math.round(age / 1000)} s old (jwks_stale_if_error_ms): ${this.#lastFailure ?? 'refresh pending'}`;
  }

  #mayServeStale(): boolean {
    const staleIfErrorMs = this.#o.staleIfErrorMs ?? 0;
    return this.#keys !== undefined && this.#now() - this.#fetchedAt < this.#o.refreshMs + staleIfErrorMs;
  }

  #mayAsk(): boolean {
    return (
      this.#inFlight !== undefined || this.#askedAt === undefined || this.#now() - this.#askedAt >= this.#o.minRefetchMs
    );
  }

  /** Fetches a new copy, or joins the request in flight; throws when the provider may not be asked or failed. */
  async #refresh(): Promise<void> {
    if (!this.#inFlight) {
      if (!this.#mayAsk()) {
        throw new JwksUnavailableError(
          `JWKS not refetched yet (back-off after: ${this.#lastFailure ?? 'a recent fetch'})`,
        );
      }
      this.#askedAt = this.#now();
      this.#inFlight = this.#fetch().finally(() => (this.#inFlight = undefined));
    }
    await this.#inFlight;
  }

  async #fetch(): Promise<void> {
    try {
      const jwks = await this.#download();
      this.#keys = createLocalJWKSet(jwks);
      this.#fetchedAt = this.#now();
      this.#lastFailure = undefined;
    } catch (error) {
      this.#lastFailure = error instanceof Error ? error.message : 'fetch failed';
      const age = this.#now() - this.#fetchedAt;
      if (age >= this.#o.refreshMs && this.#mayServeStale()) this.#o.onStaleUse?.(age, this.#lastFailure);
      throw new JwksUnavailableError(`JWKS fetch failed: ${this.#lastFailure}`);
    }
  }

  async #download(): Promise<JSONWebKeySet> {
    const { url, timeoutMs, maxBytes } = this.#o;
    const response = await fetch(url, {
      headers: { accept: 'application/json, application/jwk-set+json' },
      redirect: 'error',
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new Error(`HTTP ${response.status}`);
    }
    const declared = Number(response.headers.get('content-length') ?? NaN);
    if (declared > maxBytes) {
      await response.body?.cancel();
      throw new Error(`response of ${declared} bytes exceeds ${maxBytes}`);
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    const reader = response.body?.getReader();
    if (!reader) throw new Error('empty response');
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel();
        throw new Error(`response exceeds ${maxBytes} bytes`);
      }
      chunks.push(value);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new Error('response is not JSON');
    }
    if (typeof parsed !== 'object' || parsed === null || !Array.isArray((parsed as { keys?: unknown }).keys)) {
      throw new Error('response is not a JWK set');
    }
    // An identity provider always publishes a key; an empty set is a fault on its side (a deployment half done, a
    // proxy's placeholder). Taken as the new copy it would refuse every token as a bad credential, and count each
    // against the brute-force throttle; as a failed fetch the last good copy stays, as the stale rules allow.
    // Members without a kty (REQUIRED, RFC 7517 §4.1) match no token either: such a set is as empty.
    const isKey = (k: unknown): boolean =>
      typeof k === 'object' && k !== null && typeof (k as { kty?: unknown }).kty === 'string';
    const keys = (parsed as { keys: unknown[] }).keys;
    if (!keys.some(isKey)) throw new Error('response holds no keys');
    // Likewise a set whose keys serve none of the step's algorithms (an RSA-only set for an ES256 step, keys marked
    // for encryption): no token could verify against it, yet it would replace a copy that can.
    const algorithms = this.#o.algorithms;
    if (algorithms !== undefined && !keys.some((k) => isKey(k) && verifiesAny(k as JwkFields, algorithms)))
      throw new Error(`response holds no key for ${algorithms.join(', ')}`);
    return parsed as JSONWebKeySet;
  }
}

interface JwkFields {
  kty: string;
  alg?: unknown;
  use?: unknown;
  key_ops?: unknown;
  crv?: unknown;
}

/** The key type (and curve) an algorithm verifies with (RFC 7518 §3.1, RFC 8037). */
const KEY_FOR_ALGORITHM: Record<string, { kty: string; crv?: readonly string[] }> = {
  HS256: { kty: 'oct' },
  HS384: { kty: 'oct' },
  HS512: { kty: 'oct' },
  RS256: { kty: 'RSA' },
  RS384: { kty: 'RSA' },
  RS512: { kty: 'RSA' },
  PS256: { kty: 'RSA' },
  PS384: { kty: 'RSA' },
  PS512: { kty: 'RSA' },
  ES256: { kty: 'EC', crv: ['P-256'] },
  ES384: { kty: 'EC', crv: ['P-384'] },
  ES512: { kty: 'EC', crv: ['P-521'] },
  // jose verifies EdDSA with Ed25519 keys only.
  EdDSA: { kty: 'OKP', crv: ['Ed25519'] },
  Ed25519: { kty: 'OKP', crv: ['Ed25519'] },
};

/**
 * Whether a JWK could verify a token signed with one of `algorithms`, by the fields jose 6 picks keys with: `use`,
 * `key_ops`, `alg`, `kty`, `crv`.
 */
function verifiesAny(key: JwkFields, algorithms: readonly string[]): boolean {
  if (key.use !== undefined && key.use !== 'sig') return false;
  if (Array.isArray(key.key_ops) && !key.key_ops.includes('verify')) return false;
  return algorithms.some((alg) => {
    if (key.alg !== undefined && key.alg !== alg) return false;
    const wanted = KEY_FOR_ALGORITHM[alg];
    if (wanted === undefined || wanted.kty !== key.kty) return false;
    return wanted.crv === undefined || (typeof key.crv === 'string' && wanted.crv.includes(key.crv));
  });
}
