import { isIP } from 'node:net';
import { Document, isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type YAMLMap } from 'yaml';
import type { Identity } from '../authn/types.js';
import type { SourcePosition } from '../src/errors.js';
import {
  ACTIONS,
  RESERVED_RULE_NAMES,
  type CaseSpec,
  type ConditionSpec,
  type Diagnostic,
  type Effect,
  type ParsedPolicyFile,
  type RuleSpec,
  type SubjectSpec,
  type TextSet,
} from './model.js';
import { isValidFilter, isValidTopicName, parseTopicPattern } from './topic.js';
import type { AccessAction } from './types.js';

const QUOTE_HINT = 'quote topic filters: an unquoted # starts a YAML comment';

/** Turns nodes into positions and collects diagnostics for one file (or one JWT claim). */
class Reader {
  readonly diagnostics: Diagnostic[] = [];
  constructor(
    readonly file: string,
    private readonly lines: LineCounter | undefined,
  ) {}

  pos(node: unknown, fallback?: SourcePosition): SourcePosition | undefined {
    const range = (node as { range?: [number, number, number] | null } | null | undefined)?.range;
    if (!range || !this.lines) return fallback;
    const { line, col } = this.lines.linePos(range[0]);
    return { file: this.file, line, column: col };
  }

  error(node: unknown, message: string, hint?: string, fallback?: SourcePosition): void {
    const position = this.pos(node, fallback);
    this.diagnostics.push({ severity: 'error', code: 'BULWARK_ERR_POLICY_INVALID', message, position, hint });
  }
}

type Fields = Map<string, { key: unknown; value: unknown }>;

/** Reads a mapping's pairs, reporting keys that are not allowed (typos in a security file must not pass). */
function fields(r: Reader, map: YAMLMap, allowed: readonly string[], what: string, fallback?: SourcePosition): Fields {
  const out: Fields = new Map();
  for (const pair of map.items) {
    const keyNode = pair.key;
    const key = isScalar(keyNode) ? String(keyNode.value) : undefined;
    if (key === undefined) {
      r.error(keyNode, `${what}: keys must be plain names`, undefined, fallback);
      continue;
    }
    if (!allowed.includes(key)) {
      r.error(keyNode, `${what}: unknown key "${key}"`, `allowed keys: ${allowed.join(', ')}`, fallback);
      continue;
    }
    out.set(key, { key: keyNode, value: pair.value });
  }
  return out;
}

function stringOf(r: Reader, node: unknown, what: string, fallback?: SourcePosition): string | undefined {
  if (isScalar(node) && typeof node.value === 'string') return node.value;
  if (isScalar(node) && node.value !== null && node.value !== undefined) {
    r.error(node, `${what} must be a string, got ${typeof node.value}`, 'quote it, e.g. "007"', fallback);
    return undefined;
  }
  r.error(node, `${what} must be a string`, undefined, fallback);
  return undefined;
}

function boolOf(r: Reader, node: unknown, what: string, fallback?: SourcePosition): boolean | undefined {
  if (isScalar(node) && typeof node.value === 'boolean') return node.value;
  r.error(node, `${what} must be true or false`, undefined, fallback);
  return undefined;
}

/** A string or a list of strings, as a list of [value, node]. */
function stringList(
  r: Reader,
  node: unknown,
  what: string,
  fallback?: SourcePosition,
): Array<{ value: string; node: unknown }> | undefined {
  const items = isSeq(node) ? node.items : [node];
  if (isSeq(node) && node.items.length === 0) {
    r.error(node, `${what} must not be an empty list`, 'remove the key instead', fallback);
    return undefined;
  }
  const out: Array<{ value: string; node: unknown }> = [];
  let ok = true;
  for (const item of items) {
    const v = stringOf(r, item, what, fallback);
    if (v === undefined) ok = false;
    else out.push({ value: v, node: item });
  }
  return ok ? out : undefined;
}

function textSet(r: Reader, node: unknown, what: string, fallback?: SourcePosition): TextSet | undefined {
  const list = stringList(r, node, what, fallback);
  if (!list) return undefined;
  const exact: string[] = [];
  const prefixes: string[] = [];
  for (const { value, node: item } of list) {
    if (value.length === 0) {
      r.error(item, `${what}: empty value`, undefined, fallback);
      return undefined;
    }
    const star = value.indexOf('*');
    if (star !== -1 && star !== value.length - 1) {
      r.error(item, `${what}: "*" is only allowed at the end (a prefix match)`, undefined, fallback);
      return undefined;
    }
    if (star === -1) exact.push(value);
    else prefixes.push(value.slice(0, -1));
  }
  return { exact: exact.slice(), prefixes: prefixes.slice() };
}

