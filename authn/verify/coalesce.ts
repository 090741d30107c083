import { raceAbort } from './race-abort.js';

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
