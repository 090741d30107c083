import { BlockList } from 'node:net';
import type { Identity } from '../authn/types.js';
import { DEFAULT_DENY_RULE, SUPERUSER_RULE, type Effect, type RuleSpec, type TextSet } from './model.js';
import { parseCidr } from './parse.js';
import {
  coversFilter,
  LEVEL_LITERAL,
  matchesName,
  overlapsFilter,
  parseTopicPattern,
  type TopicPattern,
} from './topic.js';
import type { AccessAction, AccessRequest, AuthzDecision, AuthzOutcome, RuleRef } from './types.js';

/**
 * One object that is both a source outcome and the broker's decision, allocated once per rule at compile time so
 * the per-message path returns it without allocating.
 */
export interface Verdict {
  readonly kind: Effect;
  readonly allowed: boolean;
  readonly rule: RuleRef;
  readonly reason: string;
}

export const NOMATCH: AuthzOutcome = Object.freeze({ kind: 'nomatch' });

export interface TextMatcher {
  exact: ReadonlySet<string>;
  prefixes: readonly string[];
}

export interface CompiledSubjects {
  all: boolean;
  users?: TextMatcher;
  clients?: TextMatcher;
  groups?: TextMatcher;
  authenticators?: TextMatcher;
  listeners?: TextMatcher;
  addresses?: AddressBlocks;
  attributes?: ReadonlyArray<readonly [string, TextMatcher]>;
  superuser?: boolean;
  anonymous?: boolean;
}

export interface CompiledRule {
  readonly index: number;
  readonly spec: RuleSpec;
  readonly effect: Effect;
  /** Bit 0 publish, 1 subscribe, 2 receive, 3 connect. */
  readonly actionMask: number;
  readonly subjects: CompiledSubjects;
  readonly patterns: readonly TopicPattern[];
  /** Bit n set when QoS n is allowed by the rule's condition. */
  readonly qosMask: number;
  readonly retain: boolean | undefined;
  readonly shared: boolean | undefined;
  readonly ref: RuleRef;
  readonly verdict: Verdict;
}

export function actionBit(action: AccessAction): number {
  return action === 'publish' ? 1 : action === 'subscribe' ? 2 : action === 'receive' ? 4 : 8;
}

export const CONNECT_BIT = 8;

/** 0, 1 or 2 for publish, subscribe or receive: where a topic action's index and cached decisions are kept. */
export function topicActionIndex(action: AccessAction): 0 | 1 | 2 {
  return action === 'publish' ? 0 : action === 'subscribe' ? 1 : 2;
}

function textMatcher(set: TextSet | undefined): TextMatcher | undefined {
  return set ? { exact: new Set(set.exact), prefixes: set.prefixes } : undefined;
}

export function matchText(m: TextMatcher, value: string | undefined): boolean {
  if (value === undefined) return false;
  if (m.exact.has(value)) return true;
  const p = m.prefixes;
  for (let i = 0; i < p.length; i++) if (value.startsWith(p[i] as string)) return true;
  return false;
}

/** Answers remembered per address string, at most this many per rule; the cache starts over when full. */
const ADDRESS_ANSWERS = 1024;

/**
 * A rule's `addresses:` blocks. `BlockList.check` builds a `SocketAddress` object on every call (about 3% of a
 * connect); a client asks with the same address on every check, so answers are remembered, bounded.
 */
export class AddressBlocks {
  readonly #list = new BlockList();
  readonly #answers = new Map<string, boolean>();

  addSubnet(address: string, prefix: number, type: 'ipv4' | 'ipv6'): void {
    this.#list.addSubnet(address, prefix, type);
    this.#answers.clear();
  }

