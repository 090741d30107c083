import type { Identity } from '../authn/types.js';

/**
 * Topic patterns as rules write them: MQTT topic filters whose levels may also be placeholders filled from the
 * client's identity. Placeholders must fill a whole level (`a/${username}/b`, never `a/x${username}`).
 */
export const LEVEL_LITERAL = 0;
export const LEVEL_PLUS = 1;
export const LEVEL_HASH = 2;
export const LEVEL_USERNAME = 3;
export const LEVEL_CLIENTID = 4;
export const LEVEL_GROUP = 5;
export const LEVEL_ATTRIBUTE = 6;

export interface TopicPattern {
  /** The pattern as written, for messages. */
  readonly source: string;
  /** One entry per level: a LEVEL_* constant. */
  readonly kinds: readonly number[];
  /** The literal text for LEVEL_LITERAL, the attribute name for LEVEL_ATTRIBUTE, '' otherwise. */
  readonly values: readonly string[];
  readonly hasPlaceholder: boolean;
}

export type PatternResult = { ok: true; pattern: TopicPattern } | { ok: false; message: string; hint?: string };

const PLACEHOLDER = /^\$\{([a-z]+(?:\.[A-Za-z0-9_.:-]+)?)\}$/;

/** The placeholder names the grammar accepts, for messages and docs. */
export const PLACEHOLDER_NAMES = ['${username}', '${clientid}', '${group}', '${cert.cn}', '${attr.NAME}'] as const;

/** Parses a rule's topic pattern; every MQTT filter rule [MQTT-4.7.1-2], [MQTT-4.7.1-3] applies. */
export function parseTopicPattern(source: string): PatternResult {
  if (source.length === 0) return { ok: false, message: 'empty topic filter', hint: 'a filter has at least one level' };
  if (source.includes('\u0000')) return { ok: false, message: 'topic filter contains U+0000' };
  const parts = source.split('/');
  const kinds: number[] = [];
  const values: string[] = [];
  let hasPlaceholder = false;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string;
    if (part === '#') {
      if (i !== parts.length - 1) {
        return { ok: false, message: `'#' must be the last level in "${source}"`, hint: '[MQTT-4.7.1-2]' };
      }
      kinds.push(LEVEL_HASH);
      values.push('');
      continue;
    }
    if (part === '+') {
      kinds.push(LEVEL_PLUS);
      values.push('');
      continue;
    }
    if (part.includes('#') || part.includes('+')) {
      return {
        ok: false,
        message: `wildcard inside a level in "${source}"`,
        hint: "'+' and '#' must occupy a whole level [MQTT-4.7.1-3]",
      };
    }
    if (part.includes('${')) {
      const m = PLACEHOLDER.exec(part);
      if (!m) {
        return {
          ok: false,
          message: `placeholder must fill a whole topic level in "${source}"`,
          hint: `write "a/\${username}/b", not "a/x\${username}"; known placeholders: ${PLACEHOLDER_NAMES.join(', ')}`,
        };
      }
      const name = m[1] as string;
      hasPlaceholder = true;
      if (name === 'username') {
        kinds.push(LEVEL_USERNAME);
        values.push('');
      } else if (name === 'clientid') {
        kinds.push(LEVEL_CLIENTID);
        values.push('');
      } else if (name === 'group') {
        kinds.push(LEVEL_GROUP);
        values.push('');
      } else if (name === 'cert.cn') {
        kinds.push(LEVEL_ATTRIBUTE);
        values.push('cert.cn');
      } else if (name.startsWith('attr.') && name.length > 5) {
        kinds.push(LEVEL_ATTRIBUTE);
        values.push(name.slice(5));
      } else {
        return {
          ok: false,
          message: `unknown placeholder "\${${name}}" in "${source}"`,
          hint: `known placeholders: ${PLACEHOLDER_NAMES.join(', ')}`,
        };
      }
      continue;
    }
    kinds.push(LEVEL_LITERAL);
    values.push(part);
  }
  // Exact-size copies: an array grown by push keeps room for 16 elements, and a policy keeps every pattern it
  // compiles for its lifetime.
  return { ok: true, pattern: { source, kinds: kinds.slice(), values: values.slice(), hasPlaceholder } };
}

/** Validates a topic filter as a client sends it in SUBSCRIBE (no placeholders). */
export function isValidFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\u0000')) return false;
  const parts = filter.split('/');
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as string;
    if (p === '#') {
      if (i !== parts.length - 1) return false;
    } else if (p !== '+' && (p.includes('+') || p.includes('#'))) return false;
  }
  return true;
}

/** Validates a topic name as PUBLISH carries it [MQTT-3.3.2-2]. */
export function isValidTopicName(topic: string): boolean {
  return topic.length > 0 && !topic.includes('+') && !topic.includes('#') && !topic.includes('\u0000');
}

function hasForbidden(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    // '+' 43, '#' 35, '/' 47, NUL 0
    if (c === 43 || c === 35 || c === 47 || c === 0) return true;
  }
  return false;
}

/**
 * Whether an identity value may fill a level. Mosquitto's `acl__pre_check` refuses `+`, `#` and `/` in ids used for
 * substitution; we also refuse empty values and, in the first level, a leading `$`, so that a user called `$SYS`
 * cannot turn `${username}/#` into a grant on broker topics.
 */
export function usableValue(value: string | undefined, firstLevel: boolean): value is string {
  if (value === undefined || value.length === 0) return false;
  if (hasForbidden(value)) return false;
  return !(firstLevel && value.charCodeAt(0) === 36);
}

