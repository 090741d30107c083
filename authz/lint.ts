import type { Diagnostic, RuleSpec, SubjectSpec, TextSet } from './model.js';
import { parseTopicPattern, patternCovers, type TopicPattern } from './topic.js';
import { isSysTopic, SYS_READ_ONLY_RULE } from '../src/sys/read-only.js';

function textCovers(a: TextSet | undefined, b: TextSet | undefined): boolean {
  if (a === undefined) return true;
  if (b === undefined) return false;
  const covered = (v: string, isPrefix: boolean): boolean =>
    (!isPrefix && a.exact.includes(v)) || a.prefixes.some((p) => v.startsWith(p));
  return b.exact.every((v) => covered(v, false)) && b.prefixes.every((v) => covered(v, true));
}

/** True when every identity `b` selects is also selected by `a` (conservative: false when unsure). */
function subjectsCover(a: SubjectSpec, b: SubjectSpec): boolean {
  if (a.all) return true;
  if (b.all) return false;
  if (a.superuser !== undefined && a.superuser !== b.superuser) return false;
  if (a.anonymous !== undefined && a.anonymous !== b.anonymous) return false;
  if (a.addresses !== undefined && !(b.addresses ?? []).every((x) => a.addresses?.includes(x))) return false;
  if (a.addresses !== undefined && b.addresses === undefined) return false;
  for (const key of ['users', 'clients', 'groups', 'authenticators', 'listeners'] as const) {
    if (!textCovers(a[key], b[key])) return false;
  }
  for (const [name, set] of Object.entries(a.attributes ?? {})) {
    if (!textCovers(set, b.attributes?.[name])) return false;
  }
  return true;
}

function conditionsCover(a: RuleSpec, b: RuleSpec): boolean {
  const ac = a.conditions;
  const bc = b.conditions;
  if (ac.qos && !(bc.qos ?? [0, 1, 2]).every((q) => ac.qos?.includes(q))) return false;
  if (ac.retain !== undefined && ac.retain !== bc.retain) return false;
  if (ac.shared !== undefined && ac.shared !== bc.shared) return false;
  return true;
}

function patterns(rule: RuleSpec): TopicPattern[] {
  return rule.topics.flatMap((t) => {
    const p = parseTopicPattern(t);
    return p.ok ? [p.pattern] : [];
  });
}

/** True when rule `a` matches every request rule `b` matches (for every identity). */
function ruleCovers(a: RuleSpec, b: RuleSpec, pa: TopicPattern[], pb: TopicPattern[]): boolean {
  if (!b.actions.every((x) => a.actions.includes(x))) return false;
  if (!subjectsCover(a.subjects, b.subjects) || !conditionsCover(a, b)) return false;
  return pb.every((tb) => pa.some((ta) => patternCovers(ta, tb)));
}

function where(rule: RuleSpec): string {
  return `${rule.position.file}:${rule.position.line}`;
}

export const NO_CONNECT_WARNING = 'no rule allows connect: every client will be refused with CONNACK 0x87';

/**
 * Review warnings for `policy check`: rules that can never decide because another rule matches everything they
 * match, `#` grants to anonymous or all clients, publish grants on `$SYS` (the broker refuses them first), deny rules
 * that placeholders can defeat, `$share/` topics on subscribe or receive rules (never met: subscriptions are checked
 * without that prefix), conditions that cannot apply to the rule's actions, and a policy in which no rule
 * allows `connect`. `files` (the files loaded, in order) gives the last warning a position.
 */
export function lintRules(rules: readonly RuleSpec[], files: readonly string[] = []): Diagnostic[] {
  const out: Diagnostic[] = [];
  if (!rules.some((r) => r.effect === 'allow' && r.actions.includes('connect'))) {
    const file = files[0] ?? rules[0]?.position.file;
    out.push({
      severity: 'warning',
      code: 'POLICY_WARNING',
      message: NO_CONNECT_WARNING,
      position: file !== undefined ? { file, line: 1, column: 1 } : undefined,
      hint: 'add a rule such as "allow: connect" with the subjects that may connect',
    });
  }
  const warn = (rule: RuleSpec, message: string, hint?: string, position = rule.position): void => {
    out.push({ severity: 'warning', code: 'POLICY_WARNING', message, position, hint });
  };
  const compiled = rules.map(patterns);
  rules.forEach((b, j) => {
    const pb = compiled[j] as TopicPattern[];
    for (let i = 0; i < rules.length; i++) {
      if (i === j) continue;
      const a = rules[i] as RuleSpec;
      const pa = compiled[i] as TopicPattern[];
      if (a.effect === 'deny' && b.effect === 'allow' && ruleCovers(a, b, pa, pb)) {
        warn(b, `rule "${b.name}" can never allow: deny rule "${a.name}" (${where(a)}) matches everything it does`);
        return;
      }
      if (i < j && a.effect === b.effect && ruleCovers(a, b, pa, pb)) {
        warn(b, `rule "${b.name}" never decides: earlier rule "${a.name}" (${where(a)}) matches everything it does`);
        return;
      }
    }
  });
  for (const rule of rules) {
    const broad = rule.subjects.all ? 'all clients' : rule.subjects.anonymous === true ? 'anonymous clients' : '';
    if (rule.effect === 'allow' && broad) {
      rule.topics.forEach((t, k) => {
        if (t === '#' || t === '+/#') {
          warn(
            rule,
            `rule "${rule.name}" grants "${t}" to ${broad}`,
            'narrow the subjects or topics unless this is intended',
            rule.topicPositions[k],
          );
        }
      });
    }
    if (rule.effect === 'allow' && rule.actions.includes('publish')) {
      rule.topics.forEach((t, k) => {
        if (isSysTopic(t)) {
          warn(
            rule,
            `rule "${rule.name}" allows publish on "${t}", which can never take effect: the broker refuses every client publish to $SYS before the policy is asked (broker rule "${SYS_READ_ONLY_RULE.name}")`,
            'only the broker publishes to $SYS; drop publish or this topic from the rule',
            rule.topicPositions[k],
          );
        }
      });
    }
    if (rule.effect === 'deny' && rule.topics.some((t) => t.includes('${'))) {
      warn(
        rule,
        `deny rule "${rule.name}" uses a placeholder: it does not apply to identities whose value is empty or contains + # /, or starts with $ in the first level`,
        'write deny rules with literal topics where possible',
      );
    }
    // A subscription is checked as its filter without `$share/<group>/` (docs/policy.md), so such a topic never
    // meets a shared subscription: an allow grants nothing and, worse, a deny refuses nothing.
    if (rule.actions.includes('subscribe') || rule.actions.includes('receive')) {
      rule.topics.forEach((t, k) => {
        if (t.startsWith('$share/')) {
          warn(
            rule,
            `rule "${rule.name}": topic "${t}" never matches a shared subscription, which is checked without its "$share/<group>/" prefix`,
            'write the filter itself and add when: { shared: true } to single out shared subscriptions',
            rule.topicPositions[k],
          );
        }
      });
    }
    const c = rule.conditions;
    if (c.shared !== undefined && !rule.actions.includes('subscribe') && !rule.actions.includes('receive')) {
      warn(rule, `rule "${rule.name}": "shared" only applies to subscribe and receive`);
    }
    if (c.retain === true && rule.actions.length === 1 && rule.actions[0] === 'subscribe') {
      warn(rule, `rule "${rule.name}": "retain: true" never holds for subscribe requests, so the rule never matches`);
    }
  }
  return out;
}
