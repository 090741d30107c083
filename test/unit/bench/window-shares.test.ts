import { describe, expect, it } from 'vitest';
import { windowShares } from '../../../bench/loadgen-process.js';

describe('windowShares', () => {
  it("turns the load generator's two readings into shares of the window it measured", () => {
    const start = { atMs: 1_000, brokerCpuMs: 50, brokerWaitMs: 4, loadgenWaitMs: 1 };
    const end = { atMs: 1_200, brokerCpuMs: 230, brokerWaitMs: 14, loadgenWaitMs: 3 };
    expect(windowShares(start, end)).toEqual({ brokerCpu: 0.9, brokerWait: 0.05, loadgenWait: 0.01 });
  });

  it('leaves out what either reading lacks, rather than reporting it as zero', () => {
    expect(windowShares({ atMs: 0, brokerCpuMs: 5 }, { atMs: 100, brokerCpuMs: 25, loadgenWaitMs: 2 })).toEqual({
      brokerCpu: 0.2,
    });
  });

  it('reports nothing for a window of no length', () => {
    expect(windowShares({ atMs: 7, brokerCpuMs: 1 }, { atMs: 7, brokerCpuMs: 2 })).toEqual({});
  });
});
