/**
 * Small, pure statistics helpers for the benchmark. Kept free of I/O so they can be unit tested.
 */

/** The median of the finite values, or undefined when there are none (a skipped scenario has no value). */
export function median(values: readonly number[]): number | undefined {
  const xs = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (xs.length === 0) return undefined;
  const mid = xs.length >> 1;
  return xs.length % 2 === 1 ? (xs[mid] as number) : ((xs[mid - 1] as number) + (xs[mid] as number)) / 2;
}

/**
 * Nearest-rank percentile (p in 0..100) of a sorted sample: the smallest value such that at least p% of the
 * sample is at or below it. Nearest-rank never invents a value that was not observed, which matters for p99/max.
 */
export function percentileOfSorted(sorted: ArrayLike<number>, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  if (p <= 0) return sorted[0];
  if (p >= 100) return sorted[sorted.length - 1];
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

export interface LatencySummary {
  samples: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Sorts the sample in place and summarises it; undefined for an empty sample. */
export function summarizeLatencies(samplesMs: Float64Array): LatencySummary | undefined {
  if (samplesMs.length === 0) return undefined;
  samplesMs.sort();
  return {
    samples: samplesMs.length,
    p50Ms: percentileOfSorted(samplesMs, 50) as number,
    p99Ms: percentileOfSorted(samplesMs, 99) as number,
    maxMs: samplesMs[samplesMs.length - 1] as number,
  };
}

/** Bulwark's value over the reference's, or undefined when either is missing or the reference is zero. */
export function ratio(value: number | undefined, reference: number | undefined): number | undefined {
  if (value === undefined || reference === undefined || reference === 0) return undefined;
  return value / reference;
}

/** CPU time over wall time, as a fraction of one core. */
export function cpuFraction(cpuMicros: number, wallMs: number): number {
  return wallMs <= 0 ? 0 : cpuMicros / 1000 / wallMs;
}
