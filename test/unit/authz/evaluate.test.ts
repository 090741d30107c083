import { describe, expect, it } from 'vitest';
import { DEFAULT_DENY } from '../../../authz/compile.js';
import { explainAccess } from '../../../authz/explain.js';
import type { AccessRequest } from '../../../authz/types.js';
import { identity, policyFrom, request, rule } from './helpers.js';

interface Row {
  what: string;
  rules: string;
  superusers?: boolean;
  req: AccessRequest;
  allowed: boolean;
  /** Deciding rule name, or `default-deny` / `superuser`. */
  by: string;
}

const pubAll = (name: string, subjects: string, topics = "['t/#']"): string =>
  rule(name, `allow: [publish, subscribe, receive]\nsubjects: ${subjects}\ntopics: ${topics}`);

const subjectRows: Row[] = [
  {
    what: 'subjects: all matches anyone',
    rules: pubAll('r', 'all'),
    req: request('publish', 't/x'),
    allowed: true,
    by: 'r',
  },
  {
    what: 'users matches the username',
    rules: pubAll('r', '{ users: [alice] }'),
    req: request('publish', 't/x'),
    allowed: true,
    by: 'r',
  },
  {
    what: 'users does not match another username',
    rules: pubAll('r', '{ users: [bob] }'),
    req: request('publish', 't/x'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'users with a trailing * matches a prefix',
    rules: pubAll('r', "{ users: ['ali*'] }"),
    req: request('publish', 't/x'),
    allowed: true,
    by: 'r',
  },
  {
    what: 'users never matches an anonymous client without a username',
    rules: pubAll('r', "{ users: ['*'] }"),
    req: request('publish', 't/x', { identity: identity({ username: undefined, anonymous: true }) }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'clients matches the client id',
    rules: pubAll('r', '{ clients: [c1] }'),
    req: request('publish', 't/x'),
    allowed: true,
    by: 'r',
  },
  {
    what: 'clients does not match another client id',
    rules: pubAll('r', '{ clients: [c2] }'),
    req: request('publish', 't/x'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'groups matches when any group is listed',
    rules: pubAll('r', '{ groups: [ops] }'),
    req: request('publish', 't/x', { identity: identity({ groups: ['dev', 'ops'] }) }),
    allowed: true,
    by: 'r',
  },
  {
    what: 'groups does not match without membership',
    rules: pubAll('r', '{ groups: [ops] }'),
    req: request('publish', 't/x', { identity: identity({ groups: ['dev'] }) }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'authenticators matches the admitting step',
    rules: pubAll('r', '{ authenticators: [x509] }'),
    req: request('publish', 't/x', { identity: identity({ authenticator: 'x509' }) }),
    allowed: true,
    by: 'r',
  },
  {
    what: 'authenticators does not match another step',
    rules: pubAll('r', '{ authenticators: [x509] }'),
    req: request('publish', 't/x'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'listeners matches the listener',
    rules: pubAll('r', '{ listeners: [internal] }'),
    req: request('publish', 't/x', { listener: 'internal' }),
    allowed: true,
    by: 'r',
  },
  {
    what: 'listeners does not match another listener',
    rules: pubAll('r', '{ listeners: [internal] }'),
    req: request('publish', 't/x', { listener: 'public' }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'addresses matches an IPv4 address inside the block',
    rules: pubAll('r', '{ addresses: [10.1.0.0/16] }'),
    req: request('publish', 't/x', { peerAddress: '10.1.2.3' }),
    allowed: true,
    by: 'r',
  },
  {
    what: 'addresses does not match outside the block',
    rules: pubAll('r', '{ addresses: [10.1.0.0/16] }'),
    req: request('publish', 't/x', { peerAddress: '10.2.0.1' }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'addresses matches IPv6 blocks',
    rules: pubAll('r', "{ addresses: ['2001:db8::/32'] }"),
    req: request('publish', 't/x', { peerAddress: '2001:db8::7' }),
    allowed: true,
    by: 'r',
  },
  {
    what: 'addresses matches an IPv4-mapped IPv6 peer against an IPv4 block',
    rules: pubAll('r', '{ addresses: [192.168.0.0/24] }'),
    req: request('publish', 't/x', { peerAddress: '::ffff:192.168.0.9' }),
    allowed: true,
    by: 'r',
  },
  {
    what: 'attributes matches cert.cn',
    rules: pubAll('r', '{ attributes: { cert.cn: [dev-1] } }'),
    req: request('publish', 't/x', { identity: identity({ attributes: { 'cert.cn': 'dev-1' } }) }),
    allowed: true,
    by: 'r',
  },
  {
    what: 'attributes matches a JWT claim attribute',
    rules: pubAll('r', '{ attributes: { jwt.tenant: [acme] } }'),
    req: request('publish', 't/x', { identity: identity({ attributes: { 'jwt.tenant': 'acme' } }) }),
    allowed: true,
    by: 'r',
  },
  {
    what: 'attributes does not match an absent attribute',
    rules: pubAll('r', '{ attributes: { jwt.tenant: [acme] } }'),
    req: request('publish', 't/x'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'superuser: true matches superusers even when bypass is off',
    rules: pubAll('r', '{ superuser: true }'),
    req: request('publish', 't/x', { identity: identity({ superuser: true }) }),
    allowed: true,
    by: 'r',
  },
  {
    what: 'superuser: true does not match ordinary users',
    rules: pubAll('r', '{ superuser: true }'),
    req: request('publish', 't/x'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'anonymous: true matches anonymous clients',
    rules: pubAll('r', '{ anonymous: true }'),
    req: request('publish', 't/x', { identity: identity({ username: undefined, anonymous: true }) }),
    allowed: true,
    by: 'r',
  },
  {
    what: 'anonymous: false does not match anonymous clients',
    rules: pubAll('r', '{ anonymous: false }'),
    req: request('publish', 't/x', { identity: identity({ username: undefined, anonymous: true }) }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'all subject fields must hold together',
    rules: pubAll('r', '{ users: [alice], listeners: [internal] }'),
    req: request('publish', 't/x', { listener: 'public' }),
    allowed: false,
    by: 'default-deny',
  },
];

const conditionRows: Row[] = [
  {
    what: 'qos condition allows a listed QoS',
    rules: rule('r', "allow: publish\nsubjects: all\ntopics: ['t/#']\nwhen: { qos: [0, 1] }"),
    req: request('publish', 't/x', { qos: 1 }),
    allowed: true,
    by: 'r',
  },
  {
    what: 'qos condition refuses an unlisted QoS',
    rules: rule('r', "allow: publish\nsubjects: all\ntopics: ['t/#']\nwhen: { qos: [0, 1] }"),
    req: request('publish', 't/x', { qos: 2 }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'retain: false refuses retained publishes',
    rules: rule('r', "allow: publish\nsubjects: all\ntopics: ['t/#']\nwhen: { retain: false }"),
    req: request('publish', 't/x', { retain: true }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'retain: true matches retained publishes only',
    rules: rule('r', "deny: publish\nsubjects: all\ntopics: ['t/#']\nwhen: { retain: true }") + pubAll('ok', 'all'),
    req: request('publish', 't/x', { retain: true }),
    allowed: false,
    by: 'r',
  },
  {
    what: 'shared: true matches shared subscriptions',
    rules: rule('r', "allow: subscribe\nsubjects: all\ntopics: ['t/#']\nwhen: { shared: true }"),
    req: request('subscribe', 't/#', { sharedGroup: 'g' }),
    allowed: true,
    by: 'r',
  },
  {
    what: 'shared: true refuses a plain subscription',
    rules: rule('r', "allow: subscribe\nsubjects: all\ntopics: ['t/#']\nwhen: { shared: true }"),
    req: request('subscribe', 't/#'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'shared: false refuses a shared subscription',
    rules: rule('r', "allow: subscribe\nsubjects: all\ntopics: ['t/#']\nwhen: { shared: false }"),
    req: request('subscribe', 't/#', { sharedGroup: 'g' }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'an action the rule does not list is not granted',
    rules: rule('r', "allow: subscribe\nsubjects: all\ntopics: ['t/#']"),
    req: request('publish', 't/x'),
    allowed: false,
    by: 'default-deny',
  },
];

const own = (topic: string): string =>
  rule('own', `allow: [publish, subscribe, receive]\nsubjects: all\ntopics: ['${topic}']`);

const placeholderRows: Row[] = [
  {
    what: '${username} fills a level',
    rules: own('u/${username}/#'),
    req: request('publish', 'u/alice/x'),
    allowed: true,
    by: 'own',
  },
  {
    what: "${username} does not match another user's level",
    rules: own('u/${username}/#'),
    req: request('publish', 'u/bob/x'),
    allowed: false,
    by: 'default-deny',
  },
  ...['a/b', 'a+', '#', '+'].map((name): Row => ({
    what: `\${username} refuses the identity "${name}"`,
    rules: own('u/${username}/#'),
    req: request(name.includes('/') ? 'publish' : 'subscribe', name.includes('/') ? `u/${name}/x` : 'u/+/x', {
      identity: identity({ username: name }),
    }),
    allowed: false,
    by: 'default-deny',
  })),
  {
    what: '${username} never matches an empty username',
    rules: own('u/${username}'),
    req: request('publish', 'u/', { identity: identity({ username: '' }) }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: '${username} never matches an absent username',
    rules: own('u/${username}/#'),
    req: request('subscribe', 'u/+/#', { identity: identity({ username: undefined, anonymous: true }) }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: '${username} in the first level refuses a $-leading username',
    rules: own('${username}/#'),
    req: request('publish', '$SYS/x', { identity: identity({ username: '$SYS' }) }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: '${clientid} fills a level',
    rules: own('c/${clientid}'),
    req: request('publish', 'c/c1'),
    allowed: true,
    by: 'own',
  },
  {
    what: '${clientid} refuses a client id with a slash',
    rules: own('c/${clientid}/#'),
    req: request('publish', 'c/x/y/z', { identity: identity({ clientId: 'x/y' }) }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: '${group} matches any one of the groups',
    rules: own('g/${group}/#'),
    req: request('publish', 'g/ops/x', { identity: identity({ groups: ['dev', 'ops'] }) }),
    allowed: true,
    by: 'own',
  },
  {
    what: '${group} skips a group containing + and still refuses it',
    rules: own('g/${group}/#'),
    req: request('subscribe', 'g/+/x', { identity: identity({ groups: ['+'] }) }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: '${group} never matches without groups',
    rules: own('g/${group}'),
    req: request('publish', 'g/x'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: '${cert.cn} fills a level from the certificate',
    rules: own('d/${cert.cn}/#'),
    req: request('publish', 'd/dev-1/t', { identity: identity({ attributes: { 'cert.cn': 'dev-1' } }) }),
    allowed: true,
    by: 'own',
  },
  {
    what: '${cert.cn} refuses a CN containing #',
    rules: own('d/${cert.cn}/#'),
    req: request('subscribe', 'd/#', { identity: identity({ attributes: { 'cert.cn': '#' } }) }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: '${attr.NAME} fills a level from any attribute',
    rules: own('t/${attr.jwt.tenant}/#'),
    req: request('publish', 't/acme/x', { identity: identity({ attributes: { 'jwt.tenant': 'acme' } }) }),
    allowed: true,
    by: 'own',
  },
  {
    what: '${attr.NAME} never matches an absent attribute',
    rules: own('t/${attr.jwt.tenant}/#'),
    req: request('publish', 't/acme/x'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'a placeholder never covers a wildcard in a subscription',
    rules: own('u/${username}/#'),
    req: request('subscribe', 'u/+/#'),
    allowed: false,
    by: 'default-deny',
  },
];

const orderRows: Row[] = [
  {
    what: 'a matching deny wins over an earlier matching allow',
    rules: pubAll('allow-first', 'all') + rule('deny-later', "deny: publish\nsubjects: all\ntopics: ['t/secret']"),
    req: request('publish', 't/secret'),
    allowed: false,
    by: 'deny-later',
  },
  {
    what: 'the first matching allow decides among allows',
    rules: pubAll('first', 'all') + pubAll('second', 'all', "['t/x']"),
    req: request('publish', 't/x'),
    allowed: true,
    by: 'first',
  },
  {
    what: 'the first matching deny is reported among denies',
    rules:
      rule('d1', "deny: publish\nsubjects: all\ntopics: ['t/#']") +
      rule('d2', "deny: publish\nsubjects: all\ntopics: ['t/x']"),
    req: request('publish', 't/x'),
    allowed: false,
    by: 'd1',
  },
  {
    what: 'a deny that does not match leaves the allow in force',
    rules: pubAll('a', 'all') + rule('d', "deny: publish\nsubjects: { users: [bob] }\ntopics: ['t/#']"),
    req: request('publish', 't/x'),
    allowed: true,
    by: 'a',
  },
  {
    what: 'nothing matching is a deny',
    rules: pubAll('a', 'all'),
    req: request('publish', 'other/x'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'a deny overlapping a subscription refuses the whole subscription',
    rules: pubAll('all', 'all', "['#']") + rule('d', "deny: subscribe\nsubjects: all\ntopics: ['secret/#']"),
    req: request('subscribe', '#'),
    allowed: false,
    by: 'd',
  },
  {
    what: 'an allow must cover the whole subscription',
    rules: pubAll('a', 'all', "['t/x/#']"),
    req: request('subscribe', 't/#'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'an allow with + covers a subscription with +',
    rules: pubAll('a', 'all', "['t/+/v']"),
    req: request('subscribe', 't/+/v'),
    allowed: true,
    by: 'a',
  },
  {
    what: "'a/#' also matches its parent 'a'",
    rules: pubAll('a', 'all', "['a/#']"),
    req: request('publish', 'a'),
    allowed: true,
    by: 'a',
  },
];

const sysRows: Row[] = [
  {
    what: "'#' does not match $SYS topics",
    rules: pubAll('all', 'all', "['#']"),
    req: request('receive', '$SYS/x'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: "'+/#' does not match $SYS topics",
    rules: pubAll('all', 'all', "['+/#']"),
    req: request('publish', '$SYS/x'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: "'#' does not cover a $SYS subscription",
    rules: pubAll('all', 'all', "['#']"),
    req: request('subscribe', '$SYS/#'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: "'#' does not match other $ topics either",
    rules: pubAll('all', 'all', "['#']"),
    req: request('publish', '$CONTROL/x'),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'a rule naming $SYS grants it',
    rules: pubAll('sys', 'all', "['$SYS/#']"),
    req: request('subscribe', '$SYS/broker/#'),
    allowed: true,
    by: 'sys',
  },
  {
    what: "a subscription to '#' does not overlap a $SYS deny",
    rules: pubAll('all', 'all', "['#']") + rule('d', "deny: subscribe\nsubjects: all\ntopics: ['$SYS/#']"),
    req: request('subscribe', '#'),
    allowed: true,
    by: 'all',
  },
];

const superRows: Row[] = [
  {
    what: 'superusers bypass rules, including denies, when the policy enables them',
    superusers: true,
    rules: rule('d', "deny: publish\nsubjects: all\ntopics: ['#']"),
    req: request('publish', 'x', { identity: identity({ superuser: true }) }),
    allowed: true,
    by: 'superuser',
  },
  {
    what: 'superusers get no bypass when the policy does not enable them',
    superusers: false,
    rules: pubAll('a', '{ users: [bob] }'),
    req: request('publish', 't/x', { identity: identity({ superuser: true }) }),
    allowed: false,
    by: 'default-deny',
  },
  {
    what: 'enabling superusers grants nothing to ordinary users',
    superusers: true,
    rules: pubAll('a', '{ users: [bob] }'),
    req: request('publish', 't/x'),
    allowed: false,
    by: 'default-deny',
  },
];

function build(row: Row) {
  return policyFrom(`${row.superusers !== undefined ? `superusers: ${row.superusers}\n` : ''}rules:\n${row.rules}`);
}

describe.each([
  ['subjects', subjectRows],
  ['conditions', conditionRows],
  ['placeholders', placeholderRows],
  ['evaluation order', orderRows],
  ['$ topics', sysRows],
  ['superusers', superRows],
])('evaluator: %s', (_name, rows) => {
  it.each(rows)('$what', (row) => {
    const policy = build(row);
    const decision = policy.decide(row.req) ?? DEFAULT_DENY;
    expect(decision.allowed).toBe(row.allowed);
    expect(decision.rule?.name ?? 'default-deny').toBe(row.by);
    // The explanation walks every rule on the slow path; it must reach the same decision.
    const explained = explainAccess(policy, row.req).decision;
    expect(explained).toBe(decision);
  });
});

describe('evaluator index', () => {
  it('finds rules by literal first level and by wildcard first level alike, in file order', () => {
    const policy = policyFrom(
      'rules:\n' +
        pubAll('wild', 'all', "['+/x']") +
        pubAll('literal', 'all', "['a/x']") +
        rule('deny-b', "deny: [publish, subscribe]\nsubjects: all\ntopics: ['b/#']"),
    );
    expect(policy.decide(request('publish', 'a/x'))?.rule.name).toBe('wild');
    expect(policy.decide(request('publish', 'b/x'))?.rule.name).toBe('deny-b');
    expect(policy.decide(request('subscribe', '+/x'))?.rule.name).toBe('deny-b');
    expect(policy.decide(request('subscribe', 'c/x'))?.rule.name).toBe('wild');
  });

  it('finds rules by literal levels below a shared first level, and every rule below a wildcard of a filter', () => {
    const policy = policyFrom(
      'rules:\n' +
        pubAll('tenant-1', 'all', "['fleet/tenant-1/#']") +
        pubAll('tenant-2', 'all', "['fleet/tenant-2/#']") +
        rule('deny-cmd', "deny: [publish, subscribe]\nsubjects: all\ntopics: ['fleet/tenant-2/cmd/+']") +
        pubAll('own', 'all', "['fleet/${username}/#']"),
    );
    expect(policy.decide(request('publish', 'fleet/tenant-1/x'))?.rule.name).toBe('tenant-1');
    expect(policy.decide(request('publish', 'fleet/tenant-2/x'))?.rule.name).toBe('tenant-2');
    expect(policy.decide(request('publish', 'fleet/tenant-2/cmd/reboot'))?.rule.name).toBe('deny-cmd');
    expect(policy.decide(request('publish', 'fleet/alice/x'))?.rule.name).toBe('own');
    expect(policy.decide(request('publish', 'fleet/tenant-3/x'))).toBeUndefined();
    // A filter with a wildcard under `fleet` overlaps the deny three levels down, which the index must still find.
    expect(policy.decide(request('subscribe', 'fleet/+/cmd/#'))?.rule.name).toBe('deny-cmd');
    expect(policy.decide(request('subscribe', 'fleet/tenant-2/#'))?.rule.name).toBe('deny-cmd');
    expect(policy.decide(request('subscribe', 'fleet/tenant-1/#'))?.rule.name).toBe('tenant-1');
  });

  it("narrows a thousand tenants under one first level to the rules on the topic's own path", () => {
    let text = 'rules:\n' + pubAll('any-status', 'all', "['+/status']");
    for (let t = 0; t < 1000; t++) text += pubAll(`tenant-${t}`, 'all', `['fleet/tenant-${t}/#']`);
    text += pubAll('fleet-status', 'all', "['fleet/+/status']");
    const policy = policyFrom(text);
    const names = (req: AccessRequest) => policy.candidatesFor(req).map((i) => policy.rules[i]?.ref.name);
    expect(names(request('publish', 'fleet/tenant-7/x'))).toEqual(['any-status', 'tenant-7', 'fleet-status']);
    // `fleet/+/status` ends its literal prefix at `fleet`, so every topic through `fleet` meets it; no tenant does.
    expect(names(request('publish', 'fleet'))).toEqual(['any-status', 'fleet-status']);
    expect(names(request('subscribe', 'fleet/tenant-999/#'))).toEqual(['any-status', 'tenant-999', 'fleet-status']);
    // A wildcard where the tenants differ leaves all of them: each may overlap the filter.
    expect(names(request('subscribe', 'fleet/+/x'))).toHaveLength(1002);
    expect(policy.decide(request('publish', 'fleet/tenant-7/x'))?.rule.name).toBe('tenant-7');
  });

  it('decides exactly as the rule-by-rule walk for hundreds of random policies and requests', () => {
    // A fixed seed: a failure names the policy and request, and reruns the same.
    let seed = 0x2f6e2b1;
    const random = (n: number): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return (((t ^ (t >>> 14)) >>> 0) % n) as number;
    };
    const pick = <T>(xs: readonly T[]): T => xs[random(xs.length)] as T;
    const literal = ['a', 'b', 'c', 'alice'];
    const ruleLevel = [...literal, '+', '${username}', '${clientid}', '${group}', '${attr.jwt.site}'];
    const pattern = (): string => {
      const levels = Array.from({ length: 1 + random(4) }, () => pick(ruleLevel));
      if (random(3) === 0) levels.push('#');
      return levels.join('/');
    };
    const topic = (filter: boolean): string => {
      const levels = Array.from({ length: 1 + random(4) }, () =>
        filter && random(4) === 0 ? '+' : pick([...literal, 'c1', 'x']),
      );
      if (filter && random(4) === 0) levels.push('#');
      return levels.join('/');
    };
    const actionSets = [
      '[publish]',
      '[subscribe]',
      '[receive]',
      '[publish, subscribe]',
      '[publish, subscribe, receive]',
    ];
    let checks = 0;
    for (let p = 0; p < 300; p++) {
      let text = 'rules:\n';
      const count = 1 + random(20);
      for (let r = 0; r < count; r++) {
        const topics = Array.from({ length: 1 + random(2) }, () => `'${pattern()}'`).join(', ');
        const subjects = pick(['all', '{ users: [alice] }', '{ users: [bob] }', '{ groups: [ops] }']);
        const when = pick(['', '\nwhen: { qos: [0, 1] }', '\nwhen: { retain: false }']);
        text += rule(
          `r${r}`,
          `${pick(['allow', 'deny'])}: ${pick(actionSets)}\nsubjects: ${subjects}\ntopics: [${topics}]${when}`,
        );
      }
      const policy = policyFrom(text);
      for (let q = 0; q < 40; q++) {
        const action = pick(['publish', 'subscribe', 'receive'] as const);
        const req = request(action, topic(action === 'subscribe'), {
          identity: identity({
            username: pick(['alice', 'bob']),
            groups: pick([[], ['ops'], ['a', 'ops']]),
            attributes: pick<Record<string, string>>([{}, { 'jwt.site': 'b' }]),
          }),
          qos: pick([0, 1, 2] as const),
          retain: action === 'publish' && random(2) === 0,
        });
        const indexed = policy.decide(req) ?? DEFAULT_DENY;
        const walked = explainAccess(policy, req).decision;
        if (indexed !== walked) {
          expect({ policy: text, action, topic: req.topic, indexed: indexed.rule?.name }).toEqual({
            policy: text,
            action,
            topic: req.topic,
            indexed: walked.rule?.name,
          });
        }
        checks++;
      }
    }
    expect(checks).toBe(12_000);
  });

  it('returns the same preallocated verdict object for repeated checks', () => {
    const policy = policyFrom('rules:\n' + pubAll('a', 'all'));
    expect(policy.decide(request('publish', 't/1'))).toBe(policy.decide(request('publish', 't/2')));
  });
});
