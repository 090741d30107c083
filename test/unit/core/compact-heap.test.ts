import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { compactHeap } from '../../../src/compact-heap.js';

describe('compactHeap', () => {
  it('runs a full collection: an object only a WeakRef points to is gone afterwards', async () => {
    let ref: WeakRef<object> | undefined;
    (() => {
      ref = new WeakRef({ payload: new Array<number>(10_000).fill(7) });
    })();
    // A WeakRef target is kept alive until the job that created the WeakRef has ended.
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(compactHeap()).toBe(true);
    expect(ref!.deref()).toBeUndefined();
  });

  it('leaves no gc function behind in contexts created afterwards, and runs again on later calls', () => {
    const before = typeof (globalThis as { gc?: unknown }).gc;
    expect(compactHeap()).toBe(true);
    expect(runInNewContext('typeof gc')).toBe('undefined');
    expect(typeof (globalThis as { gc?: unknown }).gc).toBe(before);
    expect(compactHeap()).toBe(true);
  });

  it('compacts the old generation: the holes an ordinary full collection leaves behind are gone', () => {
    setFlagsFromString('--expose-gc');
    const ordinaryGc = runInNewContext('gc') as () => void;
    setFlagsFromString('--no-expose-gc');
    const oldSpaceHolesMiB = (): number => {
      const old = getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!;
      return (old.space_size - old.space_used_size) / 1_048_576;
    };
    // About 55 MiB of small objects in the old generation, then every other one dropped: every page stays half
    // full, which an ordinary full collection finds too full to empty, all but a few pages.
    let kept: { n: number; pair: number[]; name: string }[] = [];
    for (let i = 0; i < 400_000; i++) kept.push({ n: i, pair: [i, i], name: `x${i}` });
    ordinaryGc();
    ordinaryGc();
    kept = kept.filter((_, i) => i % 2 === 0);
    ordinaryGc();
    ordinaryGc();
    const holesBefore = oldSpaceHolesMiB();
    // How much an ordinary collection leaves varies from run to run (19.8 to 28 MiB seen), since V8 may evacuate a
    // few pages on its own; more than 10 MiB is enough to tell a compaction from that.
    expect(holesBefore).toBeGreaterThan(10);
    expect(compactHeap()).toBe(true);
    expect(oldSpaceHolesMiB()).toBeLessThan(holesBefore / 4);
    expect(kept).toHaveLength(200_000);
  });
});
