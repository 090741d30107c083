import type { Identity } from '../authn/types.js';
import { ChainAuthorizer } from './authorizer.js';
import { CompiledPolicy } from './compile.js';
import type { RuleSpec } from './model.js';
import { StaticPolicySource } from './sources/file.js';
import type { AccessRequest } from './types.js';

export interface AuthzBenchmarkResult {
  rules: number;
  checks: number;
  /** Publish checks per second through the chain with the decision cache disabled (compiled evaluator only). */
  checksPerSecond: number;
}

function rule(
  name: string,
  effect: 'allow' | 'deny',
  users: string[] | undefined,
  topic: string,
  line: number,
): RuleSpec {
  const position = { file: 'bench.policy.yaml', line, column: 3 };
  return {
    name,
    effect,
    actions: ['publish', 'subscribe', 'receive'],
    subjects: users ? { all: false, users: { exact: users, prefixes: [] } } : { all: true },
    topics: [topic],
    topicPositions: [position],
    conditions: {},
    position,
  };
}

/**
 * Where the tenants' topics start. `own-level`: each tenant has its own first topic level (`tenant-7/#`).
 * `shared-level`: every tenant is under one first level (`fleet/tenant-7/#`), which scanned every tenant's rule
 * while the compiled policy indexed the first level only; its index now follows all literal levels.
 */
export type TenantLayout = 'own-level' | 'shared-level';

function tenantPrefix(layout: TenantLayout, tenant: number): string {
  return layout === 'own-level' ? `tenant-${tenant}` : `fleet/tenant-${tenant}`;
}

/** A policy shaped like a large multi-tenant deployment: one prefix per tenant, a few global rules. */
export function benchmarkPolicy(rules: number, layout: TenantLayout = 'own-level'): CompiledPolicy {
  const specs: RuleSpec[] = [rule('deny-sys-writes', 'deny', undefined, '$SYS/#', 1)];
  specs.push(rule('own-prefix', 'allow', undefined, 'users/${username}/#', 2));
  for (let i = specs.length; i < rules; i++) {
    specs.push(rule(`tenant-${i}`, 'allow', [`user-${i}`], `${tenantPrefix(layout, i)}/#`, i + 1));
  }
  return new CompiledPolicy(specs.slice(0, Math.max(rules, 1)), { sourceId: 'bench', superusers: false });
}

function requests(rules: number, count: number, layout: TenantLayout): AccessRequest[] {
  const out: AccessRequest[] = [];
  // One identity object per connected client, as the broker keeps it for the connection's lifetime.
  const identities = new Map<number, Identity>();
  for (let i = 0; i < count; i++) {
    const t = 2 + (i % Math.max(1, rules - 2));
    const identity: Identity = identities.get(t) ?? {
      clientId: `client-${t}`,
      username: `user-${t}`,
      groups: [],
      attributes: {},
      superuser: false,
      anonymous: false,
      authenticator: 'bench',
    };
    identities.set(t, identity);
    out.push({
      identity,
      listener: 'default',
      peerAddress: '127.0.0.1',
      action: 'publish',
      topic: i % 3 === 0 ? `users/user-${t}/telemetry` : `${tenantPrefix(layout, t)}/devices/d${i % 7}/temp`,
      qos: 1,
      retain: false,
      sharedGroup: undefined,
    });
  }
  return out;
}

function measure(authorizer: ChainAuthorizer, reqs: readonly AccessRequest[], checks: number): number {
  let allowed = 0;
  for (let i = 0; i < Math.min(checks, 10_000); i++) {
    const d = authorizer.check(reqs[i % reqs.length] as AccessRequest);
    if (!(d instanceof Promise) && d.allowed) allowed++;
  }
  const start = process.hrtime.bigint();
  for (let i = 0; i < checks; i++) {
    const d = authorizer.check(reqs[i % reqs.length] as AccessRequest);
    if (!(d instanceof Promise) && d.allowed) allowed++;
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (allowed === 0) throw new Error('benchmark requests were all denied; the workload is wrong');
  return Math.round(checks / seconds);
}

/**
 * Publish checks per second for a policy of `rules` rules with the decision cache off: what a cache miss costs.
 * (With the cache on every check after the first per topic is a map lookup; the broker-level `authz` scenario
 * measures that steady state.)
 */
export function benchmarkAuthz(
  rules: number,
  checks = 200_000,
  layout: TenantLayout = 'own-level',
): AuthzBenchmarkResult {
  const policy = benchmarkPolicy(rules, layout);
  const reqs = requests(rules, 1_000, layout);
  const source = new StaticPolicySource(policy);
  const binding = { source, onError: 'deny' as const, timeoutMs: 1_000, cacheable: true };
  const uncached = new ChainAuthorizer([binding], { cacheMaxEntries: 0 });
  return { rules: policy.rules.length, checks, checksPerSecond: measure(uncached, reqs, checks) };
}
