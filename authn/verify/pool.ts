/**
 * A bounded concurrency pool for expensive verifications (argon2 on the libuv threadpool, SQL round trips).
 * Work beyond `concurrency` waits in a bounded queue; beyond `maxQueue` it is refused at once, so a reconnect
 * storm turns into fast `serverUnavailable` answers instead of an unbounded backlog of promises.
 */
export class PoolSaturatedError extends Error {
  override readonly name = 'PoolSaturatedError';
  constructor(pool: string) {
    super(`verification pool "${pool}" is saturated`);
  }
}

interface Waiter {
  start: () => void;
  signal: AbortSignal;
  onAbort: () => void;
}

export class ConcurrencyPool {
  #active = 0;
  readonly #queue: Waiter[] = [];

  constructor(
    readonly name: string,
    readonly concurrency: number,
    readonly maxQueue: number,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be >= 1');
    if (!Number.isInteger(maxQueue) || maxQueue < 0) throw new RangeError('maxQueue must be >= 0');
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Runs `task` when a slot is free. Rejects with the signal's reason if it aborts while queued. */
  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    if (this.#active >= this.concurrency) await this.#wait(signal);
    else this.#active++;
    try {
      return await task();
    } finally {
      this.#release();
    }
  }

  #wait(signal: AbortSignal | undefined): Promise<void> {
    if (this.#queue.length >= this.maxQueue) return Promise.reject(new PoolSaturatedError(this.name));
    return new Promise<void>((resolve, reject) => {
      const sig = signal ?? new AbortController().signal;
      const waiter: Waiter = {
        signal: sig,
        start: () => {
          sig.removeEventListener('abort', waiter.onAbort);
          resolve();
        },
        onAbort: () => {
          const i = this.#queue.indexOf(waiter);
          if (i >= 0) this.#queue.splice(i, 1);
          reject(sig.reason instanceof Error ? sig.reason : new Error('aborted'));
        },
      };
      sig.addEventListener('abort', waiter.onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  #release(): void {
    const next = this.#queue.shift();
    // The slot passes straight to the next waiter, so `active` stays constant and nobody can overtake it.
    if (next) next.start();
    else this.#active--;
  }
}
