import { formatPosition, DEFAULT_DENY_RULE, type CaseSpec, type Diagnostic } from './model.js';
import { DEFAULT_DENY, type CompiledPolicy } from './compile.js';
import type { AccessRequest, AuthzDecision } from './types.js';

export interface CaseResult {
  case: CaseSpec;
  passed: boolean;
  decision: AuthzDecision;
  /** Name of the rule that decided, `default-deny` or `superuser`. */
  decidedBy: string;
  /** Why the case failed, with the rule that actually decided. */
  failure?: string;
}

export function caseRequest(c: CaseSpec): AccessRequest {
  return {
    identity: c.identity,
    listener: c.listener,
    peerAddress: c.peerAddress,
    action: c.action,
    topic: c.topic,
    qos: c.qos,
    retain: c.retain,
    sharedGroup: c.sharedGroup,
  };
}

function describeDecision(d: AuthzDecision): string {
  return d.rule ? `rule "${d.rule.name}"${d.rule.location ? ` (${d.rule.location})` : ''}` : 'default deny';
}

/** Runs cases through the same compiled evaluator the broker uses. */
export function runCases(policy: CompiledPolicy, cases: readonly CaseSpec[]): CaseResult[] {
  return cases.map((c) => {
    const decision = policy.decide(caseRequest(c)) ?? DEFAULT_DENY;
    const decidedBy = decision.rule?.name ?? DEFAULT_DENY_RULE;
    const actual = decision.allowed ? 'allow' : 'deny';
    let failure: string | undefined;
    if (actual !== c.expect) {
      failure = `expected ${c.expect}, got ${actual} by ${describeDecision(decision)}`;
    } else if (c.rule !== undefined && c.rule !== decidedBy) {
      failure = `expected rule "${c.rule}" to decide, but ${describeDecision(decision)} did`;
    }
    return { case: c, passed: failure === undefined, decision, decidedBy, failure };
  });
}

/** Failed cases, and cases naming rules that do not exist, as diagnostics. */
export function caseDiagnostics(policy: CompiledPolicy, results: readonly CaseResult[]): Diagnostic[] {
  const names = new Set(policy.rules.map((r) => r.spec.name));
  names.add(DEFAULT_DENY_RULE).add('superuser');
  const out: Diagnostic[] = [];
  for (const r of results) {
    if (r.case.rule !== undefined && !names.has(r.case.rule)) {
      out.push({
        severity: 'error',
        code: 'BULWARK_ERR_POLICY_CASES',
        message: `case "${r.case.name}" names rule "${r.case.rule}", which does not exist`,
        position: r.case.position,
      });
    } else if (!r.passed) {
      out.push({
        severity: 'error',
        code: 'BULWARK_ERR_POLICY_CASES',
        message: `case "${r.case.name}" failed: ${r.failure}`,
        position: r.case.position,
      });
    }
  }
  return out;
}

export function formatCaseFailure(r: CaseResult): string {
  return `${formatPosition(r.case.position)}: FAIL ${r.case.name}: ${r.failure}`;
}