const SUBJECT_KEYS = [
  'users',
  'clients',
  'groups',
  'authenticators',
  'listeners',
  'addresses',
  'attributes',
  'superuser',
  'anonymous',
] as const;

/** `all`, or a mapping of conditions on the identity. */
function parseSubjects(r: Reader, node: unknown, what: string, fallback?: SourcePosition): SubjectSpec | undefined {
  if (isScalar(node) && node.value === 'all') return { all: true };
  if (!isMap(node)) {
    r.error(node, `${what}: subjects must be "all" or a mapping`, `keys: ${SUBJECT_KEYS.join(', ')}`, fallback);
    return undefined;
  }
  if (node.items.length === 0) {
    r.error(node, `${what}: subjects must not be empty`, 'write "subjects: all" to mean everyone', fallback);
    return undefined;
  }
  const f = fields(r, node, SUBJECT_KEYS, `${what} subjects`, fallback);
  const spec: SubjectSpec = { all: false };
  let ok = f.size === node.items.length;
  const text = (key: 'users' | 'clients' | 'groups' | 'authenticators' | 'listeners'): void => {
    const entry = f.get(key);
    if (!entry) return;
    const set = textSet(r, entry.value, `${what} subjects.${key}`, fallback);
    if (set) spec[key] = set;
    else ok = false;
  };
  text('users');
  text('clients');
  text('groups');
  text('authenticators');
  text('listeners');
  const addresses = f.get('addresses');
  if (addresses) {
    const list = stringList(r, addresses.value, `${what} subjects.addresses`, fallback);
    if (!list) ok = false;
    else {
      for (const { value, node: item } of list) {
        if (!parseCidr(value)) {
          r.error(item, `${what}: "${value}" is not an address or CIDR block`, 'e.g. 10.0.0.0/8 or ::1/128', fallback);
          ok = false;
        }
      }
      spec.addresses = list.map((x) => x.value);
    }
  }
  const attributes = f.get('attributes');
  if (attributes) {
    if (!isMap(attributes.value) || attributes.value.items.length === 0) {
      r.error(
        attributes.value ?? attributes.key,
        `${what}: attributes must be a non-empty mapping`,
        undefined,
        fallback,
      );
      ok = false;
    } else {
      const attrs: Record<string, TextSet> = {};
      for (const pair of attributes.value.items) {
        const name = isScalar(pair.key) ? String(pair.key.value) : '';
        const set = textSet(r, pair.value, `${what} attribute "${name}"`, fallback);
        if (!name || !set) ok = false;
        else attrs[name] = set;
      }
      spec.attributes = attrs;
    }
  }
  for (const key of ['superuser', 'anonymous'] as const) {
    const entry = f.get(key);
    if (!entry) continue;
    const b = boolOf(r, entry.value, `${what} subjects.${key}`, fallback);
    if (b === undefined) ok = false;
    else spec[key] = b;
  }
  return ok ? spec : undefined;
}

/** Parses `10.0.0.0/8`, `::1/128` or a bare address into what `net.BlockList.addSubnet` takes. */
export function parseCidr(text: string): { address: string; prefix: number; type: 'ipv4' | 'ipv6' } | undefined {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const family = isIP(address);
  if (family === 0) return undefined;
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return undefined;
    prefix = Number(p);
    if (prefix > max) return undefined;
  }
  return { address, prefix, type: family === 4 ? 'ipv4' : 'ipv6' };
}

const CONNECT_MIXED = 'connect rules have no topics; write a separate rule';

