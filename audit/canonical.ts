/**
 * Canonical JSON as the hash chain defines it: object members sorted by key (UTF-16 code units, as
 * `Array.prototype.sort` orders them), no whitespace, strings and numbers exactly as `JSON.stringify` writes them,
 * `undefined` members omitted. For the values an audit record holds (strings, finite numbers, booleans, null,
 * arrays, plain objects) this is the JSON Canonicalization Scheme of RFC 8785, so any JCS library recomputes it.
 */
export function canonicalJson(value: unknown): string {
  const out = write(value);
  return out === undefined ? 'null' : out;
}

/**
 * `canonicalJson({ ...value, ...extra })` without building the merged object: a record is its event plus the
 * chain members, and the spread copy was a third of serialising a reconnect storm's records. A member of `extra`
 * replaces the one of the same name in `value`, as in the spread.
 */
export function canonicalJsonWith(value: Record<string, unknown>, extra: Record<string, unknown>): string {
  const keys = Object.keys(value);
  const extraKeys = Object.keys(extra);
  for (let i = 0; i < extraKeys.length; i++) {
    const key = extraKeys[i] as string;
    if (!Object.prototype.hasOwnProperty.call(value, key)) keys.push(key);
  }
  sortKeys(keys);
  const merged = mergedInOrder(keys, value, extra);
  return merged === undefined ? writeMembers(keys, value, extra) : JSON.stringify(merged);
}

/**
 * The record's members as one object in sorted order, for one JSON.stringify of the whole record, or undefined
 * when JSON.stringify would not write it canonically. Names that start with a digit are left to the sorting
 * writer because V8 orders integer-like names numerically; `__proto__` because assigning it sets the prototype.
 */
function mergedInOrder(
  keys: string[],
  value: Record<string, unknown>,
  extra: Record<string, unknown>,
): Record<string, unknown> | undefined {
  const merged: Record<string, unknown> = {};
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    const first = key.charCodeAt(0);
    if ((first >= 48 && first <= 57) || key === '__proto__') return undefined;
    const member = memberOf(key, value, extra);
    if (!stringifiesCanonically(member)) return undefined;
    merged[key] = member;
  }
  return merged;
}

/** Printable ASCII without `"` and `\`: the strings JSON.stringify writes as they are, between quotes. */
const NEEDS_NO_ESCAPE = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/**
 * A string as JSON.stringify writes it (RFC 8785 3.2.2.2). Client ids, addresses and action names need no escape;
 * testing that and quoting by hand cost a third of the call into JSON.stringify for each of a record's dozen
 * strings. Anything else (quotes, controls, non-ASCII, lone surrogates) is left to JSON.stringify.
 */
export function canonicalString(value: string): string {
  return NEEDS_NO_ESCAPE.test(value) ? `"${value}"` : JSON.stringify(value);
}

/** RFC 8785 3.2.2.3: ES number serialisation; non-finite numbers have no JSON form. */
export function canonicalNumber(value: number): string {
  return Number.isFinite(value) ? JSON.stringify(value) : 'null';
}

function write(value: unknown): string | undefined {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return canonicalString(value);
    case 'number':
      return canonicalNumber(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return JSON.stringify(value.toString());
    case 'object':
      return writeObject(value);
    default:
      // Functions and symbols have no JSON form; JSON.stringify drops them too.
      return undefined;
  }
}

/** Member names quoted once: records reuse the same few dozen names, so each is `JSON.stringify`d once. */
const QUOTED_NAMES = new Map<string, string>();
const QUOTED_NAMES_MAX = 4096;

function quotedName(key: string): string {
  let quoted = QUOTED_NAMES.get(key);
  if (quoted === undefined) {
    quoted = JSON.stringify(key);
    // Attribute names can come from certificates and tokens: bounded, so they cannot grow it without end.
    if (QUOTED_NAMES.size < QUOTED_NAMES_MAX) QUOTED_NAMES.set(key, quoted);
  }
  return quoted;
}

/**
 * Sorts member names in place by UTF-16 code units, the order `Array.prototype.sort` gives strings. Records have a
 * handful of members per object, and insertion sort allocates nothing, where the built-in sort's scratch copies
 * were the largest single source of garbage in a reconnect storm.
 */
function sortKeys(keys: string[]): void {
  if (keys.length > 32) {
    keys.sort();
    return;
  }
  for (let i = 1; i < keys.length; i++) {
    const key = keys[i] as string;
    let j = i - 1;
    while (j >= 0 && (keys[j] as string) > key) {
      keys[j + 1] = keys[j] as string;
      j--;
    }
    keys[j + 1] = key;
  }
}

function writeObject(value: object): string {
  // A Secret (authn/secret.ts) or Date serialises through toJSON, so it can never leak its plaintext here.
  const withToJson = value as { toJSON?: unknown };
  if (typeof withToJson.toJSON === 'function') {
    const replaced: unknown = (withToJson.toJSON as () => unknown).call(value);
    return write(replaced) ?? 'null';
  }
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      out += write(value[i] as unknown) ?? 'null';
    }
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  if (stringifiesCanonically(record)) return JSON.stringify(record);
  const keys = Object.keys(record);
  sortKeys(keys);
  return writeMembers(keys, record, undefined);
}

/**
 * Whether `JSON.stringify` already writes this value canonically: every object in it has its members in sorted
 * order (UTF-16 code units, as `sortKeys`), and it holds nothing JSON.stringify would write differently from this
 * writer: a `toJSON` (its result may be unsorted), a bigint (JSON.stringify throws), a function or symbol (a case
 * not worth proving equal). The events recorded for every connection are built in that order, so one native call
 * writes each of their members instead of a string concatenation per value; anything else is sorted as before.
 */
function stringifiesCanonically(value: unknown): boolean {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'undefined':
      return true;
    case 'object':
      break;
    default:
      return false;
  }
  if (value === null) return true;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!stringifiesCanonically(value[i] as unknown)) return false;
    return true;
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return false;
  const record = value as Record<string, unknown>;
  let previous = '';
  // for-in walks own members in Object.keys order (and would add inherited ones, which only makes this stricter).
  for (const key in record) {
    if (key < previous) return false;
    previous = key;
    if (!stringifiesCanonically(record[key])) return false;
  }
  return true;
}

/** A member of the spread `{ ...record, ...extra }`, without building it. */
function memberOf(key: string, record: Record<string, unknown>, extra: Record<string, unknown> | undefined): unknown {
  return extra !== undefined && Object.prototype.hasOwnProperty.call(extra, key) ? extra[key] : record[key];
}

/** Writes the members named by `keys`, which the caller has sorted. */
function writeMembers(
  keys: string[],
  record: Record<string, unknown>,
  extra: Record<string, unknown> | undefined,
): string {
  let out = '{';
  let first = true;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    const member = write(memberOf(key, record, extra));
    if (member === undefined) continue;
    if (!first) out += ',';
    out += quotedName(key);
    out += ':';
    out += member;
    first = false;
  }
  return `${out}}`;
}
