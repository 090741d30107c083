import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HmacSha256 } from '../../../authn/verify/hmac-sha256.js';

describe('HMAC-SHA-256 from two one-shot digests', () => {
  it('equals createHmac for keys up to a block, any text (UTF-8) and any secret bytes', () => {
    const texts = ['', 'a', '13:password-file8:bench-u1', 'ünïcode 中 \u{1f600}', 'x'.repeat(200)];
    for (const keyLength of [0, 1, 16, 32, 63, 64]) {
      const key = randomBytes(keyLength);
      const mac = new HmacSha256(key);
      for (const text of texts) {
        for (const secretLength of [0, 1, 11, 64, 300]) {
          const secret = randomBytes(secretLength);
          for (const encoding of ['base64url', 'hex'] as const) {
            const expected = createHmac('sha256', key).update(text, 'utf8').update(secret).digest(encoding);
            expect(mac.digest(text, secret, encoding)).toBe(expected);
          }
        }
      }
    }
  });

  it('leaves the caller its secret and refuses keys longer than a block', () => {
    const secret = Buffer.from('hunter2');
    new HmacSha256(randomBytes(32)).digest('head', secret, 'hex');
    expect(secret.toString()).toBe('hunter2');
    expect(() => new HmacSha256(randomBytes(65))).toThrow(RangeError);
  });
});