function parseActions(r: Reader, node: unknown, what: string, fallback?: SourcePosition): AccessAction[] | undefined {
  const list = stringList(r, node, `${what} actions`, fallback);
  if (!list) return undefined;
  const out: AccessAction[] = [];
  let connectNode: unknown;
  for (const { value, node: item } of list) {
    const action = ACTIONS.find((a) => a === value);
    if (!action) {
      r.error(
        item,
        `${what}: unknown action "${value}"`,
        'actions are connect, publish, subscribe and receive',
        fallback,
      );
      return undefined;
    }
    if (action === 'connect') connectNode ??= item;
    if (!out.includes(action)) out.push(action);
  }
  if (connectNode !== undefined && out.length > 1) {
    // A connect decision has no topic, so a rule granting both would mean two different things under one name.
    r.error(connectNode, `${what}: ${CONNECT_MIXED}`, 'e.g. "allow: connect" with the same subjects', fallback);
    return undefined;
  }
  return out;
}

function parseConditions(r: Reader, node: unknown, what: string, fallback?: SourcePosition): ConditionSpec | undefined {
  if (!isMap(node)) {
    r.error(node, `${what}: "when" must be a mapping`, 'keys: qos, retain, shared', fallback);
    return undefined;
  }
  const f = fields(r, node, ['qos', 'retain', 'shared'], `${what} when`, fallback);
  let ok = f.size === node.items.length;
  const out: ConditionSpec = {};
  const qos = f.get('qos');
  if (qos) {
    const items = isSeq(qos.value) ? qos.value.items : [qos.value];
    const levels: (0 | 1 | 2)[] = [];
    for (const item of items) {
      const v = isScalar(item) ? item.value : undefined;
      if (v === 0 || v === 1 || v === 2) {
        if (!levels.includes(v)) levels.push(v);
      } else {
        r.error(item, `${what}: qos must be 0, 1, 2 or a list of them`, undefined, fallback);
        ok = false;
      }
    }
    if (levels.length === 0 && ok) {
      r.error(qos.value, `${what}: qos must not be an empty list`, undefined, fallback);
      ok = false;
    }
    out.qos = levels;
  }
  for (const key of ['retain', 'shared'] as const) {
    const entry = f.get(key);
    if (!entry) continue;
    const b = boolOf(r, entry.value, `${what} when.${key}`, fallback);
    if (b === undefined) ok = false;
    else out[key] = b;
  }
  return ok ? out : undefined;
}

const RULE_KEYS = ['name', 'allow', 'deny', 'subjects', 'topics', 'when', 'why'] as const;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;

export interface RuleParseOptions {
  /** JWT claims: rules apply to the bearer only, so `subjects` may be omitted (meaning the bearer). */
  subjectsOptional?: boolean;
}

