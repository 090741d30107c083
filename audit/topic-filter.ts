/**
 * MQTT topic filter matching for `bulwark audit query --topic` (MQTT 5 section 4.7). `+` matches one level, a
 * trailing `#` matches the parent and every level below it, and a leading wildcard does not match a topic that
 * starts with `$` [MQTT-4.7.2-1]. A record's topic that itself holds wildcards (a denied SUBSCRIBE's filter) is
 * compared level by level as literal text.
 */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    const level = f[i] as string;
    if (level === '#') return i === f.length - 1;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

/** A filter as `--topic` accepts it: `#` only as the whole last level, `+` only as a whole level [MQTT-4.7.1-1/2]. */
export function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0) return false;
  const levels = filter.split('/');
  return levels.every((level, i) => {
    if (level.includes('#')) return level === '#' && i === levels.length - 1;
    if (level.includes('+')) return level === '+';
    return true;
  });
}
