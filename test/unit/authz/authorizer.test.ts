import { describe, expect, it } from 'vitest';
import { ChainAuthorizer, type SourceBinding } from '../../../authz/authorizer.js';
import { DecisionCache } from '../../../authz/cache.js';
import { CompiledPolicy } from '../../../authz/compile.js';
import { StaticPolicySource } from '../../../authz/sources/file.js';
import type { AccessRequest, AuthzDecision, AuthzOutcome, AuthzSource } from '../../../authz/types.js';
import { identity, policyFrom, request, rule } from './helpers.js';

/** A source that implements the real interface and counts how often it is asked. */
class CountingSource implements AuthzSource {
  calls = 0;
  constructor(
    readonly id: string,
    private readonly answer: (req: AccessRequest) => AuthzOutcome | Promise<AuthzOutcome>,
  ) {}
  authorize(req: AccessRequest): AuthzOutcome | Promise<AuthzOutcome> {
    this.calls++;
    return this.answer(req);
  }
}

/** A source whose rules can be swapped, like the policy manager's, and which announces swaps. */
class SwappableSource implements AuthzSource {
  readonly id = 'file';
  calls = 0;
  #listeners: Array<() => void> = [];
  constructor(public policy: CompiledPolicy) {}
  authorize(req: AccessRequest): AuthzOutcome {
    this.calls++;
    return this.policy.authorize(req);
  }
  onChange(l: () => void): void {
    this.#listeners.push(l);
  }
  swap(p: CompiledPolicy): void {
    this.policy = p;
    for (const l of this.#listeners) l();
  }
}

const bind = (source: AuthzSource, over: Partial<SourceBinding> = {}): SourceBinding => ({
  source,
  onError: 'deny',
  timeoutMs: 1_000,
  cacheable: true,
  ...over,
});

const allowT = policyFrom(
  'rules:\n' + rule('allow-t', "allow: [publish, subscribe, receive]\nsubjects: all\ntopics: ['t/#']"),
);
const denyAll = policyFrom(
  'rules:\n' + rule('deny-all', "deny: [publish, subscribe, receive]\nsubjects: all\ntopics: ['#']"),
);
const rule0 = { source: 'x', name: 'r0' };

function sync(d: AuthzDecision | Promise<AuthzDecision>): AuthzDecision {
  if (d instanceof Promise) throw new Error('expected a synchronous decision');
  return d;
}

describe('authorizer chain', () => {
  it('answers synchronously, without a promise, when every source is synchronous', () => {
    const chain = new ChainAuthorizer([bind(new StaticPolicySource(allowT))]);
    const d = chain.check(request('publish', 't/x'));
    expect(d).not.toBeInstanceOf(Promise);
    expect(sync(d)).toMatchObject({ allowed: true, rule: { name: 'allow-t', location: 'test.policy.yaml:2' } });
  });

  it('asks sources in order and the first allow or deny wins', () => {
    const first = new CountingSource('first', () => ({ kind: 'deny', rule: rule0 }));
    const second = new CountingSource('second', () => ({ kind: 'allow', rule: rule0 }));
    const d = sync(new ChainAuthorizer([bind(first), bind(second)]).check(request('publish', 't/x')));
    expect(d.allowed).toBe(false);
    expect(second.calls).toBe(0);
  });

  it('passes a nomatch on to the next source', () => {
    const first = new CountingSource('first', () => ({ kind: 'nomatch' }));
    const second = new CountingSource('second', () => ({ kind: 'allow', rule: rule0 }));
    const d = sync(new ChainAuthorizer([bind(first), bind(second)]).check(request('publish', 't/x')));
    expect(d).toMatchObject({ allowed: true, rule: rule0 });
    expect(d.reason).toContain('second');
  });

  it('denies when no source answers', () => {
    const none = new CountingSource('none', () => ({ kind: 'nomatch' }));
    const d = sync(new ChainAuthorizer([bind(none)]).check(request('publish', 't/x')));
    expect(d).toEqual({ allowed: false, reason: 'no rule matched (default deny)' });
  });

  it('a source that throws denies and stops the chain (fail closed)', () => {
    const broken = new CountingSource('broken', () => {
      throw new Error('database is on fire');
    });
    const after = new CountingSource('after', () => ({ kind: 'allow', rule: rule0 }));
    const d = sync(new ChainAuthorizer([bind(broken), bind(after)]).check(request('publish', 't/x')));
    expect(d).toMatchObject({ allowed: false, rule: { source: 'broken', name: 'source-error' } });
    expect(after.calls).toBe(0);
  });

  it('a source that throws with on_error: next lets the next source decide', () => {
    const broken = new CountingSource('broken', () => {
      throw new Error('down');
    });
    const after = new CountingSource('after', () => ({ kind: 'allow', rule: rule0 }));
    const d = sync(
      new ChainAuthorizer([bind(broken, { onError: 'next' }), bind(after)]).check(request('publish', 't/x')),
    );
    expect(d.allowed).toBe(true);
  });

  it('a remote source that rejects denies; with on_error: next the next source decides', async () => {
    const rejecting = (): CountingSource => new CountingSource('sql', () => Promise.reject(new Error('ECONNREFUSED')));
    const fallback = new CountingSource('file', () => ({ kind: 'allow', rule: rule0 }));
    const closed = await new ChainAuthorizer([bind(rejecting()), bind(fallback)]).check(request('publish', 't/x'));
    expect(closed).toMatchObject({ allowed: false, rule: { name: 'source-error' } });
    const open = await new ChainAuthorizer([bind(rejecting(), { onError: 'next' }), bind(fallback)]).check(
      request('publish', 't/x'),
    );
    expect(open.allowed).toBe(true);
  });

  it('a remote source that never answers times out into a deny', async () => {
    const hanging = new CountingSource('sql', () => new Promise<AuthzOutcome>(() => undefined));
    const d = await new ChainAuthorizer([bind(hanging, { timeoutMs: 5 })]).check(request('publish', 't/x'));
    expect(d).toMatchObject({ allowed: false, rule: { source: 'sql', name: 'source-timeout' } });
  });

  it('a remote answer arrives as a promise and continues down the chain on nomatch', async () => {
    const remote = new CountingSource('sql', () => Promise.resolve({ kind: 'nomatch' } as const));
    const file = new StaticPolicySource(allowT);
    const d = new ChainAuthorizer([bind(remote, { cacheable: false }), bind(file)]).check(request('publish', 't/x'));
    expect(d).toBeInstanceOf(Promise);
    expect(await d).toMatchObject({ allowed: true, rule: { name: 'allow-t' } });
  });
});

describe('decision cache', () => {
  it('serves a repeated check from the cache without asking the source', () => {
    const src = new CountingSource('s', (r) => allowT.authorize(r));
    const chain = new ChainAuthorizer([bind(src)]);
    const req = request('publish', 't/x');
    const a = chain.check(req);
    const b = chain.check({ ...req });
    expect(b).toBe(a);
    expect(src.calls).toBe(1);
  });

  it('answers a cache lookup without asking a source, and keeps nothing of the request it was asked with', () => {
    const src = new CountingSource('s', (r) => allowT.authorize(r));
    const chain = new ChainAuthorizer([bind(src)]);
    const probe = request('publish', 't/x');
    expect(chain.cached(probe)).toBeUndefined();
    expect(src.calls).toBe(0);
    const decided = sync(chain.check({ ...probe }));
    expect(chain.cached(probe)).toBe(decided);
    // The broker reuses one object for every lookup: what it asks next must not find the earlier answer.
    probe.topic = 't/y';
    expect(chain.cached(probe)).toBeUndefined();
    probe.topic = 't/x';
    probe.qos = 1;
    expect(chain.cached(probe)).toBeUndefined();
    probe.qos = 0;
    probe.identity = identity({ clientId: probe.identity.clientId });
    expect(chain.cached(probe)).toBeUndefined();
    expect(src.calls).toBe(1);
  });

  it('keys on action, qos, retain, shared and topic', () => {
    const src = new CountingSource('s', (r) => allowT.authorize(r));
    const chain = new ChainAuthorizer([bind(src)]);
    const id = identity();
    const base = request('publish', 't/x', { identity: id });
    chain.check(base);
    chain.check({ ...base, qos: 1 });
    chain.check({ ...base, retain: true });
    chain.check({ ...base, action: 'receive' });
    chain.check({ ...base, topic: 't/y' });
    chain.check({ ...base, action: 'subscribe', sharedGroup: 'g' });
    expect(src.calls).toBe(6);
    expect(chain.cacheSize).toBe(6);
  });

  it('invalidating one client drops only its decisions', () => {
    const src = new CountingSource('s', (r) => allowT.authorize(r));
    const chain = new ChainAuthorizer([bind(src)]);
    const alice = request('publish', 't/x', { identity: identity({ clientId: 'a' }) });
    const bob = request('publish', 't/x', { identity: identity({ clientId: 'b' }) });
    chain.check(alice);
    chain.check(bob);
    chain.invalidate('a');
    chain.check(alice);
    chain.check(bob);
    expect(src.calls).toBe(3);
  });

  it('a policy swap drops every cached decision and notifies the broker', () => {
    const src = new SwappableSource(allowT);
    const chain = new ChainAuthorizer([bind(src)]);
    let notified = 0;
    chain.onChange(() => notified++);
    const req = request('publish', 't/x');
    expect(sync(chain.check(req)).allowed).toBe(true);
    src.swap(denyAll);
    expect(notified).toBe(1);
    expect(chain.cacheSize).toBe(0);
    expect(sync(chain.check(req))).toMatchObject({ allowed: false, rule: { name: 'deny-all' } });
  });

  it("a new identity under the same client id never sees the old identity's decisions", () => {
    const src = new CountingSource('s', (r) => allowT.authorize(r));
    const chain = new ChainAuthorizer([bind(src)]);
    chain.check(request('publish', 't/x', { identity: identity({ clientId: 'same' }) }));
    chain.check(request('publish', 't/x', { identity: identity({ clientId: 'same' }) }));
    expect(src.calls).toBe(2);
  });

  it('does not cache decisions a non-cacheable (TTL) source took part in', () => {
    const sql = new CountingSource('sql', () => ({ kind: 'nomatch' }));
    const file = new CountingSource('file', (r) => allowT.authorize(r));
    const chain = new ChainAuthorizer([bind(sql, { cacheable: false }), bind(file)]);
    chain.check(request('publish', 't/x'));
    chain.check(request('publish', 't/x'));
    expect(sql.calls).toBe(2);
  });

  it('does not cache an answer computed before an invalidation that happened while it was pending', async () => {
    let release: (o: AuthzOutcome) => void = () => undefined;
    const remote = new CountingSource('r', () => new Promise<AuthzOutcome>((res) => (release = res)));
    const chain = new ChainAuthorizer([bind(remote)]);
    const id = identity();
    const pending = chain.check(request('publish', 't/x', { identity: id }));
    chain.invalidate();
    release({ kind: 'allow', rule: rule0 });
    await pending;
    expect(chain.cacheSize).toBe(0);
  });

  it('stays within its bound and evicts the least recently used client first', () => {
    const cache = new DecisionCache(3);
    const d: AuthzDecision = { allowed: true, reason: 'x' };
    const a = request('publish', 't/1', { identity: identity({ clientId: 'a' }) });
    const b = request('publish', 't/1', { identity: identity({ clientId: 'b' }) });
    const c = request('publish', 't/1', { identity: identity({ clientId: 'c' }) });
    cache.set(a, d);
    cache.set({ ...a, topic: 't/2' }, d);
    cache.set(b, d);
    cache.get(a);
    cache.set(c, d);
    expect(cache.size).toBe(3);
    expect(cache.get(b)).toBeUndefined();
    expect(cache.get(a)).toBe(d);
    expect(cache.get({ ...a, topic: 't/2' })).toBe(d);
    expect(cache.get(c)).toBe(d);
  });

  it('keeps exact recency when repeated hits by the newest client and topic skip the reordering', () => {
    const cache = new DecisionCache(3);
    const d: AuthzDecision = { allowed: true, reason: 'x' };
    const a1 = request('publish', 't/1', { identity: identity({ clientId: 'a' }) });
    const a2 = { ...a1, topic: 't/2' };
    const b = request('publish', 't/1', { identity: identity({ clientId: 'b' }) });
    cache.set(a1, d);
    cache.set(a2, d);
    cache.get(a1); // t/1 moves behind t/2
    cache.get(a1); // already newest: nothing moves
    cache.set(b, d);
    cache.get(a1); // a moves behind b again
    cache.set(request('publish', 't/1', { identity: identity({ clientId: 'c' }) }), d);
    expect(cache.get(b)).toBeUndefined(); // b was the least recently used client
    cache.set(request('publish', 't/1', { identity: identity({ clientId: 'e' }) }), d);
    expect(cache.get(a2)).toBeUndefined(); // a's older topic went first
    expect(cache.get(a1)).toBe(d);
  });

  it('a bound of 0 disables caching', () => {
    const src = new CountingSource('s', (r) => allowT.authorize(r));
    const chain = new ChainAuthorizer([bind(src)], { cacheMaxEntries: 0 });
    chain.check(request('publish', 't/x'));
    chain.check(request('publish', 't/x'));
    expect(src.calls).toBe(2);
  });
});

describe('compiled policy', () => {
  it('an empty policy denies everything', () => {
    expect(CompiledPolicy.empty('file').decide(request('publish', 'x'))).toBeUndefined();
  });
});