function resolveSingle(kind: number, attr: string, identity: Identity, firstLevel: boolean): string | undefined {
  const v =
    kind === LEVEL_USERNAME
      ? identity.username
      : kind === LEVEL_CLIENTID
        ? identity.clientId
        : identity.attributes[attr];
  return usableValue(v, firstLevel) ? v : undefined;
}

/** Whether a placeholder level equals `level` for this identity. `${group}` matches when any group does. */
function placeholderEquals(kind: number, attr: string, level: string, identity: Identity, first: boolean): boolean {
  if (kind === LEVEL_GROUP) {
    const groups = identity.groups;
    for (let g = 0; g < groups.length; g++) {
      const v = groups[g];
      if (v === level && usableValue(v, first)) return true;
    }
    return false;
  }
  const v = resolveSingle(kind, attr, identity, first);
  return v !== undefined && v === level;
}

/** Whether a placeholder level can be filled at all for this identity. */
function placeholderFillable(kind: number, attr: string, identity: Identity, first: boolean): boolean {
  if (kind === LEVEL_GROUP) {
    for (const g of identity.groups) if (usableValue(g, first)) return true;
    return false;
  }
  return resolveSingle(kind, attr, identity, first) !== undefined;
}

function isDollar(level: string | undefined): boolean {
  return level !== undefined && level.charCodeAt(0) === 36;
}

/**
 * Publish and receive: does the pattern match this topic name? A leading `+` or `#` never matches a topic that
 * starts with `$` [MQTT-4.7.2-1], so `$SYS/...` is matched only by a rule that names it.
 */
export function matchesName(p: TopicPattern, levels: readonly string[], identity: Identity): boolean {
  const kinds = p.kinds;
  const n = kinds.length;
  for (let i = 0; i < n; i++) {
    const k = kinds[i];
    if (k === LEVEL_HASH) return !(i === 0 && isDollar(levels[0]));
    if (i >= levels.length) return false;
    const level = levels[i] as string;
    if (k === LEVEL_PLUS) {
      if (i === 0 && isDollar(level)) return false;
    } else if (k === LEVEL_LITERAL) {
      if (level !== p.values[i]) return false;
    } else if (!placeholderEquals(k as number, p.values[i] as string, level, identity, i === 0)) return false;
  }
  return n === levels.length;
}

/**
 * Subscribe, for allow rules: does the pattern cover the requested filter, i.e. is every topic the filter can
 * match also matched by the pattern? A literal or placeholder level never covers a wildcard.
 */
export function coversFilter(p: TopicPattern, levels: readonly string[], identity: Identity): boolean {
  const kinds = p.kinds;
  const n = kinds.length;
  for (let i = 0; i < n; i++) {
    const k = kinds[i];
    if (k === LEVEL_HASH) return !(i === 0 && isDollar(levels[0]));
    if (i >= levels.length) return false;
    const level = levels[i] as string;
    if (k === LEVEL_PLUS) {
      if (level === '#') return false;
      if (i === 0 && isDollar(level)) return false;
    } else {
      if (level === '+' || level === '#') return false;
      if (k === LEVEL_LITERAL) {
        if (level !== p.values[i]) return false;
      } else if (!placeholderEquals(k as number, p.values[i] as string, level, identity, i === 0)) return false;
    }
  }
  return n === levels.length;
}

/**
 * Subscribe, for deny rules: could the pattern and the requested filter both match some topic? A deny applies to
 * a subscription that overlaps it at all, so `deny secret/#` refuses a subscription to `#` (fail closed).
 */
export function overlapsFilter(p: TopicPattern, levels: readonly string[], identity: Identity): boolean {
  const kinds = p.kinds;
  const n = kinds.length;
  const m = levels.length;
  for (let i = 0; ; i++) {
    const k = i < n ? kinds[i] : undefined;
    const level = i < m ? levels[i] : undefined;
    if (k === LEVEL_HASH) return !(i === 0 && level !== undefined && level !== '+' && isDollar(level));
    if (level === '#') {
      if (k === undefined) return true;
      if (i === 0 && k === LEVEL_LITERAL && isDollar(p.values[0])) return false;
      if (k === LEVEL_LITERAL || k === LEVEL_PLUS) return true;
      return placeholderFillable(k, p.values[i] as string, identity, i === 0);
    }
    if (k === undefined || level === undefined) return k === undefined && level === undefined;
    if (k === LEVEL_PLUS) {
      if (i === 0 && level !== '+' && isDollar(level)) return false;
      continue;
    }
    if (level === '+') {
      if (k === LEVEL_LITERAL) {
        if (i === 0 && isDollar(p.values[0])) return false;
        continue;
      }
      if (!placeholderFillable(k, p.values[i] as string, identity, i === 0)) return false;
      continue;
    }
    if (k === LEVEL_LITERAL) {
      if (level !== p.values[i]) return false;
    } else if (!placeholderEquals(k, p.values[i] as string, level, identity, i === 0)) return false;
  }
}

/**
 * Static coverage between two patterns, for `policy check`'s shadowing warnings: true when `a` matches at least
 * every topic `b` matches, for every identity. Placeholders are opaque: one covers only the same placeholder.
 */
export function patternCovers(a: TopicPattern, b: TopicPattern): boolean {
  const n = a.kinds.length;
  for (let i = 0; i < n; i++) {
    const k = a.kinds[i];
    const bk = b.kinds[i];
    const bFirstDollar = i === 0 && b.kinds[0] === LEVEL_LITERAL && isDollar(b.values[0]);
    if (k === LEVEL_HASH) return !bFirstDollar;
    if (bk === undefined || bk === LEVEL_HASH) return false;
    if (k === LEVEL_PLUS) {
      if (bFirstDollar) return false;
      continue;
    }
    if (bk !== k || b.values[i] !== a.values[i]) return false;
  }
  return n === b.kinds.length;
}
