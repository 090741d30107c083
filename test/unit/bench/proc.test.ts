import { describe, expect, it } from 'vitest';
import { processCpuMs } from '../../../bench/proc.js';

describe('processCpuMs', () => {
  it('measures a process in finer steps than the 10 ms clock tick, all its threads included', () => {
    const before = processCpuMs(process.pid)!;
    const start = process.cpuUsage();
    // About 3 ms of CPU: less than one clock tick, which /proc/PID/stat would report as 0 or 10 ms.
    while (process.cpuUsage(start).user < 3000);
    const spent = processCpuMs(process.pid)! - before;
    expect(spent).toBeGreaterThanOrEqual(2.5);
    expect(spent).toBeLessThan(1000);
    expect(spent % 10).not.toBe(0);
  });

  it('is undefined for a process that does not exist', () => {
    expect(processCpuMs(2 ** 22 + 1)).toBeUndefined();
  });
});
