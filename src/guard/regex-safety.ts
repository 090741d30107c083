/**
 * A cheap, conservative screen for regular expressions that can backtrack catastrophically. Patterns in the block
 * list run against attacker-chosen client ids and usernames on every CONNECT, before authentication, so one bad
 * pattern would let anyone stall the event loop. The screen refuses:
 * - back-references (`\1`, `\k<name>`): matching with them is NP-hard;
 * - a repeated group that itself contains a repetition or an alternation (`(a+)+`, `(a|ab)*`): the classic
 *   exponential shapes;
 * - more than three unbounded quantifiers (`.*a.*b.*c.*d`): each adds a polynomial factor.
 * It is a heuristic, not a proof; the length limit on patterns and on the block list's regex count bounds the rest.
 */
export type RegexScreen = { ok: true; regex: RegExp } | { ok: false; reason: string };

interface GroupState {
  repeats: boolean;
  alternates: boolean;
}

const MAX_UNBOUNDED = 3;

/** Reads a quantifier at `i`; returns its length and whether it repeats (more than once), or undefined. */
function readQuantifier(
  source: string,
  i: number,
): { length: number; repeats: boolean; unbounded: boolean } | undefined {
  const c = source[i];
  let length: number;
  let repeats = false;
  let unbounded = false;
  if (c === '*' || c === '+') {
    length = 1;
    repeats = true;
    unbounded = true;
  } else if (c === '?') length = 1;
  else if (c === '{') {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(source.slice(i));
    if (m === null) return undefined;
    length = m[0].length;
    const min = Number(m[1]);
    const max = m[2] === undefined ? min : m[3] === '' ? Number.POSITIVE_INFINITY : Number(m[3]);
    repeats = max > 1;
    unbounded = max === Number.POSITIVE_INFINITY;
  } else return undefined;
  if (source[i + length] === '?') length += 1;
  return { length, repeats, unbounded };
}

export function screenRegex(source: string, maxLength: number): RegexScreen {
  if (source.length === 0) return { ok: false, reason: 'empty pattern' };
  if (source.length > maxLength) return { ok: false, reason: `pattern longer than ${maxLength} characters` };
  let regex: RegExp;
  try {
    regex = new RegExp(source);
  } catch (error) {
    return {
      ok: false,
      reason: `not a valid regular expression: ${error instanceof Error ? error.message : String(error)}`,
    };
  }
  const stack: GroupState[] = [{ repeats: false, alternates: false }];
  let unboundedCount = 0;
  for (let i = 0; i < source.length; i += 1) {
    const c = source[i];
    if (c === '\\') {
      const next = source[i + 1] ?? '';
      if (/[1-9]/.test(next) || next === 'k') return { ok: false, reason: 'back-references are not allowed' };
      // The escaped character is the atom; a quantifier may follow it (`\w+`).
      i += 1;
    } else if (c === '[') {
      for (i += 1; i < source.length && source[i] !== ']'; i += 1) if (source[i] === '\\') i += 1;
    } else if (c === '(') {
      stack.push({ repeats: false, alternates: false });
      continue;
    } else if (c === '|') {
      (stack[stack.length - 1] as GroupState).alternates = true;
      continue;
    } else if (c === ')') {
      const group = stack.pop() as GroupState;
      const parent = stack[stack.length - 1] as GroupState;
      const q = readQuantifier(source, i + 1);
      if (q !== undefined) {
        if (q.repeats && (group.repeats || group.alternates))
          return {
            ok: false,
            reason: 'a repeated group contains a repetition or an alternation (catastrophic backtracking)',
          };
        if (q.unbounded) unboundedCount += 1;
        i += q.length;
      }
      parent.repeats ||= group.repeats || (q?.repeats ?? false);
      continue;
    }
    const q = readQuantifier(source, i + 1);
    if (q !== undefined) {
      if (q.repeats) (stack[stack.length - 1] as GroupState).repeats = true;
      if (q.unbounded) unboundedCount += 1;
      i += q.length;
    }
  }
  if (unboundedCount > MAX_UNBOUNDED) return { ok: false, reason: `more than ${MAX_UNBOUNDED} unbounded quantifiers` };
  return { ok: true, regex };
}
