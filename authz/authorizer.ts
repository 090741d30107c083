import { CircuitOpenError } from '../authn/verify/breaker.js';
import { PoolSaturatedError } from '../authn/verify/pool.js';
import type { Logger } from '../src/log.js';
import { DecisionCache } from './cache.js';
import { DEFAULT_DENY } from './compile.js';
import type { AccessRequest, Authorizer, AuthzDecision, AuthzOutcome, AuthzSource } from './types.js';

/** How the chain treats one source. */
export interface SourceBinding {
  source: AuthzSource;
  /** `deny` (default): a throw or timeout denies. `next`: ask the next source instead. */
  onError: 'deny' | 'next';
  /** Deadline for an asynchronous answer. */
  timeoutMs: number;
  /**
   * Whether decisions this source took part in may be kept in the decision cache. True for sources whose answer
   * only changes with a policy swap or a new identity (files, JWT claims); false for sources with their own TTL
   * (SQL), so their answers expire on their own schedule.
   */
  cacheable: boolean;
}

/** Sources that can tell the chain their rules changed (a policy swap). */
interface ChangeSource {
  onChange(listener: () => void): void;
}

function hasOnChange(source: AuthzSource): source is AuthzSource & ChangeSource {
  return typeof (source as Partial<ChangeSource>).onChange === 'function';
}

function isPromiseLike(x: AuthzOutcome | Promise<AuthzOutcome>): x is Promise<AuthzOutcome> {
  return typeof (x as { then?: unknown }).then === 'function';
}

export class SourceTimeoutError extends Error {
  override readonly name = 'SourceTimeoutError';
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new SourceTimeoutError(`no answer within ${ms} ms`)), ms);
    timer.unref?.();
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

interface Bound extends SourceBinding {
  errorDecision: AuthzDecision;
  timeoutDecision: AuthzDecision;
}

export interface ChainAuthorizerOptions {
  /** Bound on cached decisions across all clients; 0 disables the cache. */
  cacheMaxEntries?: number;
  logger?: Logger;
}

/**
 * The broker's `Authorizer`: sources in configured order, the first allow or deny wins, and nobody answering means
 * deny. A throw or timeout is a deny (fail closed) unless the source is configured `on_error: next`.
 *
 * `check` returns synchronously (no promise) when the decision cache or every consulted source answers
 * synchronously, which is always the case for files and JWT claims and for SQL on a cache hit.
 */
export class ChainAuthorizer implements Authorizer {
  readonly #sources: Bound[];
  readonly #cache: DecisionCache;
  readonly #listeners: Array<() => void> = [];
  readonly #logger: Logger | undefined;
  /** Bumped on every invalidation so an answer computed before it is never cached after it. */
  #generation = 0;

