import { describe, expect, it } from 'vitest';
import { ChainAuthorizer } from '../../../authz/authorizer.js';
import { StaticPolicySource } from '../../../authz/sources/file.js';
import type { AccessRequest, AuthzSource } from '../../../authz/types.js';
import { topicMatches } from '../../../src/protocol/topic.js';
import { identity, policyFrom, request, rule } from './helpers.js';

interface Row {
  what: string;
  rules: string;
  superusers?: boolean;
  filter: string;
  qos?: 0 | 1 | 2;
  shared?: boolean;
  clientId?: string;
  superuser?: boolean;
  proven: boolean;
}

const allowReceive = (name: string, topics: string, extra = ''): string =>
  rule(name, `allow: receive\nsubjects: all\ntopics: ${topics}${extra ? `\n${extra}` : ''}`);
const denyReceive = (name: string, subjects: string, topics: string, extra = ''): string =>
  rule(name, `deny: receive\nsubjects: ${subjects}\ntopics: ${topics}${extra ? `\n${extra}` : ''}`);

const rows: Row[] = [
  { what: 'an allow covering the filter', rules: allowReceive('a', "['a/#']"), filter: 'a/+/x', proven: true },
  { what: 'the same filter', rules: allowReceive('a', "['a/#']"), filter: 'a/#', proven: true },
  { what: 'a filter wider than the allow', rules: allowReceive('a', "['a/#']"), filter: '#', proven: false },
  { what: 'a filter beside the allow', rules: allowReceive('a', "['a/#']"), filter: 'b/#', proven: false },
  { what: 'no rule at all', rules: '', filter: 'a/#', proven: false },
  {
    what: 'a deny for this client inside the filter',
    rules: allowReceive('a', "['a/#']") + denyReceive('d', '{ clients: [c1] }', "['a/secret/#']"),
    filter: 'a/#',
    proven: false,
  },
  {
    what: 'a deny for another client',
    rules: allowReceive('a', "['a/#']") + denyReceive('d', '{ clients: [c2] }', "['a/secret/#']"),
    filter: 'a/#',
    proven: true,
  },
  {
    what: 'a deny outside the filter',
    rules: allowReceive('a', "['a/#']") + denyReceive('d', 'all', "['a/secret/#']"),
    filter: 'a/public/#',
    proven: true,
  },
  {
    what: 'a deny that holds only for retained messages still counts (it could match)',
    rules: allowReceive('a', "['a/#']") + denyReceive('d', 'all', "['a/+/x']", 'when: { retain: true }'),
    filter: 'a/#',
    proven: false,
  },
  {
    what: 'an allow for QoS 0 only, subscription QoS 1',
    rules: allowReceive('a', "['a/#']", 'when: { qos: 0 }'),
    filter: 'a/#',
    qos: 1,
    proven: false,
  },
  {
    what: 'an allow for QoS 0 and 1, subscription QoS 1',
    rules: allowReceive('a', "['a/#']", 'when: { qos: [0, 1] }'),
    filter: 'a/#',
    qos: 1,
    proven: true,
  },
  {
    what: 'an allow for non-retained messages only',
    rules: allowReceive('a', "['a/#']", 'when: { retain: false }'),
    filter: 'a/#',
    proven: false,
  },
  {
    what: 'an allow for shared subscriptions, a shared subscription',
    rules: allowReceive('a', "['a/#']", 'when: { shared: true }'),
    filter: 'a/#',
    shared: true,
    proven: true,
  },
  {
    what: 'an allow for shared subscriptions, a plain one',
    rules: allowReceive('a', "['a/#']", 'when: { shared: true }'),
    filter: 'a/#',
    proven: false,
  },
  {
    what: 'a placeholder naming this client',
    rules: allowReceive('a', "['devices/${clientid}/#']"),
    filter: 'devices/c1/#',
    proven: true,
  },
  {
    what: 'a placeholder naming another client',
    rules: allowReceive('a', "['devices/${clientid}/#']"),
    filter: 'devices/c1/#',
    clientId: 'c2',
    proven: false,
  },
  {
    what: 'a placeholder level against a wildcard',
    rules: allowReceive('a', "['devices/${clientid}/#']"),
    filter: 'devices/+/#',
    proven: false,
  },
  {
    what: 'a superuser where the policy enables superusers',
    rules: denyReceive('d', 'all', "['#']"),
    superusers: true,
    superuser: true,
    filter: 'a/#',
    proven: true,
  },
  {
    what: 'a superuser where it does not',
    rules: allowReceive('a', "['b/#']"),
    superuser: true,
    filter: 'a/#',
    proven: false,
  },
];

/** Topic names the soundness check tries under each filter. */
const TOPICS = [
  'a',
  'a/x',
  'a/b/x',
  'a/secret/1',
  'a/secret/x',
  'a/public/1',
  'a/public/x/y',
  'b/1',
  'devices/c1/t',
  'devices/c2/t',
  '$SYS/x',
];

function subscriptionRequest(r: Row): AccessRequest {
  return request('receive', r.filter, {
    qos: r.qos ?? 0,
    sharedGroup: r.shared ? 'g' : undefined,
    identity: identity({ clientId: r.clientId ?? 'c1', superuser: r.superuser ?? false }),
  });
}

function policyText(r: Row): string {
  return `version: 1\nsuperusers: ${r.superusers ?? false}\nrules:\n${r.rules || '  []\n'}`.replace(
    'rules:\n  []\n',
    'rules: []\n',
  );
}

describe('proving a subscription may receive everything its filter matches', () => {
  it.each(rows)('$what: $proven', (r) => {
    expect(policyFrom(policyText(r)).receivesWholeFilter(subscriptionRequest(r))).toBe(r.proven);
  });

  it.each(rows.filter((r) => r.proven))('is sound: every delivery under "$filter" is allowed ($what)', (r) => {
    const policy = policyFrom(policyText(r));
    const sub = subscriptionRequest(r);
    const topics = TOPICS.filter((t) => topicMatches(r.filter, t));
    expect(topics.length).toBeGreaterThan(0);
    for (const topic of topics) {
      for (let qos = 0; qos <= sub.qos; qos++) {
        for (const retain of [false, true]) {
          const delivery = { ...sub, topic, qos: qos as 0 | 1 | 2, retain };
          expect(policy.decide(delivery)?.kind, `${topic} qos ${qos} retain ${retain}`).toBe('allow');
        }
      }
    }
  });

  it('the chain proves it only through its first source', () => {
    const allowAll = policyFrom(`version: 1\nrules:\n${allowReceive('a', "['a/#']")}`);
    const undecided: AuthzSource = { id: 'sql', authorize: () => ({ kind: 'nomatch' }) };
    const req = request('receive', 'a/#');
    expect(new ChainAuthorizer([binding(new StaticPolicySource(allowAll))]).receivesWholeFilter(req)).toBe(true);
    // A source before the file may deny what the file would allow: nothing is proven.
    const behind = new ChainAuthorizer([binding(undecided), binding(new StaticPolicySource(allowAll))]);
    expect(behind.receivesWholeFilter(req)).toBe(false);
  });
});

function binding(source: AuthzSource) {
  return { source, onError: 'deny' as const, timeoutMs: 1000, cacheable: true };
}
