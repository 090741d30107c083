import { describe, expect, it } from 'vitest';
import { ChainAuthorizer } from '../../../authz/authorizer.js';
import { DecisionCache } from '../../../authz/cache.js';
import { runCases } from '../../../authz/cases.js';
import { DEFAULT_DENY } from '../../../authz/compile.js';
import { explainAccess, formatExplanation } from '../../../authz/explain.js';
import { lintRules, NO_CONNECT_WARNING } from '../../../authz/lint.js';
import { formatDiagnostic } from '../../../authz/model.js';
import { parsePolicyText, parseRuleData } from '../../../authz/parse.js';
import { JwtClaimSource } from '../../../authz/sources/jwt.js';
import { StaticPolicySource } from '../../../authz/sources/file.js';
import { rowsToRules } from '../../../authz/sources/sql.js';
import { CompiledPolicy } from '../../../authz/compile.js';
import type { AccessRequest, AuthzDecision } from '../../../authz/types.js';
import { identity, policyFrom, request, rule } from './helpers.js';

const connect = (over: Partial<Omit<AccessRequest, 'action' | 'topic'>> = {}): AccessRequest =>
  request('connect', '', over);

function errorAt(text: string, message: RegExp): { line: number; column: number } | undefined {
  const parsed = parsePolicyText(text, 'site.policy.yaml');
  const errs = parsed.diagnostics.filter((d) => d.severity === 'error');
  const hit = errs.find((d) => message.test(d.message));
  if (!hit) throw new Error(`no error matching ${message}; got:\n${errs.map(formatDiagnostic).join('\n')}`);
  return hit.position ? { line: hit.position.line, column: hit.position.column } : undefined;
}

describe('parsing connect rules', () => {
  it('reads a connect rule with subjects and no topics', () => {
    const parsed = parsePolicyText(
      'rules:\n  - name: staff\n    allow: connect\n    subjects: { groups: [staff] }\n    why: staff only\n',
      'p.yaml',
    );
    expect(parsed.diagnostics).toEqual([]);
    expect(parsed.rules[0]).toMatchObject({ name: 'staff', effect: 'allow', actions: ['connect'], topics: [] });
  });

  it.each([
    {
      what: 'connect listed with publish, pointing at "connect"',
      text: "rules:\n  - name: mixed\n    allow: [publish, connect]\n    subjects: all\n    topics: ['a']\n",
      message: /^rule "mixed": connect rules have no topics; write a separate rule$/,
      line: 3,
      column: 22,
    },
    {
      what: 'connect listed with receive in a deny rule',
      text: "rules:\n  - name: mixed\n    deny:\n      - connect\n      - receive\n    subjects: all\n    topics: ['a']\n",
      message: /connect rules have no topics; write a separate rule/,
      line: 4,
      column: 9,
    },
    {
      what: 'a connect rule with topics, pointing at "topics"',
      text: "rules:\n  - name: c\n    allow: connect\n    subjects: all\n    topics: ['a/#']\n",
      message: /^rule "c": connect rules have no topics$/,
      line: 5,
      column: 5,
    },
    {
      what: 'a connect rule with conditions, pointing at "when"',
      text: 'rules:\n  - name: c\n    deny: connect\n    subjects: all\n    when: { qos: 0 }\n',
      message: /^rule "c": connect rules have no conditions$/,
      line: 5,
      column: 5,
    },
    {
      what: 'a connect case that says connect: false',
      text: 'rules:\n  - name: c\n    allow: connect\n    subjects: all\ncases:\n  - name: k\n    connect: false\n    expect: deny\n',
      message: /write "connect: true"/,
      line: 7,
      column: 14,
    },
    {
      what: 'a connect case with a qos',
      text: 'rules:\n  - name: c\n    allow: connect\n    subjects: all\ncases:\n  - name: k\n    connect: true\n    qos: 1\n    expect: allow\n',
      message: /qos does not apply to a connect case/,
      line: 8,
      column: 5,
    },
    {
      what: 'a case with both connect and publish',
      text: 'rules:\n  - name: c\n    allow: connect\n    subjects: all\ncases:\n  - name: k\n    connect: true\n    publish: a\n    expect: allow\n',
      message: /exactly one of connect, publish, subscribe, receive/,
      line: 6,
      column: 5,
    },
  ])('refuses $what, with its position', ({ text, message, line, column }) => {
    expect(errorAt(text, message)).toEqual({ line, column });
  });

  it('a mixed rule is refused as data too (a JWT claim), so the bearer gets nothing from it', () => {
    const bad = parseRuleData([{ name: 'm', allow: ['connect', 'publish'], topics: ['x'] }], 'jwt:aclRules');
    expect(bad.rules).toEqual([]);
    expect(bad.diagnostics.map((d) => d.message)).toContain(
      'rule "m": connect rules have no topics; write a separate rule',
    );
  });
});

