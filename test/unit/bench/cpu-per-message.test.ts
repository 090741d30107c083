import { describe, expect, it } from 'vitest';
import { cpuPerMessageUs } from '../../../bench/harness.js';

describe('broker CPU per message', () => {
  it('is the CPU share of the window over the messages carried, in microseconds', () => {
    expect(cpuPerMessageUs(100_000, 0.5)).toBeCloseTo(5, 10);
    expect(cpuPerMessageUs(250_000, 1)).toBeCloseTo(4, 10);
  });

  it('is absent when the CPU was not measured or nothing was carried', () => {
    expect(cpuPerMessageUs(100_000, undefined)).toBeUndefined();
    expect(cpuPerMessageUs(0, 0.9)).toBeUndefined();
    expect(cpuPerMessageUs(100_000, 0)).toBeUndefined();
  });
});
