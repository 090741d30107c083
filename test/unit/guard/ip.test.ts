import { isIPv4 } from 'node:net';
import { describe, expect, it } from 'vitest';
import { cidrContains, formatCidr, networkOf, normalizeIp, parseCidr, parseIp } from '../../../src/guard/ip.js';

describe('ip addresses', () => {
  it('accepts exactly the IPv4 texts node:net accepts, with the right value', () => {
    const texts = [
      '0.0.0.0',
      '255.255.255.255',
      '192.0.2.1',
      '10.1.2.3',
      '1.2.3.4',
      '127.0.0.1',
      '256.1.1.1',
      '1.2.3.256',
      '01.2.3.4',
      '1.02.3.4',
      '1.2.3.00',
      '1.2.3',
      '1.2.3.4.5',
      '1..3.4',
      '.1.2.3',
      '1.2.3.',
      '1.2.3.4 ',
      'a.b.c.d',
      '1.2.3.-4',
      '1234.1.1.1',
      '',
      '1.2.3.4/8',
      '999.999.999.999',
      '0.0.0.00',
    ];
    for (const text of texts) {
      const parsed = parseIp(text);
      expect({ text, v4: parsed?.family === 4 }).toEqual({ text, v4: isIPv4(text.trim()) });
    }
    expect(parseIp('192.0.2.1')).toEqual({ family: 4, value: 0xc0000201 });
    expect(parseIp('255.255.255.255')).toEqual({ family: 4, value: 0xffffffff });
  });

  it.each([
    ['192.0.2.1', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['::FFFF:c000:0201', '192.0.2.1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
  ])('normalises %s to %s', (input, expected) => {
    expect(normalizeIp(input)).toBe(expected);
  });

  it.each(['', 'localhost', '999.1.1.1', '1:2:3:4:5:6:7:8:9', '192.0.2.1/24'])('refuses %j as an address', (input) => {
    expect(normalizeIp(input)).toBeUndefined();
  });

  it('clears host bits of a CIDR and folds IPv4-mapped networks into IPv4', () => {
    expect(formatCidr(parseCidr('10.1.2.3/8') ?? expect.fail('no cidr'))).toBe('10.0.0.0/8');
    expect(formatCidr(parseCidr('2001:db8:abcd:1234::9/48') ?? expect.fail('no cidr'))).toBe('2001:db8:abcd::/48');
    expect(formatCidr(parseCidr('::ffff:10.0.0.0/104') ?? expect.fail('no cidr'))).toBe('10.0.0.0/8');
    expect(parseCidr('10.0.0.0/33')).toBeUndefined();
    expect(parseCidr('2001:db8::/129')).toBeUndefined();
  });

  it('contains addresses of its own family only', () => {
    const v6 = parseCidr('2001:db8::/32') ?? expect.fail('no cidr');
    expect(cidrContains(v6, parseIp('2001:db8:ffff::1') ?? expect.fail('no ip'))).toBe(true);
    expect(cidrContains(v6, parseIp('2001:db9::1') ?? expect.fail('no ip'))).toBe(false);
    expect(cidrContains(v6, parseIp('32.1.13.184') ?? expect.fail('no ip'))).toBe(false);
    const all4 = parseCidr('0.0.0.0/0') ?? expect.fail('no cidr');
    expect(cidrContains(all4, parseIp('::ffff:203.0.113.9') ?? expect.fail('no ip'))).toBe(true);
  });

  it('names the /24 and /64 network of an address', () => {
    expect(networkOf(parseIp('203.0.113.77') ?? expect.fail('no ip'), 24, 64)).toBe('203.0.113.0/24');
    expect(networkOf(parseIp('2001:db8:1:2:3:4:5:6') ?? expect.fail('no ip'), 24, 64)).toBe('2001:db8:1:2::/64');
  });
});
