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

function write(value: unknown): string | undefined {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      // RFC 8785 3.2.2.3: ES number serialisation; non-finite numbers have no JSON form.
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
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

function writeObject(value: object): string {
  // A Secret (authn/secret.ts) or Date serialises through toJSON, so it can never leak its plaintext here.
  const withToJson = value as { toJSON?: unknown };
  if (typeof withToJson.toJSON === 'function') {
    const replaced: unknown = (withToJson.toJSON as () => unknown).call(value);
    return write(replaced) ?? 'null';
  }
  if (Array.isArray(value)) {
    const items = value.map((item: unknown) => write(item) ?? 'null');
    return `[${items.join(',')}]`;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record).sort();
  let out = '{';
  let first = true;
  for (const key of keys) {
    const member = write(record[key]);
    if (member === undefined) continue;
    out += `${first ? '' : ','}${JSON.stringify(key)}:${member}`;
    first = false;
  }
  return `${out}}`;
}