  constructor(bindings: readonly SourceBinding[], opts: ChainAuthorizerOptions = {}) {
    this.#cache = new DecisionCache(opts.cacheMaxEntries ?? 100_000);
    this.#logger = opts.logger;
    this.#sources = bindings.map((b) => ({
      ...b,
      errorDecision: Object.freeze({
        allowed: false,
        rule: Object.freeze({ source: b.source.id, name: 'source-error' }),
        reason: `source "${b.source.id}" failed (fail closed)`,
      }),
      timeoutDecision: Object.freeze({
        allowed: false,
        rule: Object.freeze({ source: b.source.id, name: 'source-timeout' }),
        reason: `source "${b.source.id}" did not answer within ${b.timeoutMs} ms (fail closed)`,
      }),
    }));
    for (const b of bindings) if (hasOnChange(b.source)) b.source.onChange(() => this.changed());
  }

  get cacheSize(): number {
    return this.#cache.size;
  }

  check(req: AccessRequest): AuthzDecision | Promise<AuthzDecision> {
    const hit = this.#cache.get(req);
    if (hit !== undefined) return hit;
    return this.#run(req, 0, true, this.#generation);
  }

  cached(req: AccessRequest): AuthzDecision | undefined {
    return this.#cache.get(req);
  }

  /**
   * Only the first source can prove it: when it allows every topic under the filter, the chain never asks the
   * others. A source configured `on_error: next` could still hand some checks on, but file sources never fail.
   */
  receivesWholeFilter(req: AccessRequest): boolean {
    const first = this.#sources[0];
    return first?.source.receivesWholeFilter?.(req) === true;
  }

  onChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  invalidate(clientId?: string): void {
    this.#generation++;
    this.#cache.invalidate(clientId);
  }

  /** A source's rules changed: drop every cached decision, then let the broker re-evaluate live state. */
  changed(): void {
    this.invalidate();
    for (const l of this.#listeners) {
      try {
        l();
      } catch (e) {
        this.#logger?.error({ event: 'authz.change_listener_failed', err: e }, 'authorization change listener threw');
      }
    }
  }

  async start(): Promise<void> {
    for (const b of this.#sources) await b.source.start?.();
  }

  async stop(): Promise<void> {
    for (const b of this.#sources) await b.source.stop?.();
  }

  #run(req: AccessRequest, start: number, cacheable: boolean, gen: number): AuthzDecision | Promise<AuthzDecision> {
    const sources = this.#sources;
    for (let i = start; i < sources.length; i++) {
      const b = sources[i] as Bound;
      let out: AuthzOutcome | Promise<AuthzOutcome>;
      try {
        out = b.source.authorize(req);
      } catch (e) {
        this.#report(b, e);
        if (b.onError === 'next') {
          cacheable = false;
          continue;
        }
        return b.errorDecision;
      }
      if (isPromiseLike(out)) return this.#continue(req, i, out, cacheable, gen);
      if (out.kind !== 'nomatch') return this.#decided(req, b, out, cacheable, gen);
      cacheable &&= b.cacheable;
    }
    if (cacheable && gen === this.#generation) this.#cache.set(req, DEFAULT_DENY);
    return DEFAULT_DENY;
  }

  async #continue(
    req: AccessRequest,
    i: number,
    pending: Promise<AuthzOutcome>,
    cacheable: boolean,
    gen: number,
  ): Promise<AuthzDecision> {
    const b = this.#sources[i] as Bound;
    let out: AuthzOutcome;
    try {
      out = await withTimeout(pending, b.timeoutMs);
    } catch (e) {
      this.#report(b, e);
      if (b.onError === 'next') return this.#run(req, i + 1, false, gen);
      return e instanceof SourceTimeoutError ? b.timeoutDecision : b.errorDecision;
    }
    if (out.kind !== 'nomatch') return this.#decided(req, b, out, cacheable, gen);
    return this.#run(req, i + 1, cacheable && b.cacheable, gen);
  }

  #decided(
    req: AccessRequest,
    b: Bound,
    out: Exclude<AuthzOutcome, { kind: 'nomatch' }>,
    cacheable: boolean,
    gen: number,
  ): AuthzDecision {
    const decision: AuthzDecision =
      'allowed' in out && 'reason' in out
        ? (out as AuthzOutcome & AuthzDecision)
        : {
            allowed: out.kind === 'allow',
            rule: out.rule,
            reason: `${out.kind === 'allow' ? 'allowed' : 'denied'} by ${b.source.id} rule "${out.rule.name}"`,
          };
    if (cacheable && b.cacheable && gen === this.#generation) this.#cache.set(req, decision);
    return decision;
  }

  #report(b: Bound, e: unknown): void {
    // The source said once that it fails fast (its breaker opened) or is saturated; a line per request would flood
    // the log.
    if (e instanceof CircuitOpenError || e instanceof PoolSaturatedError) return;
    const message = e instanceof Error ? e.message : String(e);
    this.#logger?.warn(
      { event: 'authz.source_failed', source: b.source.id, error: message, on_error: b.onError },
      'authorization source failed',
    );
  }
}
