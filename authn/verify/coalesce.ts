/**
 * Coalesces identical in-flight lookups: while one verification for a key is running, later callers with the
 * same key share its promise instead of starting their own. Keys must already include a digest of the secret,
 * so two attempts with different passwords never share a result.
 */
export class Coalescer<T> {
  readonly #inFlight = new Map<string, Promise<T>>();

  get size(): number {
    return this.#inFlight.size;
  }

  run(key: string, task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    let shared = this.#inFlight.get(key);
    if (!shared) {
      shared = task().finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, shared);
    }
    return signal ? raceAbort(shared, signal) : shared;
  }
}

/** One caller giving up must not cancel the shared work for the others, so each waiter races its own signal. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

export function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted');
}
