/**
 * A Map that forgets its least recently used key beyond a bound. Every counter in the guard lives in one, per
 * dimension, so that an attacker rotating client ids churns the client-id map and cannot push the address or
 * network counters that would catch them out of memory.
 */
export class BoundedMap<K, V> {
  private readonly map = new Map<K, V>();
  constructor(readonly maxSize: number) {}

  get size(): number {
    return this.map.size;
  }

  /** Reads and marks the key as most recently used. */
  get(key: K): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  peek(key: K): V | undefined {
    return this.map.get(key);
  }

  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    while (this.map.size > this.maxSize) {
      const oldest = this.map.keys().next();
      if (oldest.done === true) break;
      this.map.delete(oldest.value);
    }
  }

  delete(key: K): boolean {
    return this.map.delete(key);
  }

  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }
}
