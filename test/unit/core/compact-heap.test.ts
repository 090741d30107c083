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
});
