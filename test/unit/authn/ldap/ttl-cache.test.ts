import { describe, expect, it } from 'vitest';
import { TtlCache } from '../../../../authn/ldap/ttl-cache.js';

describe('TTL cache', () => {
  it('forgets entries once the TTL passes on the injected clock', () => {
    let now = 0;
    const cache = new TtlCache<string>(10, 1000, () => now);
    cache.set('k', 'v');
    now = 999;
    expect(cache.get('k')).toBe('v');
    now = 1000;
    expect(cache.get('k')).toBeUndefined();
  });

  it('never holds more than its bound, evicting the oldest first', () => {
    const cache = new TtlCache<number>(3, 1000, () => 0);
    for (let i = 0; i < 10; i++) cache.set(`k${i}`, i);
    expect(cache.size).toBe(3);
    expect([cache.get('k6'), cache.get('k7'), cache.get('k9')]).toEqual([undefined, 7, 9]);
  });

  it('stores nothing when disabled', () => {
    const cache = new TtlCache<number>(10, 0, () => 0);
    cache.set('k', 1);
    expect(cache.get('k')).toBeUndefined();
  });
});
