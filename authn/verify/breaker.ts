/**
 * A per-backend circuit breaker. After `failureThreshold` consecutive failures the backend is considered down:
 * calls fail at once (the chain answers `serverUnavailable`) instead of each waiting for a timeout. After
 * `resetTimeoutMs` one probe call is let through (half-open); its success closes the breaker again, so the
 * broker recovers without a restart when the backend comes back. `onStateChange` hears transitions only: closed to
 * open, and open (after a successful probe) to closed.
 *
 * Only rejections count. A backend that answers, even with a refusal caused by the client's own input (a user name
 * the directory or the database cannot hold), is up: callers turn such answers into values before they reach `run`,
 * so no client can open the breaker for everyone else.
 */
export class CircuitOpenError extends Error {
  override readonly name = 'CircuitOpenError';
  constructor(backend: string) {
    super(`backend "${backend}" is unavailable (circuit open)`);
  }
}

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerOptions {
  failureThreshold: number;
  resetTimeoutMs: number;
  /** Injected for tests; defaults to Date.now. */
  now?: () => number;
  onStateChange?: (state: BreakerState) => void;
}

export class CircuitBreaker {
  #state: BreakerState = 'closed';
  #failures = 0;
  #openedAt = 0;
  #probing = false;
  readonly #now: () => number;

  constructor(
    readonly backend: string,
    readonly options: CircuitBreakerOptions,
  ) {
    this.#now = options.now ?? Date.now;
  }

  get state(): BreakerState {
    if (this.#state === 'open' && this.#now() - this.#openedAt >= this.options.resetTimeoutMs) return 'half-open';
    return this.#state;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    const state = this.state;
    if (state === 'open' || (state === 'half-open' && this.#probing)) throw new CircuitOpenError(this.backend);
    const probe = state === 'half-open';
    if (probe) this.#probing = true;
    try {
      const result = await task();
      this.#succeeded();
      return result;
    } catch (error) {
      this.#failed(probe);
      throw error;
    } finally {
      if (probe) this.#probing = false;
    }
  }

  #succeeded(): void {
    this.#failures = 0;
    if (this.#state !== 'closed') this.#set('closed');
  }

  #failed(probe: boolean): void {
    if (probe) {
      // Still down: another period of failing fast. The breaker never closed, so there is no transition to report.
      this.#openedAt = this.#now();
      return;
    }
    // A call that started before the breaker opened and failed after it: the outage is already known, and counting
    // it would restart the open period (and report the opening again) for every straggler.
    if (this.#state === 'open') return;
    this.#failures++;
    if (this.#failures >= this.options.failureThreshold) {
      this.#openedAt = this.#now();
      this.#set('open');
    }
  }

  #set(state: BreakerState): void {
    this.#state = state;
    this.options.onStateChange?.(state);
  }
}
