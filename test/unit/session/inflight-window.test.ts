import { describe, expect, it } from 'vitest';
import { InflightWindow } from '../../../src/session/inflight-window.js';

describe('InflightWindow', () => {
  it('behaves as a Map of packet ids in insertion order, its placeholder under id 0 never visible', () => {
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
});
