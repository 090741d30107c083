import { describe, expect, it } from 'vitest';
import { rotatedPerRound, saturationNote, unsaturatedNote } from '../../../bench/harness.js';
import type { BenchContext } from '../../../bench/scenario.js';

describe('bench notes on what limited a run', () => {
  it('says so when neither the broker nor the load generator was busy', () => {
    expect(unsaturatedNote(0.34, 0.29)).toEqual([
      'neither the broker (34% CPU) nor the load generator (29%) was busy: something outside both limited this round',
    ]);
  });

  it('says nothing when either was busy, or when a CPU figure is missing', () => {
    expect(unsaturatedNote(0.97, 0.25)).toEqual([]);
    expect(unsaturatedNote(0.4, 0.96)).toEqual([]);
    expect(unsaturatedNote(undefined, 0.2)).toEqual([]);
  });

  it('flags a saturated load generator as a lower bound', () => {
    expect(saturationNote(0.95)).toHaveLength(1);
    expect(saturationNote(0.5)).toEqual([]);
  });
});

describe('variants rotated per round', () => {
  it('starts each call with the next item, per key, and keeps every item once', () => {
    const ctx = { memo: new Map<string, unknown>() } as unknown as BenchContext;
    const items = ['a', 'b', 'c'];
    expect(rotatedPerRound(ctx, 'k', items)).toEqual(['a', 'b', 'c']);
    expect(rotatedPerRound(ctx, 'k', items)).toEqual(['b', 'c', 'a']);
    expect(rotatedPerRound(ctx, 'other', items)).toEqual(['a', 'b', 'c']);
    expect(rotatedPerRound(ctx, 'k', items)).toEqual(['c', 'a', 'b']);
    expect(rotatedPerRound(ctx, 'k', items)).toEqual(['a', 'b', 'c']);
    expect(items).toEqual(['a', 'b', 'c']);
  });
});