function parseRule(
  r: Reader,
  node: unknown,
  index: number,
  opts: RuleParseOptions,
  seen: Map<string, SourcePosition>,
): RuleSpec | undefined {
  const fallback: SourcePosition = { file: r.file, line: index + 1, column: 0 };
  const label = `rule ${index + 1}`;
  if (!isMap(node)) {
    r.error(node, `${label} must be a mapping`, 'each rule has name, allow or deny, subjects and topics', fallback);
    return undefined;
  }
  const position = r.pos(node, fallback) as SourcePosition;
  const f = fields(r, node, RULE_KEYS, label, fallback);
  let ok = f.size === node.items.length;
  const nameEntry = f.get('name');
  let name: string | undefined;
  if (!nameEntry) {
    r.error(node, `${label} has no name`, 'name every rule so decisions and reviews can refer to it', fallback);
    ok = false;
  } else {
    name = stringOf(r, nameEntry.value, `${label} name`, fallback);
    if (name !== undefined && !NAME_RE.test(name)) {
      r.error(nameEntry.value, `${label}: name "${name}" has characters outside [A-Za-z0-9_.:-]`, undefined, fallback);
      ok = false;
    } else if (name !== undefined && RESERVED_RULE_NAMES.includes(name)) {
      r.error(nameEntry.value, `${label}: "${name}" is a reserved name`, undefined, fallback);
      ok = false;
    } else if (name !== undefined) {
      const earlier = seen.get(name);
      if (earlier) {
        r.error(nameEntry.value, `duplicate rule name "${name}"`, `first used at line ${earlier.line}`, fallback);
        ok = false;
      } else seen.set(name, r.pos(nameEntry.value, fallback) as SourcePosition);
    }
    if (name === undefined) ok = false;
  }
  const what = name ? `rule "${name}"` : label;
  const allow = f.get('allow');
  const deny = f.get('deny');
  let effect: Effect | undefined;
  let actions: AccessAction[] | undefined;
  if (allow && deny) {
    r.error(deny.key, `${what} has both allow and deny`, 'split it into two rules', fallback);
    ok = false;
  } else if (!allow && !deny) {
    r.error(node, `${what} has neither allow nor deny`, 'e.g. "allow: [publish, subscribe]"', fallback);
    ok = false;
  } else {
    effect = allow ? 'allow' : 'deny';
    actions = parseActions(r, (allow ?? deny)?.value, what, fallback);
    if (!actions) ok = false;
  }
  const subjectsEntry = f.get('subjects');
  let subjects: SubjectSpec | undefined;
  if (!subjectsEntry) {
    if (opts.subjectsOptional) subjects = { all: true };
    else {
      r.error(node, `${what} has no subjects`, 'write "subjects: all" to mean everyone', fallback);
      ok = false;
    }
  } else {
    subjects = parseSubjects(r, subjectsEntry.value, what, fallback);
    if (!subjects) ok = false;
  }
  const topicsEntry = f.get('topics');
  const topics: string[] = [];
  const topicPositions: SourcePosition[] = [];
  const isConnect = actions !== undefined && actions[0] === 'connect';
  if (isConnect) {
    if (topicsEntry) {
      r.error(topicsEntry.key, `${what}: connect rules have no topics`, 'remove "topics:"', fallback);
      ok = false;
    }
    const whenEntry = f.get('when');
    if (whenEntry) {
      r.error(whenEntry.key, `${what}: connect rules have no conditions`, 'remove "when:"', fallback);
      ok = false;
    }
  } else if (!topicsEntry) {
    r.error(node, `${what} has no topics`, 'e.g. topics: ["sensors/${username}/#"]', fallback);
    ok = false;
  } else if (isScalar(topicsEntry.value) && topicsEntry.value.value === null) {
    r.error(topicsEntry.key, `${what}: topics is empty`, QUOTE_HINT, fallback);
    ok = false;
  } else {
    const items = isSeq(topicsEntry.value) ? topicsEntry.value.items : [topicsEntry.value];
    if (items.length === 0) {
      r.error(topicsEntry.value, `${what}: topics must not be an empty list`, undefined, fallback);
      ok = false;
    }
    for (const item of items) {
      if (isScalar(item) && item.value === null) {
        r.error(item ?? topicsEntry.key, `${what}: empty topic`, QUOTE_HINT, fallback);
        ok = false;
        continue;
      }
      const t = stringOf(r, item, `${what} topic`, fallback);
      if (t === undefined) {
        ok = false;
        continue;
      }
      const parsed = parseTopicPattern(t);
      if (!parsed.ok) {
        r.error(item, `${what}: ${parsed.message}`, parsed.hint, fallback);
        ok = false;
        continue;
      }
      topics.push(t);
      topicPositions.push(r.pos(item, fallback) as SourcePosition);
    }
  }
  let conditions: ConditionSpec = {};
  const when = isConnect ? undefined : f.get('when');
  if (when) {
    const c = parseConditions(r, when.value, what, fallback);
    if (c) conditions = c;
    else ok = false;
  }
  let why: string | undefined;
  const whyEntry = f.get('why');
  if (whyEntry) {
    why = stringOf(r, whyEntry.value, `${what} why`, fallback);
    if (why === undefined) ok = false;
  }
  if (!ok || !name || !effect || !actions || !subjects) return undefined;
  // Exact-size copies of the lists built by push, which keep room for 16 entries: a loaded policy keeps every
  // rule for its lifetime (decisions name them, `explain` shows them).
  return {
    name,
    effect,
    actions: actions.slice(),
    subjects,
    topics: topics.slice(),
    topicPositions: topicPositions.slice(),
    conditions,
    why,
    position,
  };
}

function parseRules(r: Reader, node: unknown, opts: RuleParseOptions, seen: Map<string, SourcePosition>): RuleSpec[] {
  if (!isSeq(node)) {
    r.error(node, '"rules" must be a list of rules');
    return [];
  }
  const out: RuleSpec[] = [];
  node.items.forEach((item, i) => {
    const rule = parseRule(r, item, i, opts, seen);
    if (rule) out.push(rule);
  });
  return out;
}

const IDENTITY_KEYS = [
  'user',
  'client',
  'groups',
  'attributes',
  'cert_cn',
  'authenticator',
  'listener',
  'address',
  'superuser',
  'anonymous',
] as const;
const CASE_KEYS = [
  'name',
  'identity',
  'connect',
  'publish',
  'subscribe',
  'receive',
  'qos',
  'retain',
  'expect',
  'rule',
] as const;

