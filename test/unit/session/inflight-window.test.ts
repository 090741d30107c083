import { describe, expect, it } from 'vitest';
import { InflightWindow } from '../../../src/session/inflight-window.js';

describe('InflightWindow', () => {
  it('behaves as a Map of packet ids in insertion order; id 0 is never in it', () => {
    const window = new InflightWindow<string>();
    expect(window.size).toBe(0);
    expect([...window]).toEqual([]);
    window.set(7, 'seven');
    window.set(3, 'three');
    window.set(65_535, 'last');
    expect(window.size).toBe(3);
    expect([...window.keys()]).toEqual([7, 3, 65_535]);
    expect([...window.values()]).toEqual(['seven', 'three', 'last']);
    expect([...window]).toEqual([
      [7, 'seven'],
      [3, 'three'],
      [65_535, 'last'],
    ]);
    expect(window.has(0)).toBe(false);
    expect(window.get(0)).toBeUndefined();
    expect(window.delete(0)).toBe(false);
    expect(window.delete(3)).toBe(true);
    expect(window.delete(3)).toBe(false);
    expect(window.get(7)).toBe('seven');
    expect(window.has(3)).toBe(false);
    expect([...window.keys()]).toEqual([7, 65_535]);
  });

  it('empties and refills as often as messages come and go, and refuses packet id 0', () => {
    const window = new InflightWindow<number>();
    for (let id = 1; id <= 10_000; id++) {
      window.set(id, id);
      expect(window.size).toBe(1);
      expect(window.delete(id)).toBe(true);
    }
    expect(window.size).toBe(0);
    expect([...window]).toEqual([]);
    expect(() => window.set(0, 0)).toThrow(RangeError);
  });

  it('answers as a Map does through any mix of sets and deletes, with colliding ids, growth and shrinking', () => {
    // A fixed pseudo-random sequence, so that a failure is the same on every run.
    let seed = 12345;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const window = new InflightWindow<number>();
    const reference = new Map<number, number>();
    // Ids that share low bits collide in every table size; the wrap at 65,535 is in the mix too.
    const pool = [
      ...Array.from({ length: 40 }, (_, i) => (i + 1) * 64),
      ...Array.from({ length: 40 }, (_, i) => 65_535 - i),
      ...Array.from({ length: 40 }, (_, i) => i + 1),
    ];
    for (let step = 0; step < 20_000; step++) {
      const id = pool[random(pool.length)]!;
      // Phases that fill the window up (growth) and drain it (shrinking).
      const filling = Math.floor(step / 2_000) % 2 === 0;
      if (random(10) < (filling ? 7 : 3)) {
        window.set(id, step);
        reference.set(id, step);
      } else expect(window.delete(id)).toBe(reference.delete(id));
      expect(window.size).toBe(reference.size);
      const probe = pool[random(pool.length)]!;
      expect(window.get(probe)).toBe(reference.get(probe));
      expect(window.has(probe)).toBe(reference.has(probe));
      if (step % 97 === 0) expect([...window]).toEqual([...reference]);
    }
    expect([...window.keys()]).toEqual([...reference.keys()]);
    expect([...window.values()]).toEqual([...reference.values()]);
  });

  it('keeps the place of an id set again, and lets entries be deleted while it is walked', () => {
    const window = new InflightWindow<string>();
    for (const id of [5, 13, 21, 29]) window.set(id, `v${id}`); // all in one probe run of an 8-slot table
    window.set(13, 'again');
    expect([...window]).toEqual([
      [5, 'v5'],
      [13, 'again'],
      [21, 'v21'],
      [29, 'v29'],
    ]);
    for (const [id] of window) if (id !== 29) window.delete(id);
    expect([...window]).toEqual([[29, 'v29']]);
    expect(window.get(29)).toBe('v29');
  });
});
