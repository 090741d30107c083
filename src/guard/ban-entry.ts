import { z } from 'zod';
import { cidrContains, formatCidr, normalizeIp, parseCidr, parseIp, type Cidr, type IpAddress } from './ip.js';
import { screenRegex } from './regex-safety.js';

/** Every dimension a block-list entry can name. */
export const BAN_KINDS = [
  'client_id',
  'username',
  'address',
  'cidr',
  'client_id_regex',
  'username_regex',
  'fingerprint',
  'jwt_sub',
] as const;
export type BanKind = (typeof BAN_KINDS)[number];

/** One block-list entry as stored, exported and shown. Times are ISO 8601; `until: null` means forever. */
export interface BanEntry {
  kind: BanKind;
  /** Normalised: canonical address/CIDR text, upper-case colon-separated SHA-256 fingerprint, raw pattern. */
  value: string;
  /** Who added it: `cli:1000@unix-socket`, `guard:flapping`, `import:<file>`. */
  by: string;
  reason: string;
  created: string;
  until: string | null;
}

/** What the broker knows about a client when it checks it: at CONNECT, or for a live client when a ban is added. */
export interface GuardClient {
  clientId: string;
  username?: string | undefined;
  /** Peer address as the socket (or a PROXY protocol header) reports it. */
  address: string;
  /** SHA-256 fingerprint of the TLS client certificate, any case, with or without colons. */
  certFingerprint?: string | undefined;
  /** `sub` claim of the client's JWT, once known. */
  jwtSubject?: string | undefined;
  /** Peer port and listener: never matched, only named in refusal records (`client.port`, `mqtt.listener`). */
  port?: number | undefined;
  listener?: string | undefined;
}

export const banEntrySchema = z.strictObject({
  kind: z.enum(BAN_KINDS).describe('What the entry matches.'),
  value: z
    .string()
    .min(1)
    .max(65_535)
    .describe('The client id, username, address, CIDR, pattern, fingerprint or subject.'),
  by: z.string().min(1).max(256).describe('Who added it.'),
  reason: z.string().max(1024).default('').describe('Why it was added.'),
  created: z.iso.datetime({ offset: true }).describe('When it was added (ISO 8601).'),
  until: z.iso.datetime({ offset: true }).nullable().describe('When it expires (ISO 8601), or null for never.'),
});

export const blocklistFileSchema = z.strictObject({
  version: z.literal(1).describe('File format version.'),
  entries: z.array(banEntrySchema),
});
export type BlocklistFile = z.output<typeof blocklistFileSchema>;

export type NormalizedValue = { ok: true; value: string } | { ok: false; reason: string };

const FINGERPRINT = /^[0-9A-F]{64}$/;

/** SHA-256 fingerprints in Node's `fingerprint256` form: `AB:CD:…`, whatever form the operator typed. */
export function normalizeFingerprint(text: string): string | undefined {
  const hex = text.replace(/[\s:]/g, '').toUpperCase();
  if (!FINGERPRINT.test(hex)) return undefined;
  return hex.match(/../g)?.join(':');
}

/** Validates and canonicalises an entry value so that equal bans compare equal and lookups are exact. */
export function normalizeBanValue(kind: BanKind, value: string, maxRegexLength: number): NormalizedValue {
  switch (kind) {
    case 'client_id':
    case 'username':
    case 'jwt_sub':
      return value.length === 0 ? { ok: false, reason: `an empty ${kind} cannot be banned` } : { ok: true, value };
    case 'address': {
      const address = normalizeIp(value);
      return address === undefined
        ? { ok: false, reason: `"${value}" is not an IP address` }
        : { ok: true, value: address };
    }
    case 'cidr': {
      const cidr = parseCidr(value);
      return cidr === undefined
        ? { ok: false, reason: `"${value}" is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32` }
        : { ok: true, value: formatCidr(cidr) };
    }
    case 'client_id_regex':
    case 'username_regex': {
      const screened = screenRegex(value, maxRegexLength);
      return screened.ok ? { ok: true, value } : { ok: false, reason: `pattern refused: ${screened.reason}` };
    }
    case 'fingerprint': {
      const fingerprint = normalizeFingerprint(value);
      return fingerprint === undefined
        ? { ok: false, reason: 'expected a SHA-256 fingerprint (64 hex digits, colons optional)' }
        : { ok: true, value: fingerprint };
    }
  }
}

/** A client with its address parsed once, so checking many entries does not reparse it. */
export interface PreparedClient {
  client: GuardClient;
  ip: IpAddress | undefined;
  address: string;
  fingerprint: string | undefined;
}

export function prepareClient(client: GuardClient): PreparedClient {
  const ip = parseIp(client.address);
  return {
    client,
    ip,
    address: ip === undefined ? client.address : (normalizeIp(client.address) ?? client.address),
    fingerprint: client.certFingerprint === undefined ? undefined : normalizeFingerprint(client.certFingerprint),
  };
}

/** A compiled entry: its matcher is built once, whether it serves the CONNECT check or a sweep of live clients. */
export interface CompiledEntry {
  entry: BanEntry;
  untilMs: number;
  cidr?: Cidr;
  regex?: RegExp;
}

export function compileEntry(entry: BanEntry): CompiledEntry {
  const compiled: CompiledEntry = {
    entry,
    untilMs: entry.until === null ? Number.POSITIVE_INFINITY : Date.parse(entry.until),
  };
  if (entry.kind === 'cidr') compiled.cidr = parseCidr(entry.value);
  if (entry.kind === 'client_id_regex' || entry.kind === 'username_regex') compiled.regex = new RegExp(entry.value);
  return compiled;
}

export function compiledMatches(compiled: CompiledEntry, prepared: PreparedClient): boolean {
  const { entry } = compiled;
  const { client } = prepared;
  switch (entry.kind) {
    case 'client_id':
      return client.clientId === entry.value;
    case 'username':
      return client.username !== undefined && client.username === entry.value;
    case 'address':
      return prepared.address === entry.value;
    case 'cidr':
      return prepared.ip !== undefined && compiled.cidr !== undefined && cidrContains(compiled.cidr, prepared.ip);
    case 'client_id_regex':
      return compiled.regex?.test(client.clientId) ?? false;
    case 'username_regex':
      return client.username !== undefined && (compiled.regex?.test(client.username) ?? false);
    case 'fingerprint':
      return prepared.fingerprint === entry.value;
    case 'jwt_sub':
      return client.jwtSubject !== undefined && client.jwtSubject === entry.value;
  }
}

const compiledCache = new WeakMap<BanEntry, CompiledEntry>();

/**
 * Whether `entry` applies to `client`, for finding live clients to disconnect when an entry is added
 * (on every dimension, not only client id). An expired entry matches nothing. Compiles the entry once per entry
 * object, so a sweep over many clients pays for the regex or CIDR parse once.
 */
export function matchesClient(
  entry: BanEntry,
  client: GuardClient | PreparedClient,
  now: number = Date.now(),
): boolean {
  let compiled = compiledCache.get(entry);
  if (compiled === undefined) {
    compiled = compileEntry(entry);
    compiledCache.set(entry, compiled);
  }
  if (compiled.untilMs <= now) return false;
  return compiledMatches(compiled, 'client' in client && 'ip' in client ? client : prepareClient(client));
}

export function entryKey(kind: BanKind, value: string): string {
  return `${kind}\u0000${value}`;
}
