/**
 * Topic name and topic filter rules of MQTT 3.1.1 / 5.0 section 4.7, and matching.
 * These run for every PUBLISH, so they avoid regexes and allocations.
 */

export const MAX_TOPIC_BYTES = 65_535;

export type TopicProblem = 'empty' | 'tooLong' | 'nullCharacter' | 'wildcard' | 'badWildcard';

const PLUS = 0x2b;
const HASH = 0x23;
const SLASH = 0x2f;

/**
 * [MQTT-4.7.3-1] non-empty, [MQTT-4.7.1-1] no wildcards in a topic name, [MQTT-1.5.4-2] no U+0000.
 * Ill-formed UTF-8 in a PUBLISH topic is refused from its bytes by the framer, so U+FFFD here is a real character.
 */
export function checkTopicName(topic: string, maxLength = MAX_TOPIC_BYTES): TopicProblem | undefined {
  const length = topic.length;
  if (length === 0) return 'empty';
  if (length > maxLength) return 'tooLong';
  for (let i = 0; i < length; i++) {
    const c = topic.charCodeAt(i);
    if (c === PLUS || c === HASH) return 'wildcard';
    if (c === 0) return 'nullCharacter';
  }
  return undefined;
}

/**
 * [MQTT-4.7.1-2] `#` last and alone in its level; [MQTT-4.7.1-3] `+` alone in its level. Ill-formed UTF-8 in a
 * SUBSCRIBE or UNSUBSCRIBE is refused from its bytes by the codec, as a malformed packet, so U+FFFD here is a real
 * character.
 */
export function checkTopicFilter(filter: string, maxLength = MAX_TOPIC_BYTES): TopicProblem | undefined {
  const length = filter.length;
  if (length === 0) return 'empty';
  if (length > maxLength) return 'tooLong';
  for (let i = 0; i < length; i++) {
    const c = filter.charCodeAt(i);
    if (c === 0) return 'nullCharacter';
    if (c === PLUS) {
      const alone =
        (i === 0 || filter.charCodeAt(i - 1) === SLASH) && (i === length - 1 || filter.charCodeAt(i + 1) === SLASH);
      if (!alone) return 'badWildcard';
    } else if (c === HASH) {
      if (i !== length - 1 || (i > 0 && filter.charCodeAt(i - 1) !== SLASH)) return 'badWildcard';
    }
  }
  return undefined;
}

/** Why a filter (the part after `$share/{group}/`) cannot be subscribed to under these limits, or undefined. */
export function filterProblem(filter: string, maxLength: number, maxLevels: number): string | undefined {
  const problem = checkTopicFilter(filter, maxLength);
  if (problem !== undefined) return problem;
  return filter.split('/').length > maxLevels ? 'too many levels' : undefined;
}

export function hasWildcard(filter: string): boolean {
  return filter.includes('+') || filter.includes('#');
}

/** Splits `$share/group/filter` into its parts; undefined when the filter is not a shared subscription. */
export interface SharedFilter {
  group: string;
  filter: string;
}

export type SharedFilterResult =
  { kind: 'plain' } | { kind: 'shared'; shared: SharedFilter } | { kind: 'invalid'; why: string };

export function parseSharedFilter(filter: string): SharedFilterResult {
  if (!filter.startsWith('$share/')) return { kind: 'plain' };
  const rest = filter.slice('$share/'.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return { kind: 'invalid', why: 'a shared subscription needs $share/{group}/{filter}' };
  const group = rest.slice(0, slash);
  // [MQTT-4.8.2-2] the share name must not contain "/", "+" or "#"
  if (group.includes('+') || group.includes('#'))
    return { kind: 'invalid', why: 'share name must not contain wildcards' };
  const inner = rest.slice(slash + 1);
  if (inner.length === 0) return { kind: 'invalid', why: 'shared subscription has an empty topic filter' };
  return { kind: 'shared', shared: { group, filter: inner } };
}

/**
 * True when `topic` matches `filter`. [MQTT-4.7.2-1] a filter starting with a wildcard does not match topics
 * starting with `$`. Used by the retained store and tests; the subscription tree walks levels instead.
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.charCodeAt(0) === 0x24 /* $ */ && (filter.charCodeAt(0) === PLUS || filter.charCodeAt(0) === HASH)) {
    return false;
  }
  let f = 0;
  let t = 0;
  const fl = filter.length;
  const tl = topic.length;
  while (f < fl) {
    const c = filter.charCodeAt(f);
    if (c === HASH) return true;
    if (c === PLUS) {
      while (t < tl && topic.charCodeAt(t) !== SLASH) t++;
      f++;
    } else {
      if (t >= tl) {
        // "a/#" also matches "a": the remaining filter is exactly "/#"
        return f + 2 === fl && c === SLASH && filter.charCodeAt(f + 1) === HASH;
      }
      if (topic.charCodeAt(t) !== c) return false;
      f++;
      t++;
    }
    if (f === fl) return t === tl;
  }
  return t === tl;
}
