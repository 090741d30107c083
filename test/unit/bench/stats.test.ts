import { describe, expect, it } from 'vitest';
import { cpuFraction, median, percentileOfSorted, ratio, summarizeLatencies } from '../../../bench/stats.js';

describe('bench statistics', () => {
  it('median of an odd sample is its middle value and of an even sample the mean of the two middle ones', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('median ignores missing values and is undefined when nothing was measured', () => {
    expect(median([NaN, 7, NaN])).toBe(7);
    expect(median([])).toBeUndefined();
    expect(median([NaN])).toBeUndefined();
  });

  it('nearest-rank percentiles only ever return observed values', () => {
    const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentileOfSorted(sorted, 50)).toBe(50);
    expect(percentileOfSorted(sorted, 99)).toBe(99);
    expect(percentileOfSorted(sorted, 100)).toBe(100);
    expect(percentileOfSorted(sorted, 0)).toBe(1);
    expect(percentileOfSorted([10, 20, 30], 50)).toBe(20);
    expect(percentileOfSorted([10, 20, 30], 99)).toBe(30);
    expect(percentileOfSorted([], 50)).toBeUndefined();
  });

  it('latency summary sorts the sample and reports p50, p99 and the maximum', () => {
    const sample = Float64Array.from([9, 1, 5, 3, 7]);
    expect(summarizeLatencies(sample)).toEqual({ samples: 5, p50Ms: 5, p99Ms: 9, maxMs: 9 });
    expect(summarizeLatencies(new Float64Array(0))).toBeUndefined();
  });

  it('ratio is undefined without a reference instead of dividing by zero', () => {
    expect(ratio(150, 100)).toBe(1.5);
    expect(ratio(150, 0)).toBeUndefined();
    expect(ratio(undefined, 100)).toBeUndefined();
    expect(ratio(150, undefined)).toBeUndefined();
  });

  it('CPU fraction is CPU microseconds over wall milliseconds, as a share of one core', () => {
    expect(cpuFraction(500_000, 1000)).toBe(0.5);
    expect(cpuFraction(100, 0)).toBe(0);
  });
});
