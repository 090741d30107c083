import { formatPosition, DEFAULT_DENY_RULE, type CaseSpec, type Diagnostic } from './model.js';
import { DEFAULT_DENY, type CompiledPolicy } from './compile.js';
import type { AccessRequest, AuthzDecision } from './types.js';
import { refusedByBroker, SYS_READ_ONLY_RULE } from '../src/sys/read-only.js';

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
  if (!d.rule) return 'default deny';
  if (d.rule.source === 'broker') return `broker rule "${d.rule.name}" (applied before the policy)`;
  return `rule "${d.rule.name}"${d.rule.location ? ` (${d.rule.location})` : ''}`;
}

/**
 * Runs cases through the same compiled evaluator the broker uses, after the broker's own rule (a client publish to
 * `$SYS` is refused whatever the policy says), so a case never passes for a request the broker would refuse. A
 * case the broker refuses may still name the policy rule that denies it too: that rule is the policy's own
 * guarantee, worth a case of its own.
 */
export function runCases(policy: CompiledPolicy, cases: readonly CaseSpec[]): CaseResult[] {
  return cases.map((c) => {
    const req = caseRequest(c);
    const policyDecision = policy.decide(req) ?? DEFAULT_DENY;
    const decision = refusedByBroker(req) ?? policyDecision;
    const decidedBy = ruleName(decision);
    const alsoDeniedBy = decision !== policyDecision && !policyDecision.allowed ? ruleName(policyDecision) : undefined;
    const actual = decision.allowed ? 'allow' : 'deny';
    let failure: string | undefined;
    if (actual !== c.expect) {
      failure = `expected ${c.expect}, got ${actual} by ${describeDecision(decision)}`;
    } else if (c.rule !== undefined && c.rule !== decidedBy && c.rule !== alsoDeniedBy) {
      const policyPart = alsoDeniedBy === undefined ? '' : `, and the policy by rule "${alsoDeniedBy}"`;
      failure = `expected rule "${c.rule}" to decide, but ${describeDecision(decision)} did${policyPart}`;
    }
    return { case: c, passed: failure === undefined, decision, decidedBy, failure };
  });
}

function ruleName(d: AuthzDecision): string {
  return d.rule?.name ?? DEFAULT_DENY_RULE;
}

/** Failed cases, and cases naming rules that do not exist, as diagnostics. */
export function caseDiagnostics(policy: CompiledPolicy, results: readonly CaseResult[]): Diagnostic[] {
  const names = new Set(policy.rules.map((r) => r.spec.name));
  names.add(DEFAULT_DENY_RULE).add('superuser').add(SYS_READ_ONLY_RULE.name);
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