export interface RequestSubject {
  identity: Identity;
  listener: string;
  peerAddress: string;
}

/** The identity a case or `policy explain` describes; anonymous unless a user is given. */
export function buildIdentity(input: {
  user?: string;
  client?: string;
  groups?: readonly string[];
  attributes?: Record<string, string>;
  certCn?: string;
  authenticator?: string;
  superuser?: boolean;
  anonymous?: boolean;
}): Identity {
  const attributes: Record<string, string> = { ...(input.attributes ?? {}) };
  if (input.certCn !== undefined) attributes['cert.cn'] = input.certCn;
  const anonymous = input.anonymous ?? input.user === undefined;
  return {
    clientId: input.client ?? 'case-client',
    username: input.user,
    groups: input.groups ?? [],
    attributes,
    superuser: input.superuser ?? false,
    anonymous,
    authenticator: input.authenticator ?? (anonymous ? 'anonymous' : 'case'),
  };
}

function parseCaseIdentity(r: Reader, node: unknown, what: string): RequestSubject | undefined {
  if (node === undefined) return { identity: buildIdentity({}), listener: 'default', peerAddress: '127.0.0.1' };
  if (!isMap(node)) {
    r.error(node, `${what}: identity must be a mapping`, `keys: ${IDENTITY_KEYS.join(', ')}`);
    return undefined;
  }
  const f = fields(r, node, IDENTITY_KEYS, `${what} identity`);
  let ok = f.size === node.items.length;
  const str = (key: string): string | undefined => {
    const e = f.get(key);
    if (!e) return undefined;
    const v = stringOf(r, e.value, `${what} identity.${key}`);
    if (v === undefined) ok = false;
    return v;
  };
  const bool = (key: string): boolean | undefined => {
    const e = f.get(key);
    if (!e) return undefined;
    const v = boolOf(r, e.value, `${what} identity.${key}`);
    if (v === undefined) ok = false;
    return v;
  };
  let groups: string[] | undefined;
  const g = f.get('groups');
  if (g) {
    if (isSeq(g.value) && g.value.items.length === 0) groups = [];
    else {
      const list = stringList(r, g.value, `${what} identity.groups`);
      if (!list) ok = false;
      else groups = list.map((x) => x.value);
    }
  }
  let attributes: Record<string, string> | undefined;
  const a = f.get('attributes');
  if (a) {
    if (!isMap(a.value)) {
      r.error(a.value ?? a.key, `${what}: identity.attributes must be a mapping`);
      ok = false;
    } else {
      attributes = {};
      for (const pair of a.value.items) {
        const name = isScalar(pair.key) ? String(pair.key.value) : '';
        const v = stringOf(r, pair.value, `${what} identity.attributes.${name}`);
        if (v === undefined) ok = false;
        else attributes[name] = v;
      }
    }
  }
  const address = str('address');
  if (address !== undefined && isIP(address) === 0) {
    r.error(f.get('address')?.value, `${what}: identity.address "${address}" is not an IP address`);
    ok = false;
  }
  const identity = buildIdentity({
    user: str('user'),
    client: str('client'),
    groups,
    attributes,
    certCn: str('cert_cn'),
    authenticator: str('authenticator'),
    superuser: bool('superuser'),
    anonymous: bool('anonymous'),
  });
  if (!ok) return undefined;
  return { identity, listener: str('listener') ?? 'default', peerAddress: address ?? '127.0.0.1' };
}

/** Splits `$share/group/filter` [MQTT-4.8.2-1] into its group and filter. */
export function splitShared(filter: string): { topic: string; sharedGroup: string | undefined } | undefined {
  if (!filter.startsWith('$share/')) return { topic: filter, sharedGroup: undefined };
  const rest = filter.slice(7);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  const group = rest.slice(0, slash);
  if (group.includes('+') || group.includes('#')) return undefined;
  return { topic: rest.slice(slash + 1), sharedGroup: group };
}