interface Row {
  what: string;
  rules: string;
  superusers?: boolean;
  req: AccessRequest;
  allowed: boolean;
  by: string;
}

const allowConnect = (name: string, subjects: string): string => rule(name, `allow: connect\nsubjects: ${subjects}`);
const denyConnect = (name: string, subjects: string): string => rule(name, `deny: connect\nsubjects: ${subjects}`);

const rows: Row[] = [
  {
    what: 'an allow for all lets anyone connect',
    rules: allowConnect('a', 'all'),
    req: connect(),
    allowed: true,
    by: 'a',
  },
  {
    what: 'users selects by username',
    rules: allowConnect('a', '{ users: [bob] }'),
    req: connect(),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'groups selects members',
    rules: allowConnect('a', '{ groups: [staff] }'),
    req: connect({ identity: identity({ groups: ['visitors', 'staff'] }) }),
    allowed: true,
    by: 'a',
  },
  {
    what: 'authenticators selects the step that admitted the client',
    rules: allowConnect('a', '{ authenticators: [x509] }'),
    req: connect(),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'listeners selects the listener',
    rules: allowConnect('a', '{ listeners: [internal] }'),
    req: connect({ listener: 'internal' }),
    allowed: true,
    by: 'a',
  },
  {
    what: 'listeners refuses another listener',
    rules: allowConnect('a', '{ listeners: [internal] }'),
    req: connect({ listener: 'public' }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'addresses admits a peer inside the block',
    rules: allowConnect('a', '{ addresses: [10.0.0.0/8] }'),
    req: connect({ peerAddress: '10.9.8.7' }),
    allowed: true,
    by: 'a',
  },
  {
    what: 'addresses refuses a peer outside the block',
    rules: allowConnect('a', '{ addresses: [10.0.0.0/8] }'),
    req: connect({ peerAddress: '192.0.2.1' }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'anonymous: true selects anonymous clients only',
    rules: allowConnect('a', '{ anonymous: true }'),
    req: connect(),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'attributes select by certificate field',
    rules: allowConnect('a', '{ attributes: { cert.ou: [fleet] } }'),
    req: connect({ identity: identity({ attributes: { 'cert.ou': 'fleet' } }) }),
    allowed: true,
    by: 'a',
  },
  {
    what: 'a matching deny wins over an earlier allow',
    rules: allowConnect('a', 'all') + denyConnect('d', '{ users: [alice] }'),
    req: connect(),
    allowed: false,
    by: 'd',
  },
  {
    what: 'a deny that does not match leaves the allow deciding',
    rules: denyConnect('d', '{ users: [mallory] }') + allowConnect('a', 'all'),
    req: connect(),
    allowed: true,
    by: 'a',
  },
  {
    what: 'the first matching allow is reported',
    rules: allowConnect('first', '{ users: [alice] }') + allowConnect('second', 'all'),
    req: connect(),
    allowed: true,
    by: 'first',
  },
  {
    what: 'no connect rule means default deny, however broad the topic rules',
    rules: rule('everything', "allow: [publish, subscribe, receive]\nsubjects: all\ntopics: ['#']"),
    req: connect(),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'a topic deny for all never refuses a connection',
    rules:
      allowConnect('a', 'all') + rule('no-sys', "deny: [publish, subscribe, receive]\nsubjects: all\ntopics: ['#']"),
    req: connect(),
    allowed: true,
    by: 'a',
  },
  {
    what: 'superusers bypass a connect deny when the policy enables superusers',
    rules: denyConnect('d', 'all'),
    superusers: true,
    req: connect({ identity: identity({ superuser: true }) }),
    allowed: true,
    by: 'superuser',
  },
  {
    what: 'the superuser flag grants nothing when the policy does not enable superusers',
    rules: allowConnect('a', '{ users: [bob] }'),
    req: connect({ identity: identity({ superuser: true }) }),
    allowed: false,
    by: 'default-deny',
  },
];

describe('evaluating connect', () => {
  it.each(rows)('$what', (row) => {
    const text = `${row.superusers ? 'superusers: true\n' : ''}rules:\n${row.rules}`;
    const policy = policyFrom(text);
    const decision = policy.decide(row.req) ?? DEFAULT_DENY;
    expect(decision.allowed).toBe(row.allowed);
    expect(decision.rule?.name ?? 'default-deny').toBe(row.by);
    expect(explainAccess(policy, row.req).decision).toBe(decision);
  });

  it('a connect rule never answers a topic request', () => {
    const policy = policyFrom(`rules:\n${allowConnect('a', 'all')}`);
    for (const action of ['publish', 'subscribe', 'receive'] as const) {
      expect(policy.decide(request(action, 'x'))).toBeUndefined();
    }
  });

  it('answers with the preallocated verdict of the rule, the same object every time', () => {
    const policy = policyFrom(`rules:\n${allowConnect('a', 'all')}`);
    const first = policy.decide(connect());
    expect(first).toBe(policy.rules[0]?.verdict);
    expect(policy.decide(connect())).toBe(first);
  });
});

describe('connect decisions and the decision cache', () => {
  it('never stores a connect decision, and keeps the topic decisions of the same client', () => {
    const cache = new DecisionCache(100);
    const id = identity();
    const allow: AuthzDecision = { allowed: true, reason: 'connect allowed' };
    const deny: AuthzDecision = { allowed: false, reason: 'publish denied' };
    // A publish on the empty topic cannot exist on the wire, but the cache must not rely on that.
    cache.set(request('connect', '', { identity: id }), allow);
    cache.set(request('publish', '', { identity: id }), deny);
    expect(cache.get(request('connect', '', { identity: id }))).toBeUndefined();
    expect(cache.get(request('publish', '', { identity: id }))).toBe(deny);
    expect(cache.size).toBe(1);
  });

  it('asks the sources on every connect check, so a policy swap is seen at once', () => {
    let policy = policyFrom(`rules:\n${allowConnect('a', 'all')}`);
    let calls = 0;
    const source = {
      id: 'file',
      authorize: (req: AccessRequest) => {
        calls++;
        return policy.authorize(req);
      },
    };
    const chain = new ChainAuthorizer([{ source, onError: 'deny', timeoutMs: 1_000, cacheable: true }]);
    const req = connect();
    expect(chain.check(req)).toMatchObject({ allowed: true });
    expect(chain.check(req)).toMatchObject({ allowed: true });
    expect(calls).toBe(2);
    expect(chain.cacheSize).toBe(0);
    policy = policyFrom(`rules:\n${denyConnect('gone', 'all')}`);
    chain.changed();
    expect(chain.check(req)).toMatchObject({ allowed: false, rule: { name: 'gone' } });
    expect(calls).toBe(3);
  });
});

describe('connect in the other sources', () => {
  it('JWT claim rules may allow or deny connect for the bearer', () => {
    const source = new JwtClaimSource('jwt');
    const allowed = identity({ aclRules: [{ name: 'me', allow: 'connect' }] });
    const denied = identity({ aclRules: [{ name: 'not-me', deny: 'connect' }] });
    const silent = identity({ aclRules: [{ name: 'pub', allow: 'publish', topics: ['x'] }] });
    expect(source.authorize(connect({ identity: allowed }))).toMatchObject({ kind: 'allow', rule: { name: 'me' } });
    expect(source.authorize(connect({ identity: denied }))).toMatchObject({ kind: 'deny', rule: { name: 'not-me' } });
    expect(source.authorize(connect({ identity: silent }))).toEqual({ kind: 'nomatch' });
  });

  it('SQL rows answer connect only with action "connect"; "all" means the topic actions', () => {
    const rules = rowsToRules(
      [
        { permission: 'allow', action: 'all', topic: '#' },
        { permission: 'deny', action: 'connect', topic: null },
      ],
      'sql',
    );
    expect(rules.map((r) => r.actions)).toEqual([['publish', 'subscribe', 'receive'], ['connect']]);
    const policy = new CompiledPolicy(rules, { sourceId: 'sql', superusers: false });
    expect(policy.decide(connect())).toMatchObject({ allowed: false, rule: { name: 'row-2' } });
    const onlyAll = new CompiledPolicy(rowsToRules([{ permission: 'allow', action: 'all', topic: '#' }], 'sql'), {
      sourceId: 'sql',
      superusers: false,
    });
    expect(onlyAll.decide(connect())).toBeUndefined();
  });

  it('a SQL row mixing connect with a topic action fails the lookup (fail closed)', () => {
    expect(() => rowsToRules([{ permission: 'allow', action: 'connect,publish', topic: 'x' }], 'sql')).toThrow(
      /action must be connect \(alone\)/,
    );
  });

  it('a static policy source answers connect synchronously', () => {
    const chain = new ChainAuthorizer(
      [
        {
          source: new StaticPolicySource(policyFrom(`rules:\n${allowConnect('a', 'all')}`)),
          onError: 'deny',
          timeoutMs: 1_000,
          cacheable: true,
        },
      ],
      { cacheMaxEntries: 0 },
    );
    expect(chain.check(connect())).not.toBeInstanceOf(Promise);
  });
});

describe('connect cases, explanations and review warnings', () => {
  it('runs a "connect: true" case with its expected rule', () => {
    const parsed = parsePolicyText(
      [
        'rules:',
        allowConnect('staff', '{ groups: [staff] }').trimEnd(),
        'cases:',
        '  - name: staff connect',
        '    identity: { user: a, groups: [staff] }',
        '    connect: true',
        '    expect: allow',
        '    rule: staff',
        '  - name: visitors do not',
        '    identity: { user: v }',
        '    connect: true',
        '    expect: deny',
        '    rule: staff',
      ].join('\n'),
      'p.yaml',
    );
    expect(parsed.diagnostics).toEqual([]);
    const policy = new CompiledPolicy(parsed.rules, { sourceId: 'file', superusers: false });
    const results = runCases(policy, parsed.cases);
    expect(results[0]).toMatchObject({ passed: true, decidedBy: 'staff' });
    expect(results[1]).toMatchObject({ passed: false, decidedBy: 'default-deny' });
    expect(results[1]?.failure).toBe('expected rule "staff" to decide, but default deny did');
  });

  it('explains a connect decision rule by rule', () => {
    const policy = policyFrom(
      `rules:\n${allowConnect('staff', '{ groups: [staff] }')}${rule('t', "allow: publish\nsubjects: all\ntopics: ['t']")}`,
    );
    const req = connect({ identity: identity({ groups: ['staff'] }), listener: 'mqtts', peerAddress: '10.0.0.5' });
    const text = formatExplanation(req, explainAccess(policy, req));
    expect(text).toContain('request:  user "alice", client "c1", connect on listener "mqtts" from 10.0.0.5');
    expect(text).toContain('decision: ALLOW');
    expect(text).toContain('MATCH allow staff (test.policy.yaml:2): subjects match (connect rules have no topic)');
    expect(text).toContain('no    allow t (test.policy.yaml:5): does not cover connect (covers publish)');
  });

  it('warns when no rule allows connect, and not when one does', () => {
    const topicOnly = parsePolicyText(
      `rules:\n${rule('t', "allow: publish\nsubjects: all\ntopics: ['t']")}${denyConnect('d', 'all')}`,
      'p.yaml',
    );
    const warning = lintRules(topicOnly.rules, ['p.yaml']).find((d) => d.message === NO_CONNECT_WARNING);
    expect(warning?.position).toEqual({ file: 'p.yaml', line: 1, column: 1 });
    expect(NO_CONNECT_WARNING).toBe('no rule allows connect: every client will be refused with CONNACK 0x87');
    const withConnect = parsePolicyText(`rules:\n${allowConnect('a', 'all')}`, 'p.yaml');
    expect(lintRules(withConnect.rules, ['p.yaml'])).toEqual([]);
  });

  it('warns about a connect allow that a connect deny always beats', () => {
    const parsed = parsePolicyText(
      `rules:\n${allowConnect('a', '{ users: [x] }')}${denyConnect('d', 'all')}`,
      'p.yaml',
    );
    expect(lintRules(parsed.rules).map((d) => d.message)).toContain(
      'rule "a" can never allow: deny rule "d" (p.yaml:5) matches everything it does',
    );
  });
});
