/**
 * Durations as operators write them in YAML and on the command line: `90s`, `5m`, `1h30m`, `7d`, `2w`, `250ms`.
 * A bare number is refused on purpose: `--for 300` could mean seconds or milliseconds, and a ban that is a
 * thousand times too short is a silent security failure.
 */
const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

const PART = /(\d+)(ms|s|m|h|d|w)/gy;

/** Milliseconds, or undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  PART.lastIndex = 0;
  let total = 0;
  let consumed = 0;
  for (let match = PART.exec(trimmed); match !== null; match = PART.exec(trimmed)) {
    const [whole, amount, unit] = match;
    total += Number(amount) * (UNIT_MS[unit as string] ?? Number.NaN);
    consumed += whole.length;
  }
  if (consumed !== trimmed.length || !Number.isSafeInteger(total)) return undefined;
  return total;
}

/** The shortest exact rendering, e.g. 5400000 → `1h30m`; used in messages and audit reasons. */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const parts: string[] = [];
  let rest = Math.round(ms);
  for (const unit of ['w', 'd', 'h', 'm', 's', 'ms'] as const) {
    const size = UNIT_MS[unit] as number;
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('');
}
