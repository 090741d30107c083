import { describe, expect, it } from 'vitest';
import { benchmarkPolicy } from '../../../authz/bench.js';
import { authzEvaluatorScenario } from '../../../bench/scenarios/authz-evaluator.js';
import type { BenchContext } from '../../../bench/scenario.js';
import { identity, request } from './helpers.js';

describe('the evaluator benchmark policy', () => {
  const asUser = (n: number) => ({ identity: identity({ username: `user-${n}`, clientId: `client-${n}` }) });

  it('gives each tenant its own first topic level, or puts every tenant under one shared level', () => {
    const own = benchmarkPolicy(100, 'own-level');
    const shared = benchmarkPolicy(100, 'shared-level');
    expect(own.decide(request('publish', 'tenant-7/devices/d1/temp', asUser(7)))?.rule.name).toBe('tenant-7');
    expect(shared.decide(request('publish', 'fleet/tenant-7/devices/d1/temp', asUser(7)))?.rule.name).toBe('tenant-7');
    // Shared-level tenants are still separated by their rules' subjects, not by the index.
    expect(shared.decide(request('publish', 'fleet/tenant-7/devices/d1/temp', asUser(8)))).toBeUndefined();
    expect(shared.decide(request('publish', 'tenant-7/devices/d1/temp', asUser(7)))).toBeUndefined();
    expect(own.rules).toHaveLength(100);
  });

  it('runs as a bench scenario and reports checks per second for each of its four variants', async () => {
    const ctx = { quick: true, memo: new Map<string, unknown>() } as unknown as BenchContext;
    const m = await authzEvaluatorScenario.run('bulwark', ctx);
    expect(Object.keys(m.metrics).sort()).toEqual(['own10', 'own10000', 'shared10', 'shared10000']);
    for (const value of Object.values(m.metrics)) expect(value).toBeGreaterThan(0);
    expect(authzEvaluatorScenario.metrics.map((s) => s.key).sort()).toEqual(Object.keys(m.metrics).sort());
  }, 60_000);
});