function parseCase(r: Reader, node: unknown, index: number): CaseSpec | undefined {
  const label = `case ${index + 1}`;
  if (!isMap(node)) {
    r.error(node, `${label} must be a mapping`);
    return undefined;
  }
  const position = r.pos(node, { file: r.file, line: 0, column: 0 }) as SourcePosition;
  const f = fields(r, node, CASE_KEYS, label);
  let ok = f.size === node.items.length;
  const nameEntry = f.get('name');
  const name = nameEntry ? stringOf(r, nameEntry.value, `${label} name`) : undefined;
  if (!nameEntry) r.error(node, `${label} has no name`, 'describe the case as a sentence');
  if (name === undefined) ok = false;
  const what = name ? `case "${name}"` : label;
  const subject = parseCaseIdentity(r, f.get('identity')?.value, what);
  if (!subject) ok = false;
  const present = ACTIONS.filter((a) => f.has(a));
  let action: AccessAction | undefined;
  let topic: string | undefined;
  let sharedGroup: string | undefined;
  if (present.length !== 1) {
    r.error(
      node,
      `${what} needs exactly one of connect, publish, subscribe, receive`,
      'e.g. "publish: sensors/a/temp" or "connect: true"',
    );
    ok = false;
  } else if (present[0] === 'connect') {
    action = 'connect';
    topic = '';
    const entry = f.get('connect');
    const v = boolOf(r, entry?.value, `${what} connect`);
    if (v === undefined) ok = false;
    else if (!v) {
      r.error(entry?.value, `${what}: write "connect: true" and say the outcome with expect`, 'expect: deny');
      ok = false;
    }
    for (const key of ['qos', 'retain'] as const) {
      const extra = f.get(key);
      if (extra) {
        r.error(extra.key, `${what}: ${key} does not apply to a connect case`, `remove "${key}:"`);
        ok = false;
      }
    }
  } else {
    action = present[0] as AccessAction;
    const entry = f.get(action);
    const raw = stringOf(r, entry?.value, `${what} ${action}`);
    if (raw === undefined) ok = false;
    else if (action === 'subscribe') {
      const split = splitShared(raw);
      if (!split || !isValidFilter(split.topic)) {
        r.error(entry?.value, `${what}: "${raw}" is not a valid topic filter`, QUOTE_HINT);
        ok = false;
      } else {
        topic = split.topic;
        sharedGroup = split.sharedGroup;
      }
    } else if (!isValidTopicName(raw)) {
      r.error(entry?.value, `${what}: "${raw}" is not a valid topic name`, 'names carry no wildcards');
      ok = false;
    } else topic = raw;
  }
  let qos: 0 | 1 | 2 = 0;
  const qosEntry = f.get('qos');
  if (qosEntry) {
    const v = isScalar(qosEntry.value) ? qosEntry.value.value : undefined;
    if (v === 0 || v === 1 || v === 2) qos = v;
    else {
      r.error(qosEntry.value, `${what}: qos must be 0, 1 or 2`);
      ok = false;
    }
  }
  let retain = false;
  const retainEntry = f.get('retain');
  if (retainEntry) {
    const b = boolOf(r, retainEntry.value, `${what} retain`);
    if (b === undefined) ok = false;
    else retain = b;
  }
  let expect: Effect | undefined;
  const expectEntry = f.get('expect');
  if (!expectEntry) {
    r.error(node, `${what} has no expect`, 'expect: allow or expect: deny');
    ok = false;
  } else {
    const v = isScalar(expectEntry.value) ? expectEntry.value.value : undefined;
    if (v === 'allow' || v === 'deny') expect = v;
    else {
      r.error(expectEntry.value, `${what}: expect must be allow or deny`);
      ok = false;
    }
  }
  const ruleEntry = f.get('rule');
  const rule = ruleEntry ? stringOf(r, ruleEntry.value, `${what} rule`) : undefined;
  if (ruleEntry && rule === undefined) ok = false;
  if (!ok || !name || !subject || !action || topic === undefined || !expect) return undefined;
  return { name, ...subject, action, topic, qos, retain, sharedGroup, expect, rule, position };
}

function parseCases(r: Reader, node: unknown): CaseSpec[] {
  if (!isSeq(node)) {
    r.error(node, '"cases" must be a list of cases');
    return [];
  }
  const out: CaseSpec[] = [];
  node.items.forEach((item, i) => {
    const c = parseCase(r, item, i);
    if (c) out.push(c);
  });
  return out;
}

