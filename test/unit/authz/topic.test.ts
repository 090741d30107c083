import { describe, expect, it } from 'vitest';
import { lintRules, NO_CONNECT_WARNING } from '../../../authz/lint.js';
import { parsePolicyText } from '../../../authz/parse.js';
import { coversFilter, matchesName, overlapsFilter, parseTopicPattern, patternCovers } from '../../../authz/topic.js';
import { identity, policyFrom, request } from './helpers.js';

const pattern = (s: string) => {
  const p = parseTopicPattern(s);
  if (!p.ok) throw new Error(p.message);
  return p.pattern;
};
const id = identity({ username: 'alice', groups: ['ops'] });
const levels = (t: string) => t.split('/');

describe('topic matching', () => {
  it.each([
    ['a/+/c', 'a/b/c', true],
    ['a/+/c', 'a/b/d', false],
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['#', '$SYS/x', false],
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '$SYS/x', true],
    ['u/${username}', 'u/alice', true],
    ['g/${group}', 'g/ops', true],
    ['a/b', 'a/b/c', false],
  ])('pattern %s matches name %s: %s', (p, t, expected) => {
    expect(matchesName(pattern(p), levels(t), id)).toBe(expected);
  });

  it.each([
    ['a/#', 'a/+/c', true],
    ['a/+/c', 'a/+/c', true],
    ['a/+/c', 'a/#', false],
    ['a/b', 'a/+', false],
    ['#', '#', true],
    ['#', '$SYS/#', false],
    ['+/#', '+/#', true],
    ['u/${username}/#', 'u/alice/#', true],
    ['u/${username}/#', 'u/+/#', false],
  ])('pattern %s covers filter %s: %s', (p, f, expected) => {
    expect(coversFilter(pattern(p), levels(f), id)).toBe(expected);
  });

  it.each([
    ['secret/#', '#', true],
    ['secret/#', '+/x', true],
    ['secret/x', '+/y', false],
    ['a/b', 'a', false],
    ['a/#', 'a', true],
    ['a', 'a/#', true],
    ['$SYS/#', '#', false],
    ['$SYS/#', '+/x', false],
    ['#', '$SYS/x', false],
    ['u/${username}', 'u/+', true],
    ['u/${username}', 'u/bob', false],
    ['a/+/c', 'a/b/+', true],
  ])('pattern %s overlaps filter %s: %s', (p, f, expected) => {
    expect(overlapsFilter(pattern(p), levels(f), id)).toBe(expected);
  });

  it('an unfillable placeholder overlaps nothing, even a wildcard', () => {
    expect(overlapsFilter(pattern('u/${username}'), levels('u/+'), identity({ username: 'a/b' }))).toBe(false);
    expect(overlapsFilter(pattern('u/${username}'), levels('u/#'), identity({ username: undefined }))).toBe(false);
  });

  it.each([
    ['#', 'a/b', true],
    ['a/#', 'a', true],
    ['+/#', '$SYS/x', false],
    ['a/+', 'a/${username}', true],
    ['a/${username}', 'a/x', false],
    ['a/${username}', 'a/${username}', true],
    ['a/b', 'a/#', false],
  ])('for shadowing, %s statically covers %s: %s', (a, b, expected) => {
    expect(patternCovers(pattern(a), pattern(b))).toBe(expected);
  });
});

describe('policy review warnings', () => {
  // These policies are about topic rules; the connect warning has tests of its own.
  const warnings = (text: string) =>
    lintRules(parsePolicyText(text, 'p.yaml').rules)
      .filter((d) => d.message !== NO_CONNECT_WARNING)
      .map((d) => `${d.position?.line}: ${d.message}`);

  it('warns that a deny rule with a placeholder does not apply to unfillable identities', () => {
    const w = warnings(
      "rules:\n  - name: d\n    deny: publish\n    subjects: all\n    topics: ['u/${username}/admin']\n",
    );
    expect(w).toEqual([
      '2: deny rule "d" uses a placeholder: it does not apply to identities whose value is empty or contains + # /, or starts with $ in the first level',
    ]);
  });

  it('warns that a $share/ topic on a subscribe or receive rule never meets a shared subscription', () => {
    const text =
      "rules:\n  - name: c\n    allow: connect\n    subjects: all\n  - name: all-reads\n    allow: subscribe\n    subjects: all\n    topics: ['plant/#']\n  - name: keep-group-off-secrets\n    deny: subscribe\n    subjects: all\n    topics: ['$share/ingest/plant/secret/#']\n";
    expect(warnings(text)).toEqual([
      '12: rule "keep-group-off-secrets": topic "$share/ingest/plant/secret/#" never matches a shared subscription, which is checked without its "$share/<group>/" prefix',
    ]);
    // Why it matters: the deny does not refuse the shared subscription it names.
    const verdict = policyFrom(text).decide(request('subscribe', 'plant/secret/x', { sharedGroup: 'ingest' }));
    expect(verdict?.rule.name).toBe('all-reads');
  });

  it('warns about conditions that cannot apply to the rule', () => {
    const w = warnings(
      "rules:\n  - name: s\n    allow: publish\n    subjects: { users: [a] }\n    topics: ['x']\n    when: { shared: true }\n  - name: r\n    allow: subscribe\n    subjects: { users: [a] }\n    topics: ['y']\n    when: { retain: true }\n",
    );
    expect(w).toEqual([
      '2: rule "s": "shared" only applies to subscribe and receive',
      '7: rule "r": "retain: true" never holds for subscribe requests, so the rule never matches',
    ]);
  });

  it('does not call a rule shadowed when the earlier rule selects fewer subjects', () => {
    const w = warnings(
      "rules:\n  - name: ops\n    allow: publish\n    subjects: { groups: [ops] }\n    topics: ['a/#']\n  - name: all-a\n    allow: publish\n    subjects: all\n    topics: ['a/b']\n",
    );
    expect(w).toEqual([]);
  });
});
