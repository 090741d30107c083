import {
  actionBit,
  conditionMismatch,
  DEFAULT_DENY,
  subjectMismatch,
  topicMatches,
  type CompiledPolicy,
  type CompiledRule,
} from './compile.js';
import {
  usableValue,
  LEVEL_ATTRIBUTE,
  LEVEL_CLIENTID,
  LEVEL_GROUP,
  LEVEL_USERNAME,
  type TopicPattern,
} from './topic.js';
import type { AccessRequest, AuthzDecision, RuleRef } from './types.js';
import { refusedByBroker } from '../src/sys/read-only.js';

export interface RuleConsideration {
  rule: RuleRef;
  effect: 'allow' | 'deny';
  matched: boolean;
  /** Why the rule did or did not match, in one sentence. */
  why: string;
}

export interface Explanation {
  decision: AuthzDecision;
  /** Every rule in evaluation (file) order. */
  considered: RuleConsideration[];
  /** What the policy alone would answer, when a broker rule decided before the policy was asked. */
  policyDecision?: AuthzDecision;
}

function placeholderProblem(p: TopicPattern, req: AccessRequest): string | undefined {
  const id = req.identity;
  for (let i = 0; i < p.kinds.length; i++) {
    const k = p.kinds[i];
    const first = i === 0;
    if (k === LEVEL_USERNAME && !usableValue(id.username, first)) return `\${username} cannot be filled`;
    if (k === LEVEL_CLIENTID && !usableValue(id.clientId, first)) return `\${clientid} cannot be filled`;
    if (k === LEVEL_ATTRIBUTE && !usableValue(id.attributes[p.values[i] as string], first)) {
      return `attribute ${p.values[i]} cannot fill a level`;
    }
    if (k === LEVEL_GROUP && !id.groups.some((g) => usableValue(g, first))) return `\${group} cannot be filled`;
  }
  return undefined;
}

function considerRule(rule: CompiledRule, req: AccessRequest, levels: readonly string[]): RuleConsideration {
  const base = { rule: rule.ref, effect: rule.effect };
  if ((rule.actionMask & actionBit(req.action)) === 0) {
    return { ...base, matched: false, why: `does not cover ${req.action} (covers ${rule.spec.actions.join(', ')})` };
  }
  const subject = subjectMismatch(rule.subjects, req);
  if (subject) return { ...base, matched: false, why: `subject does not match: ${subject}` };
  if (req.action === 'connect') return { ...base, matched: true, why: 'subjects match (connect rules have no topic)' };
  const condition = conditionMismatch(rule, req);
  if (condition) return { ...base, matched: false, why: `condition does not hold: ${condition}` };
  const hit = topicMatches(rule, req, levels);
  if (hit) {
    const how = req.action !== 'subscribe' ? 'matches' : rule.effect === 'allow' ? 'covers' : 'overlaps';
    return { ...base, matched: true, why: `topic "${hit.source}" ${how} "${req.topic}"` };
  }
  const problems = rule.patterns.map((p) => placeholderProblem(p, req)).filter((x): x is string => x !== undefined);
  const dollar = req.topic.startsWith('$') ? '; topics starting with $ are matched only by rules that name them' : '';
  const verb = req.action !== 'subscribe' ? 'matches' : rule.effect === 'allow' ? 'covers' : 'overlaps';
  const detail = problems.length > 0 ? ` (${[...new Set(problems)].join('; ')}: empty, absent or contains + # /)` : '';
  return {
    ...base,
    matched: false,
    why: `no topic of [${rule.spec.topics.join(', ')}] ${verb} "${req.topic}"${detail}${dollar}`,
  };
}

/**
 * Why a policy decides as it does, rule by rule. Walks every rule (slow path) but applies the same order as
 * `CompiledPolicy.decide`, which the tests hold it to; the broker may put the result in audit records.
 */
export function explainAccess(policy: CompiledPolicy, req: AccessRequest): Explanation {
  const levels = req.topic.split('/');
  const considered = policy.rules.map((r) => considerRule(r, req, levels));
  let decision: AuthzDecision = DEFAULT_DENY;
  if (policy.superusers && req.identity.superuser) decision = policy.superuserVerdict;
  else {
    const deny = policy.rules.find((r, i) => r.effect === 'deny' && considered[i]?.matched);
    const allow = policy.rules.find((r, i) => r.effect === 'allow' && considered[i]?.matched);
    const winner = deny ?? allow;
    if (winner) decision = winner.verdict;
  }
  return { decision, considered };
}

/**
 * The answer the broker gives, for `policy explain`: the broker's own refusals come before the policy (a client
 * publish to `$SYS`, `src/sys/read-only.ts`), so a rule that allows one is shown as never applied.
 */
export function explainBrokerAccess(policy: CompiledPolicy, req: AccessRequest): Explanation {
  const e = explainAccess(policy, req);
  const refusal = refusedByBroker(req);
  return refusal ? { decision: refusal, considered: e.considered, policyDecision: e.decision } : e;
}

function describeRequest(req: AccessRequest): string {
  const id = req.identity;
  const who = id.anonymous ? 'anonymous' : `user ${JSON.stringify(id.username ?? null)}`;
  if (req.action === 'connect') {
    return `${who}, client "${id.clientId}", connect on listener "${req.listener}" from ${req.peerAddress}`;
  }
  const shared = req.sharedGroup !== undefined ? ` (shared group ${req.sharedGroup})` : '';
  return `${who}, client "${id.clientId}", ${req.action} "${req.topic}"${shared} qos ${req.qos}${req.retain ? ' retain' : ''}`;
}

function describeRule(rule: RuleRef | undefined, broker: boolean): string {
  if (!rule) return 'default deny (no rule matched)';
  if (broker) return `broker rule "${rule.name}" (applied before the policy)`;
  return `rule "${rule.name}"${rule.location ? ` at ${rule.location}` : ''}`;
}

/** The text `bulwark policy explain` prints. */
export function formatExplanation(req: AccessRequest, e: Explanation): string {
  const lines: string[] = [];
  lines.push(`request:  ${describeRequest(req)}`);
  lines.push(`decision: ${e.decision.allowed ? 'ALLOW' : 'DENY'}`);
  const rule = e.decision.rule;
  lines.push(`decided by: ${describeRule(rule, e.policyDecision !== undefined)}`);
  lines.push(`reason:   ${e.decision.reason}`);
  if (e.policyDecision) {
    const alone = e.policyDecision;
    lines.push(
      `policy alone: ${alone.allowed ? 'ALLOW' : 'DENY'} by ${describeRule(alone.rule, false)}; never applied, the broker decides first`,
    );
  }
  lines.push('rules considered (deny wins over allow; then the first allow; otherwise default deny):');
  if (e.considered.length === 0) lines.push('  (no rules)');
  for (const c of e.considered) {
    const mark = c.matched ? 'MATCH' : 'no   ';
    lines.push(`  ${mark} ${c.effect.padEnd(5)} ${c.rule.name} (${c.rule.location ?? c.rule.source}): ${c.why}`);
  }
  return lines.join('\n');
}
