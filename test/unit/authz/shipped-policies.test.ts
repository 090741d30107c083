import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadPolicySet } from '../../../authz/load.js';
import { formatDiagnostic } from '../../../authz/model.js';

const dir = join(import.meta.dirname, '../../../policies');
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.policy.yaml'))
  .sort();

describe('shipped policies', () => {
  it('ship the default policy and the worked examples', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'default.policy.yaml',
        'multi-tenant.policy.yaml',
        'devices.policy.yaml',
        'ldap-groups.policy.yaml',
        'dashboards.policy.yaml',
      ]),
    );
  });

  it.each(files)('%s loads without errors and every one of its cases passes', async (name) => {
    const set = await loadPolicySet([join(dir, name)], { runCases: true });
    const errors = set.diagnostics.filter((d) => d.severity === 'error');
    expect(errors.map(formatDiagnostic)).toEqual([]);
    expect(set.caseResults?.length ?? 0).toBeGreaterThanOrEqual(5);
    expect(set.caseResults?.filter((r) => !r.passed).map((r) => r.failure)).toEqual([]);
    expect(set.policy).toBeDefined();
  });

  it.each(files)('%s says who may connect, why, and has connect cases for both outcomes', async (name) => {
    const set = await loadPolicySet([join(dir, name)], { runCases: true });
    const connectRules = set.rules.filter((r) => r.actions.includes('connect'));
    expect(connectRules.some((r) => r.effect === 'allow')).toBe(true);
    for (const r of connectRules) expect(r.why, `rule ${r.name} explains itself`).toBeTruthy();
    const outcomes = new Set(set.cases.filter((c) => c.action === 'connect').map((c) => c.expect));
    expect([...outcomes].sort()).toEqual(['allow', 'deny']);
  });

  it('no case file sits in policies/ without its policy', () => {
    const cases = readdirSync(dir).filter((f) => f.endsWith('.cases.yaml'));
    for (const c of cases) expect(files).toContain(c.replace('.cases.yaml', '.policy.yaml'));
  });
});
