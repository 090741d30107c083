import { describe, expect, it } from 'vitest';
import { AddressBlocks } from '../../../authz/compile.js';

describe('a rule’s address blocks', () => {
  const blocks = new AddressBlocks();
  blocks.addSubnet('10.0.0.0', 8, 'ipv4');
  blocks.addSubnet('2001:db8::', 32, 'ipv6');

  it('matches IPv4 and IPv6 peers inside the blocks and nothing else, the same on every ask', () => {
    for (let round = 0; round < 3; round++) {
      expect(blocks.has('10.1.2.3')).toBe(true);
      expect(blocks.has('11.1.2.3')).toBe(false);
      expect(blocks.has('2001:db8::7')).toBe(true);
      expect(blocks.has('2001:db9::7')).toBe(false);
      expect(blocks.has('not an address')).toBe(false);
    }
  });

  it('stays right when far more distinct peers ask than it remembers', () => {
    for (let i = 0; i < 3000; i++) {
      const inside = `10.0.${(i >> 8) & 255}.${i & 255}`;
      const outside = `192.168.${(i >> 8) & 255}.${i & 255}`;
      expect([blocks.has(inside), blocks.has(outside)]).toEqual([true, false]);
    }
    expect(blocks.has('10.255.255.255')).toBe(true);
  });

  it('forgets remembered answers when a block is added', () => {
    const growing = new AddressBlocks();
    expect(growing.has('192.0.2.1')).toBe(false);
    growing.addSubnet('192.0.2.0', 24, 'ipv4');
    expect(growing.has('192.0.2.1')).toBe(true);
  });
});