  has(address: string): boolean {
    const known = this.#answers.get(address);
    if (known !== undefined) return known;
    let answer: boolean;
    try {
      answer = this.#list.check(address, address.includes(':') ? 'ipv6' : 'ipv4');
    } catch {
      answer = false;
    }
    if (this.#answers.size >= ADDRESS_ANSWERS) this.#answers.clear();
    this.#answers.set(address, answer);
    return answer;
  }
}

export function addressIn(list: AddressBlocks, address: string): boolean {
  return list.has(address);
}

function compileSubjects(rule: RuleSpec): CompiledSubjects {
  const s = rule.subjects;
  if (s.all) return { all: true };
  let addresses: AddressBlocks | undefined;
  if (s.addresses) {
    addresses = new AddressBlocks();
    for (const a of s.addresses) {
      const c = parseCidr(a);
      if (c) addresses.addSubnet(c.address, c.prefix, c.type);
    }
  }
  return {
    all: false,
    users: textMatcher(s.users),
    clients: textMatcher(s.clients),
    groups: textMatcher(s.groups),
    authenticators: textMatcher(s.authenticators),
    listeners: textMatcher(s.listeners),
    addresses,
    attributes: s.attributes
      ? Object.entries(s.attributes).map(([k, v]) => [k, textMatcher(v) as TextMatcher] as const)
      : undefined,
    superuser: s.superuser,
    anonymous: s.anonymous,
  };
}

function anyGroup(m: TextMatcher, identity: Identity): boolean {
  const groups = identity.groups;
  for (let i = 0; i < groups.length; i++) if (matchText(m, groups[i])) return true;
  return false;
}

/** Why the subjects do not match, or undefined when they do. Used by explain; allocation is fine there. */
export function subjectMismatch(s: CompiledSubjects, req: AccessRequest): string | undefined {
  if (s.all) return undefined;
  const id = req.identity;
  if (s.superuser !== undefined && id.superuser !== s.superuser) return `superuser is ${id.superuser}`;
  if (s.anonymous !== undefined && id.anonymous !== s.anonymous) return `anonymous is ${id.anonymous}`;
  if (s.users && !matchText(s.users, id.username)) return `username ${JSON.stringify(id.username ?? null)} not listed`;
  if (s.clients && !matchText(s.clients, id.clientId)) return `client id "${id.clientId}" not listed`;
  if (s.groups && !anyGroup(s.groups, id)) return `none of the groups [${id.groups.join(', ')}] listed`;
  if (s.authenticators && !matchText(s.authenticators, id.authenticator)) {
    return `authenticator "${id.authenticator}" not listed`;
  }
  if (s.listeners && !matchText(s.listeners, req.listener)) return `listener "${req.listener}" not listed`;
  if (s.addresses && !addressIn(s.addresses, req.peerAddress)) return `address ${req.peerAddress} not in the blocks`;
  if (s.attributes) {
    for (const [name, m] of s.attributes) {
      if (!matchText(m, id.attributes[name]))
        return `attribute ${name} is ${JSON.stringify(id.attributes[name] ?? null)}`;
    }
  }
  return undefined;
}

function subjectMatches(s: CompiledSubjects, req: AccessRequest): boolean {
  if (s.all) return true;
  const id = req.identity;
  if (s.superuser !== undefined && id.superuser !== s.superuser) return false;
  if (s.anonymous !== undefined && id.anonymous !== s.anonymous) return false;
  if (s.users !== undefined && !matchText(s.users, id.username)) return false;
  if (s.clients !== undefined && !matchText(s.clients, id.clientId)) return false;
  if (s.groups !== undefined && !anyGroup(s.groups, id)) return false;
  if (s.authenticators !== undefined && !matchText(s.authenticators, id.authenticator)) return false;
  if (s.listeners !== undefined && !matchText(s.listeners, req.listener)) return false;
  if (s.addresses !== undefined && !addressIn(s.addresses, req.peerAddress)) return false;
  if (s.attributes !== undefined) {
    const attrs = s.attributes;
    for (let i = 0; i < attrs.length; i++) {
      const [name, m] = attrs[i] as readonly [string, TextMatcher];
      if (!matchText(m, id.attributes[name])) return false;
    }
  }
  return true;
}

/** Why the `when` conditions do not hold, or undefined when they do. */
export function conditionMismatch(rule: CompiledRule, req: AccessRequest): string | undefined {
  if ((rule.qosMask & (1 << req.qos)) === 0) return `qos ${req.qos} not in [${rule.spec.conditions.qos?.join(', ')}]`;
  if (rule.retain !== undefined && rule.retain !== req.retain) return `retain is ${req.retain}`;
  if (rule.shared !== undefined && rule.shared !== (req.sharedGroup !== undefined)) {
    return req.sharedGroup === undefined ? 'not a shared subscription' : 'a shared subscription';
  }
  return undefined;
}

/** The topic test a rule applies: names for publish/receive; cover (allow) or overlap (deny) for subscribe. */
export function topicMatches(
  rule: CompiledRule,
  req: AccessRequest,
  levels: readonly string[],
): TopicPattern | undefined {
  const ps = rule.patterns;
  const id = req.identity;
  for (let i = 0; i < ps.length; i++) {
    const p = ps[i] as TopicPattern;
    const hit =
      req.action !== 'subscribe'
        ? matchesName(p, levels, id)
        : rule.effect === 'allow'
          ? coversFilter(p, levels, id)
          : overlapsFilter(p, levels, id);
    if (hit) return p;
  }
  return undefined;
}

export function ruleLocation(rule: RuleSpec): string {
  return `${rule.position.file}:${rule.position.line}`;
}

export function compileRule(spec: RuleSpec, index: number, sourceId: string): CompiledRule {
  let actionMask = 0;
  for (const a of spec.actions) actionMask |= actionBit(a);
  let qosMask = 7;
  if (spec.conditions.qos) {
    qosMask = 0;
    for (const q of spec.conditions.qos) qosMask |= 1 << q;
  }
  const location = ruleLocation(spec);
  const ref: RuleRef = Object.freeze({ source: sourceId, name: spec.name, location });
  const verdict: Verdict = Object.freeze({
    kind: spec.effect,
    allowed: spec.effect === 'allow',
    rule: ref,
    reason: `${spec.effect === 'allow' ? 'allowed' : 'denied'} by rule "${spec.name}" (${location})`,
  });
  const patterns = spec.topics.map((t) => {
    const parsed = parseTopicPattern(t);
    if (!parsed.ok) throw new Error(`uncompilable topic reached the compiler: ${t}`);
    return parsed.pattern;
  });
  return {
    index,
    spec,
    effect: spec.effect,
    actionMask,
    subjects: compileSubjects(spec),
    patterns,
    qosMask,
    retain: spec.conditions.retain,
    shared: spec.conditions.shared,
    ref,
    verdict,
  };
}

/**
 * Rules of one action and effect, indexed by the literal levels their topic patterns start with: a trie over
 * those levels. A rule sits in the node where its pattern's literal prefix ends (the next level is a wildcard or a
 * placeholder, or the pattern ends), so a topic meets exactly the rules on its own path. Ten thousand tenants under
 * one first level (`fleet/tenant-N/#`) are thus as cheap to check as ten thousand first levels; indexing by the
 * first level alone scanned all of them for every topic under `fleet`.
 */
interface IndexNode {
  /** Rules whose pattern's literal prefix ends here, ascending. */
  here: number[];
  /** Every rule in this node and below it, ascending: for a subscription filter with a wildcard at the next level. */
  below: number[];
  children: Map<string, IndexNode> | undefined;
  /**
   * A built node with one child keeps it here instead of in `children` (see `trimIndex`): a tenant's rules make a
   * chain of such nodes, and a Map for one entry was 200 bytes of each.
   */
  onlyLevel: string | undefined;
  onlyChild: IndexNode | undefined;
}

function emptyNode(): IndexNode {
  return { here: [], below: [], children: undefined, onlyLevel: undefined, onlyChild: undefined };
}

/** Shared by every node whose list is empty; the index never writes to a list once it is built. */
const NO_RULES: number[] = [];

/** Appends a rule index unless it is already last (rules are added in file order, so a repeat is always last). */
function pushOnce(list: number[], index: number): void {
  if (list[list.length - 1] !== index) list.push(index);
}

function addToIndex(root: IndexNode, rule: CompiledRule): void {
  for (const p of rule.patterns) {
    let node = root;
    pushOnce(node.below, rule.index);
    for (let k = 0; k < p.kinds.length && p.kinds[k] === LEVEL_LITERAL; k++) {
      const level = p.values[k] as string;
      node.children ??= new Map();
      let child = node.children.get(level);
      if (!child) {
        child = emptyNode();
        node.children.set(level, child);
      }
      node = child;
      pushOnce(node.below, rule.index);
    }
    pushOnce(node.here, rule.index);
  }
}

/**
 * Replaces every node's lists with exact-size copies once the index is built: a list grown by `push` keeps room for
 * 16 rule numbers, and a node usually holds one or two. With the exact-size patterns and rule lists (parse.ts,
 * topic.ts), a policy of 10,000 tenant rules keeps 35 MiB instead of 53; with one-child nodes and shared lists, 30.
 */
function trimIndex(root: IndexNode): void {
  const pending = [root];
  for (let node = pending.pop(); node !== undefined; node = pending.pop()) {
    node.here = node.here.length === 0 ? NO_RULES : node.here.slice();
    // A node with nothing below it (every tenant's last level) has the same rules in both lists: one copy.
    node.below = sameRules(node.below, node.here) ? node.here : node.below.slice();
    const children = node.children;
    if (!children) continue;
    for (const child of children.values()) pending.push(child);
    if (children.size === 1) {
      const [level, child] = children.entries().next().value as [string, IndexNode];
      node.onlyLevel = level;
      node.onlyChild = child;
      node.children = undefined;
    }
  }
}

function sameRules(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The candidate lists a topic meets, written to `out` from index 0 (reused: checks are synchronous); answers how
 * many. The non-empty `here` list of each node on the topic's path, and, where a subscription filter has a
 * wildcard, every rule below that point.
 */
function candidateLists(
  root: IndexNode,
  subscribe: boolean,
  levels: readonly string[],
  out: (readonly number[])[],
): number {
  let n = 0;
  let node = root;
  for (let k = 0; ; k++) {
    const level = levels[k];
    if (level === undefined) {
      if (node.here.length > 0) out[n++] = node.here;
      return n;
    }
    if (subscribe && (level === '+' || level === '#')) {
      if (node.below.length > 0) out[n++] = node.below;
      return n;
    }
    if (node.here.length > 0) out[n++] = node.here;
    const child = node.onlyLevel === level ? node.onlyChild : node.children?.get(level);
    if (!child) return n;
    node = child;
  }
}

export interface CompileOptions {
  sourceId: string;
  superusers: boolean;
  hash?: string;
  files?: readonly string[];
}

/**
 * A policy compiled for the per-message path: rules indexed by action, effect and literal topic levels, so a
 * check touches only rules that can match, and returns preallocated verdicts.
 *
 * Evaluation order (docs/policy.md): superuser bypass if the policy enables it; then any matching deny wins (the
 * first one in file order is reported); otherwise the first matching allow; otherwise no match (default deny).
 */
export class CompiledPolicy {
  readonly rules: readonly CompiledRule[];
  readonly superusers: boolean;
  readonly hash: string;
  readonly files: readonly string[];
  readonly sourceId: string;
  readonly superuserVerdict: Verdict;
  readonly #deny: IndexNode[] = [emptyNode(), emptyNode(), emptyNode()];
  readonly #allow: IndexNode[] = [emptyNode(), emptyNode(), emptyNode()];
  /** Connect rules have no topic to index by: two lists in file order, walked by subjects only. */
  readonly #connectDeny: CompiledRule[] = [];
  readonly #connectAllow: CompiledRule[] = [];

  constructor(specs: readonly RuleSpec[], opts: CompileOptions) {
    this.sourceId = opts.sourceId;
    this.superusers = opts.superusers;
    this.hash = opts.hash ?? '';
    this.files = opts.files ?? [];
    this.rules = specs.map((s, i) => compileRule(s, i, opts.sourceId));
    this.superuserVerdict = Object.freeze({
      kind: 'allow',
      allowed: true,
      rule: Object.freeze({ source: opts.sourceId, name: SUPERUSER_RULE }),
      reason: 'superuser (the policy enables superusers)',
    });
    for (const rule of this.rules) {
      if (rule.actionMask & CONNECT_BIT) {
        (rule.effect === 'deny' ? this.#connectDeny : this.#connectAllow).push(rule);
        continue;
      }
      const buckets = rule.effect === 'deny' ? this.#deny : this.#allow;
      for (let a = 0; a < 3; a++) if (rule.actionMask & (1 << a)) addToIndex(buckets[a] as IndexNode, rule);
    }
    for (const root of [...this.#deny, ...this.#allow]) trimIndex(root);
    // Frozen, an empty list and a full one are the same kind of array to V8: code compiled while one policy's were
    // walked still fits the next policy's, where an empty literal array would not (docs/performance.md, "Session 26").
    Object.freeze(this.#connectDeny);
    Object.freeze(this.#connectAllow);
  }

  static empty(sourceId: string): CompiledPolicy {
    return new CompiledPolicy([], { sourceId, superusers: false, hash: 'empty' });
  }

  /**
   * The deciding verdict, or undefined when no rule matches. Synchronous; allocates only the topic's levels (and
   * nothing at all for `connect`).
   */
  decide(req: AccessRequest): Verdict | undefined {
    if (this.superusers && req.identity.superuser) return this.superuserVerdict;
    if (this.rules.length === 0) return undefined;
    if (req.action === 'connect') {
      // The same order as every other action: any matching deny, then the first matching allow.
      const denied = firstBySubject(this.#connectDeny, req);
      return denied !== undefined ? denied.verdict : firstBySubject(this.#connectAllow, req)?.verdict;
    }
    const a = topicActionIndex(req.action);
    const levels = req.topic.split('/');
    const denied = this.#first(this.#deny[a] as IndexNode, req, levels);
    if (denied) return denied.verdict;
    const allowed = this.#first(this.#allow[a] as IndexNode, req, levels);
    return allowed?.verdict;
  }

  authorize(req: AccessRequest): AuthzOutcome {
    return this.decide(req) ?? NOMATCH;
  }

  /**
   * Whether every `receive` check a subscription's deliveries can cause is allowed: `req.topic` is the subscription's
   * filter, `req.qos` its granted maximum. True only when no deny rule for `receive` whose subjects match could match
   * any topic under the filter (whatever its QoS and retain conditions), and an allow rule whose subjects match
   * covers the whole filter for every QoS up to `req.qos` and either retain flag. Then each delivery would be
   * allowed by its own check, so the broker may skip it; anything this cannot prove is checked per delivery.
   */
  receivesWholeFilter(req: AccessRequest): boolean {
    if (this.superusers && req.identity.superuser) return true;
    if (this.rules.length === 0) return false;
    const a = topicActionIndex('receive');
    const levels = req.topic.split('/');
    const id = req.identity;
    const shared = req.sharedGroup !== undefined;
    const everyQos = (1 << (req.qos + 1)) - 1;
    const applies = (rule: CompiledRule): boolean =>
      subjectMatches(rule.subjects, req) && (rule.shared === undefined || rule.shared === shared);
    for (const rule of this.#candidates(this.#deny[a] as IndexNode, levels)) {
      if (applies(rule) && rule.patterns.some((p) => overlapsFilter(p, levels, id))) return false;
    }
    for (const rule of this.#candidates(this.#allow[a] as IndexNode, levels)) {
      if (!applies(rule) || rule.retain !== undefined || (rule.qosMask & everyQos) !== everyQos) continue;
      if (rule.patterns.some((p) => coversFilter(p, levels, id))) return true;
    }
    return false;
  }

  /** Every rule of an index a subscription filter could meet, in no particular order. */
  #candidates(root: IndexNode, levels: readonly string[]): CompiledRule[] {
    const lists: (readonly number[])[] = [];
    const count = candidateLists(root, true, levels, lists);
    const found = new Set<number>();
    for (let l = 0; l < count; l++) for (const i of lists[l] as readonly number[]) found.add(i);
    return [...found].map((i) => this.rules[i] as CompiledRule);
  }

  /**
   * The rules a check of `req` looks at, in file order: what the index narrows the policy to before subjects,
   * conditions and topics are compared. For tests and diagnostics; `decide` does not allocate this list.
   */
  candidatesFor(req: AccessRequest): number[] {
    if (req.action === 'connect')
      return [...this.#connectDeny, ...this.#connectAllow].map((r) => r.index).sort((x, y) => x - y);
    const a = topicActionIndex(req.action);
    const levels = req.topic.split('/');
    const lists: (readonly number[])[] = [];
    const found = new Set<number>();
    for (const root of [this.#deny[a], this.#allow[a]] as IndexNode[]) {
      const count = candidateLists(root, req.action === 'subscribe', levels, lists);
      for (const list of lists.slice(0, count)) for (const i of list) found.add(i);
    }
    return [...found].sort((x, y) => x - y);
  }

  #first(root: IndexNode, req: AccessRequest, levels: readonly string[]): CompiledRule | undefined {
    const lists = SCRATCH_LISTS;
    const count = candidateLists(root, req.action === 'subscribe', levels, lists);
    // Usually one or two lists are non-empty (the topic's own node, a wildcard rule near the root): those are
    // walked or merged directly; more are merged by always taking the smallest head.
    if (count === 0) return undefined;
    if (count === 1) {
      const only = lists[0] as readonly number[];
      for (let i = 0; i < only.length; i++) {
        const rule = this.#matching(only[i] as number, req, levels);
        if (rule) return rule;
      }
      return undefined;
    }
    const at = SCRATCH_POSITIONS;
    for (let l = 0; l < count; l++) at[l] = 0;
    // Merge the ascending lists so rules are tried in file order; a rule with several patterns may be in several.
    let last = -1;
    for (;;) {
      let from = -1;
      let idx = 0;
      for (let l = 0; l < count; l++) {
        const list = lists[l] as readonly number[];
        const i = at[l] as number;
        if (i < list.length && (from < 0 || (list[i] as number) < idx)) {
          idx = list[i] as number;
          from = l;
        }
      }
      if (from < 0) return undefined;
      at[from] = (at[from] as number) + 1;
      if (idx === last) continue;
      last = idx;
      const rule = this.#matching(idx, req, levels);
      if (rule) return rule;
    }
  }

  /** The rule at `idx` when it matches the request: subjects, conditions, then the topic. */
  #matching(idx: number, req: AccessRequest, levels: readonly string[]): CompiledRule | undefined {
    const rule = this.rules[idx] as CompiledRule;
    if (!subjectMatches(rule.subjects, req)) return undefined;
    if ((rule.qosMask & (1 << req.qos)) === 0) return undefined;
    if (rule.retain !== undefined && rule.retain !== req.retain) return undefined;
    if (rule.shared !== undefined && rule.shared !== (req.sharedGroup !== undefined)) return undefined;
    return topicMatches(rule, req, levels) ? rule : undefined;
  }
}

/** Reused by every check (they are synchronous), so a check allocates nothing for its candidate lists. */
const SCRATCH_LISTS: (readonly number[])[] = [];
const SCRATCH_POSITIONS: number[] = [];

function firstBySubject(rules: readonly CompiledRule[], req: AccessRequest): CompiledRule | undefined {
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i] as CompiledRule;
    if (subjectMatches(rule.subjects, req)) return rule;
  }
  return undefined;
}

export { DEFAULT_DENY_RULE };

/** What the chain answers when nothing matched anywhere. */
export const DEFAULT_DENY: AuthzDecision = Object.freeze({ allowed: false, reason: 'no rule matched (default deny)' });
