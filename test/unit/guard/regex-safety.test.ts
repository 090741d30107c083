import { describe, expect, it } from 'vitest';
import { screenRegex } from '../../../src/guard/regex-safety.js';

describe('regular expression screen', () => {
  it.each(['^scanner-', '^dev-[0-9]+$', '(test|staging)-.*', '^[a-f0-9]{32}$', 'a(bc)?d', '\\d{4}-x+'])(
    'accepts the ordinary pattern %s',
    (pattern) => {
      expect(screenRegex(pattern, 256).ok).toBe(true);
    },
  );

  it.each([
    ['(a+)+$', 'repeated group'],
    ['(a*)*b', 'repeated group'],
    ['(x+x+)+y', 'repeated group'],
    ['(a|ab)*c', 'repeated group'],
    ['(\\w{2,})+$', 'repeated group'],
    ['(.*a){3}', 'repeated group'],
    ['(a)\\1', 'back-references'],
    ['(?<x>a)\\k<x>', 'back-references'],
    ['.*a.*b.*c.*d', 'unbounded'],
    ['(', 'not a valid'],
    ['', 'empty'],
  ])('refuses %s', (pattern, why) => {
    const screened = screenRegex(pattern, 256);
    expect(screened.ok).toBe(false);
    if (!screened.ok) expect(screened.reason).toContain(why);
  });

  it('refuses patterns longer than the limit', () => {
    const screened = screenRegex('a'.repeat(17), 16);
    expect(screened).toEqual({ ok: false, reason: 'pattern longer than 16 characters' });
  });
});