function readYaml(text: string, r: Reader, lines: LineCounter): Document.Parsed | undefined {
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  for (const e of [...doc.errors, ...doc.warnings]) {
    const lp = e.linePos?.[0];
    r.diagnostics.push({
      severity: doc.errors.includes(e) ? 'error' : 'warning',
      code: 'BULWARK_ERR_POLICY_PARSE',
      message: (e.message.split('\n')[0] as string).replace(/ at line \d+, column \d+:?$/, ''),
      position: lp ? { file: r.file, line: lp.line, column: lp.col } : { file: r.file, line: 1, column: 1 },
    });
  }
  return doc.errors.length > 0 ? undefined : doc;
}

function topMap(r: Reader, doc: Document.Parsed, what: string): YAMLMap | undefined {
  const root: Node | null = doc.contents;
  if (!isMap(root)) {
    r.error(root, `${what} must be a mapping at the top level`, undefined, { file: r.file, line: 1, column: 1 });
    return undefined;
  }
  return root;
}

function checkVersion(r: Reader, f: Fields): void {
  const v = f.get('version');
  if (v && !(isScalar(v.value) && v.value.value === 1)) {
    r.error(v.value, 'unsupported policy version', 'this broker reads "version: 1"');
  }
}

/** Parses one policy file's text. Positions are 1-based, as editors show them. */
export function parsePolicyText(text: string, file: string): ParsedPolicyFile {
  const lines = new LineCounter();
  const r = new Reader(file, lines);
  const result: ParsedPolicyFile = { file, rules: [], cases: [], diagnostics: r.diagnostics };
  const doc = readYaml(text, r, lines);
  if (!doc) return result;
  const root = topMap(r, doc, 'a policy file');
  if (!root) return result;
  const f = fields(r, root, ['version', 'superusers', 'rules', 'cases'], 'policy file', {
    file,
    line: 1,
    column: 1,
  });
  checkVersion(r, f);
  const su = f.get('superusers');
  if (su) {
    const b = boolOf(r, su.value, 'superusers');
    if (b !== undefined) result.superusers = { value: b, position: r.pos(su.key) as SourcePosition };
  }
  const rules = f.get('rules');
  if (!rules) r.error(root, 'a policy file lists its rules under "rules:"', undefined, { file, line: 1, column: 1 });
  else result.rules = parseRules(r, rules.value, {}, new Map());
  const cases = f.get('cases');
  if (cases) result.cases = parseCases(r, cases.value);
  return result;
}

/** Parses a sibling `*.cases.yaml` file: `cases:` only. */
export function parseCasesText(text: string, file: string): { cases: CaseSpec[]; diagnostics: Diagnostic[] } {
  const lines = new LineCounter();
  const r = new Reader(file, lines);
  const doc = readYaml(text, r, lines);
  if (!doc) return { cases: [], diagnostics: r.diagnostics };
  const root = topMap(r, doc, 'a cases file');
  if (!root) return { cases: [], diagnostics: r.diagnostics };
  const f = fields(r, root, ['version', 'cases'], 'cases file', { file, line: 1, column: 1 });
  checkVersion(r, f);
  const cases = f.get('cases');
  if (!cases) {
    r.error(root, 'a cases file lists its cases under "cases:"', undefined, { file, line: 1, column: 1 });
    return { cases: [], diagnostics: r.diagnostics };
  }
  return { cases: parseCases(r, cases.value), diagnostics: r.diagnostics };
}

/**
 * Parses rules that arrived as data rather than text (a JWT claim): a list of rules, or `{ rules: [...] }`.
 * There is no file, so positions name `origin` and the rule's index as the line.
 */
export function parseRuleData(value: unknown, origin: string): { rules: RuleSpec[]; diagnostics: Diagnostic[] } {
  const r = new Reader(origin, undefined);
  const doc = new Document(value);
  let node: unknown = doc.contents;
  if (isMap(node)) {
    const f = fields(r, node, ['rules'], origin, { file: origin, line: 0, column: 0 });
    node = f.get('rules')?.value;
  }
  if (!isSeq(node)) {
    r.error(node, `${origin} must be a list of rules`, undefined, { file: origin, line: 0, column: 0 });
    return { rules: [], diagnostics: r.diagnostics };
  }
  const rules = parseRules(r, node, { subjectsOptional: true }, new Map());
  return { rules, diagnostics: r.diagnostics };
}
