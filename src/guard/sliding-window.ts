import { BoundedMap } from './bounded-map.js';

/**
 * Exact sliding-window counts per key: the timestamps of the last `cap` hits. A count only needs to reach its
 * threshold, so keeping `threshold + 1` timestamps bounds memory per key without approximating the window.
 */
export class SlidingWindowCounter {
  private readonly hits: BoundedMap<string, number[]>;

  constructor(maxKeys: number) {
    this.hits = new BoundedMap(maxKeys);
  }

  /** Records a hit at `now` and returns how many hits fall within the last `windowMs`, this one included. */
  hit(key: string, now: number, windowMs: number, cap: number): number {
    const stamps = this.hits.get(key) ?? [];
    prune(stamps, now - windowMs);
    stamps.push(now);
    if (stamps.length > cap) stamps.splice(0, stamps.length - cap);
    this.hits.set(key, stamps);
    return stamps.length;
  }

  count(key: string, now: number, windowMs: number): number {
    const stamps = this.hits.peek(key);
    if (stamps === undefined) return 0;
    prune(stamps, now - windowMs);
    return stamps.length;
  }

  clear(key: string): void {
    this.hits.delete(key);
  }

  get trackedKeys(): number {
    return this.hits.size;
  }
}

function prune(stamps: number[], oldestKept: number): void {
  let drop = 0;
  while (drop < stamps.length && (stamps[drop] as number) <= oldestKept) drop += 1;
  if (drop > 0) stamps.splice(0, drop);
}

/** Repeat offences per key, forgotten after `memoryMs` without a new one; drives escalating ban lengths. */
export class OffenceTracker {
  private readonly offences: BoundedMap<string, { count: number; last: number }>;

  constructor(maxKeys: number) {
    this.offences = new BoundedMap(maxKeys);
  }

  /** Records an offence and returns its ordinal (1 for a first offence within memory). */
  record(key: string, now: number, memoryMs: number): number {
    const previous = this.offences.get(key);
    const count = previous !== undefined && now - previous.last < memoryMs ? previous.count + 1 : 1;
    this.offences.set(key, { count, last: now });
    return count;
  }
}

/** `base × factor^(offence−1)`, capped: 5m, 10m, 20m, … up to `max`. */
export function escalatedDuration(offence: number, baseMs: number, factor: number, maxMs: number): number {
  const scaled = baseMs * factor ** Math.max(0, offence - 1);
  return Math.min(Number.isFinite(scaled) ? scaled : maxMs, Math.max(maxMs, baseMs));
}
