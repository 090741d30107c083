import { isIPv4, isIPv6, type Socket } from 'node:net';
import { z } from 'zod';
import { hasControlCharacter } from '../control-characters.js';

/**
 * PROXY protocol v1 and v2 (haproxy.org/download/2.9/doc/proxy-protocol.txt), parsed strictly: a header
 * that is truncated, oversized, malformed or carries impossible addresses is refused, never guessed at.
 * proxy-protocol-js is unfit here (it accepts truncated v2 headers, ignores the v2 length and accepts
 * `999.1.1.1`), so this parser is our own.
 */

export const proxyProtocolSchema = z
  .object({
    enabled: z
      .boolean()
      .default(false)
      .describe('Expect a PROXY protocol v1 or v2 header before any other byte on this listener.'),
    trusted_proxies: z
      .array(z.string().min(1))
      .min(1)
      .describe(
        'Addresses or CIDRs (IPv4 and IPv6) of the load balancers allowed to connect; any other peer is refused. `10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`.',
      ),
    versions: z
      .array(z.union([z.literal(1), z.literal(2)]))
      .min(1)
      .default([1, 2])
      .describe('Header versions accepted: 1 (text), 2 (binary).'),
    timeout_ms: z
      .number()
      .int()
      .min(100)
      .max(60_000)
      .default(3_000)
      .describe('A connection that has not sent a complete header by then is closed.'),
    max_v2_length: z
      .number()
      .int()
      .min(216)
      .max(65_535)
      .default(2_048)
      .describe('Largest v2 address-and-TLV block accepted, in bytes (the 16-byte fixed header comes on top).'),
    use_ssl_tlv_cn: z
      .boolean()
      .default(false)
      .describe(
        'tcp listeners: a trusted proxy that terminated TLS names the client certificate it verified by its CN, in the v2 PP2_TYPE_SSL TLV; an `x509` step can then authenticate the client by that CN (`identity_source: cn`). Only a TLV saying TLS, certificate presented and verified (`verify` 0) counts; any other gives no certificate identity. Refused on tls listeners, where the broker checks the certificate itself. Off by default. See docs/tls.md.',
      ),
  })
  .strict()
  .superRefine((settings, ctx) => {
    // Checked here, not when the listener starts, so `config check` catches it with the entry's position.
    settings.trusted_proxies.forEach((entry, index) => {
      const parsed = parseCidrList([entry]);
      if (!parsed.ok)
        for (const message of parsed.errors)
          ctx.addIssue({ code: 'custom', path: ['trusted_proxies', index], message });
    });
    if (settings.use_ssl_tlv_cn && !settings.versions.includes(2)) {
      ctx.addIssue({
        code: 'custom',
        path: ['use_ssl_tlv_cn'],
        message: 'use_ssl_tlv_cn reads the PROXY v2 SSL TLV: add 2 to versions, or leave use_ssl_tlv_cn out',
      });
    }
  })
  .describe('PROXY protocol: the real client address comes from the trusted load balancer.');

export type ProxyProtocolSettings = z.output<typeof proxyProtocolSchema>;

export const V1_MAX_LENGTH = 107;
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_FIXED = 16;

export interface ProxyEndpoint {
  address: string;
  port: number;
}

export interface ProxyTlv {
  type: number;
  value: Buffer;
}

/** PP2_TYPE_SSL: what the proxy learned from the TLS session it terminated. */
export interface ProxySslInfo {
  /** PP2_CLIENT_SSL: the client connected over TLS. */
  ssl: boolean;
  /** PP2_CLIENT_CERT_CONN / PP2_CLIENT_CERT_SESS: a client certificate was presented. */
  certificatePresented: boolean;
  /** `verify == 0`: the proxy verified the client certificate. */
  verified: boolean;
  version?: string;
  cn?: string;
  cipher?: string;
  signatureAlgorithm?: string;
  keyAlgorithm?: string;
}

export interface ProxyHeader {
  version: 1 | 2;
  /** `local`: a health check from the proxy itself; use the socket's own addresses. */
  command: 'proxy' | 'local';
  /** `unknown`: v1 UNKNOWN, v2 AF_UNSPEC or AF_UNIX; addresses are absent and the socket's are used. */
  family: 'ipv4' | 'ipv6' | 'unknown';
  source?: ProxyEndpoint;
  destination?: ProxyEndpoint;
  tlvs: ProxyTlv[];
  alpn?: string;
  authority?: string;
  uniqueId?: Buffer;
  ssl?: ProxySslInfo;
  /** Bytes the header occupied. */
  length: number;
}

export type ProxyParseResult =
  { kind: 'incomplete' } | { kind: 'header'; header: ProxyHeader; rest: Buffer } | { kind: 'invalid'; reason: string };

export interface ProxyParseLimits {
  maxV2Length?: number;
  versions?: ReadonlyArray<1 | 2>;
}

const invalid = (reason: string): ProxyParseResult => ({ kind: 'invalid', reason });

/** Is `data` (shorter than `full`) the beginning of `full`? */
function isPrefixOf(data: Buffer, full: Buffer): boolean {
  const n = Math.min(data.length, full.length);
  return data.subarray(0, n).equals(full.subarray(0, n));
}

/**
 * Parses a PROXY header at the start of `data`. `incomplete` means "read more"; the caller bounds how long.
 * Decides as early as it can: a first byte that starts neither version is refused at once.
 */
export function parseProxyHeader(data: Buffer, limits: ProxyParseLimits = {}): ProxyParseResult {
  const versions = limits.versions ?? [1, 2];
  if (data.length === 0) return { kind: 'incomplete' };
  if (isPrefixOf(data, V1_PREFIX)) {
    if (!versions.includes(1)) return invalid('PROXY protocol v1 is not accepted on this listener');
    return data.length < V1_PREFIX.length ? { kind: 'incomplete' } : parseV1(data);
  }
  if (isPrefixOf(data, V2_SIGNATURE)) {
    if (!versions.includes(2)) return invalid('PROXY protocol v2 is not accepted on this listener');
    return data.length < V2_FIXED ? { kind: 'incomplete' } : parseV2(data, limits.maxV2Length ?? 2_048);
  }
  return invalid('not a PROXY protocol header');
}

const PORT = /^(0|[1-9][0-9]{0,4})$/;
const IPV4 = /^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$/;

function parsePort(text: string): number | undefined {
  if (!PORT.test(text)) return undefined;
  const n = Number(text);
  return n <= 65_535 ? n : undefined;
}

function parseV1(data: Buffer): ProxyParseResult {
  const limit = Math.min(data.length, V1_MAX_LENGTH);
  let end = -1;
  for (let i = 0; i < limit; i++) {
    const c = data[i] as number;
    if (c === 0x0d) {
      // The CRLF counts towards the 107 bytes, so a CR at index 106 already makes the line too long.
      if (i + 2 > V1_MAX_LENGTH) return invalid('v1 header longer than 107 bytes');
      if (i + 1 >= data.length) return { kind: 'incomplete' };
      if (data[i + 1] !== 0x0a) return invalid('v1 header has a CR without LF');
      end = i;
      break;
    }
    // Printable US-ASCII only (spec §2.1); a NUL, LF or high byte means this is not a v1 line.
    if (c < 0x20 || c > 0x7e) return invalid('v1 header contains a control or non-ASCII byte');
  }
  if (end < 0)
    return data.length >= V1_MAX_LENGTH ? invalid('v1 header longer than 107 bytes') : { kind: 'incomplete' };
  const line = data.subarray(0, end).toString('latin1');
  const length = end + 2;
  const rest = data.subarray(length);
  const parts = line.split(' ');
  const proto = parts[1];
  if (proto === 'UNKNOWN') {
    // Spec: the receiver must ignore anything after UNKNOWN and use the socket's addresses.
    return { kind: 'header', header: { version: 1, command: 'proxy', family: 'unknown', tlvs: [], length }, rest };
  }
  if (proto !== 'TCP4' && proto !== 'TCP6')
    return invalid(`v1 protocol ${JSON.stringify(proto ?? '')} is not TCP4, TCP6 or UNKNOWN`);
  if (parts.length !== 6)
    return invalid('v1 header must have exactly four fields after the protocol, separated by single spaces');
  const [, , src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  const valid = proto === 'TCP4' ? (a: string) => IPV4.test(a) : (a: string) => isIPv6(a) && !a.includes('%');
  if (!valid(src))
    return invalid(
      `v1 source address ${JSON.stringify(src)} is not a valid ${proto === 'TCP4' ? 'IPv4' : 'IPv6'} address`,
    );
  if (!valid(dst))
    return invalid(
      `v1 destination address ${JSON.stringify(dst)} is not a valid ${proto === 'TCP4' ? 'IPv4' : 'IPv6'} address`,
    );
  const sourcePort = parsePort(sport);
  const destinationPort = parsePort(dport);
  if (sourcePort === undefined) return invalid(`v1 source port ${JSON.stringify(sport)} is not a port number`);
  if (destinationPort === undefined)
    return invalid(`v1 destination port ${JSON.stringify(dport)} is not a port number`);
  return {
    kind: 'header',
    header: {
      version: 1,
      command: 'proxy',
      family: proto === 'TCP4' ? 'ipv4' : 'ipv6',
      source: { address: src, port: sourcePort },
      destination: { address: dst, port: destinationPort },
      tlvs: [],
      length,
    },
    rest,
  };
}

function ipv6Text(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  // RFC 5952 §4.2.3: compress the longest run of two or more zero groups.
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLength).join(':')}`;
}

function parseTlvs(block: Buffer, what: string): { ok: true; tlvs: ProxyTlv[] } | { ok: false; reason: string } {
  const tlvs: ProxyTlv[] = [];
  let i = 0;
  while (i < block.length) {
    if (i + 3 > block.length) return { ok: false, reason: `truncated ${what} TLV header` };
    const type = block[i] as number;
    const length = block.readUInt16BE(i + 1);
    if (i + 3 + length > block.length)
      return { ok: false, reason: `${what} TLV 0x${type.toString(16).padStart(2, '0')} runs past the header` };
    tlvs.push({ type, value: block.subarray(i + 3, i + 3 + length) });
    i += 3 + length;
  }
  return { ok: true, tlvs };
}

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32C (Castagnoli), as PP2_TYPE_CRC32C uses. */
export function crc32c(data: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = (CRC32C_TABLE[(crc ^ byte) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function utf8(value: Buffer, name: string): { ok: true; text: string } | { ok: false; reason: string } {
  const text = value.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(value)) return { ok: false, reason: `${name} TLV is not valid UTF-8` };
  return { ok: true, text };
}

function parseV2(data: Buffer, maxLength: number): ProxyParseResult {
  const verCmd = data[12] as number;
  const version = verCmd >> 4;
  if (version !== 2) return invalid(`unsupported PROXY protocol version ${version} in a v2 signature`);
  const commandBits = verCmd & 0x0f;
  if (commandBits > 1) return invalid(`unknown v2 command 0x${commandBits.toString(16)}`);
  const famProto = data[13] as number;
  const family = famProto >> 4;
  const transport = famProto & 0x0f;
  if (family > 3) return invalid(`unknown v2 address family 0x${family.toString(16)}`);
  if (transport > 2) return invalid(`unknown v2 transport protocol 0x${transport.toString(16)}`);
  const length = data.readUInt16BE(14);
  if (length > maxLength) return invalid(`v2 header length ${length} exceeds the limit of ${maxLength} bytes`);
  if (data.length < V2_FIXED + length) return { kind: 'incomplete' };
  const total = V2_FIXED + length;
  const block = data.subarray(V2_FIXED, total);
  const rest = data.subarray(total);
  if (commandBits === 0) {
    // LOCAL (spec §2.2): the proxy speaks for itself; discard the block, use the real endpoints.
    return {
      kind: 'header',
      header: { version: 2, command: 'local', family: 'unknown', tlvs: [], length: total },
      rest,
    };
  }
  const addressLength = [0, 12, 36, 216][family] as number;
  if (length < addressLength)
    return invalid(`v2 header length ${length} is shorter than the ${addressLength}-byte address block`);
  if (family !== 0 && transport === 2)
    return invalid('v2 header announces a datagram (UDP) connection on a stream listener');
  if ((family === 1 || family === 2) && transport !== 1)
    return invalid('v2 header announces an unspecified transport for an IP connection');
  const header: ProxyHeader = { version: 2, command: 'proxy', family: 'unknown', tlvs: [], length: total };
  if (family === 1) {
    header.family = 'ipv4';
    header.source = { address: [...block.subarray(0, 4)].join('.'), port: block.readUInt16BE(8) };
    header.destination = { address: [...block.subarray(4, 8)].join('.'), port: block.readUInt16BE(10) };
  } else if (family === 2) {
    header.family = 'ipv6';
    header.source = { address: ipv6Text(block.subarray(0, 16)), port: block.readUInt16BE(32) };
    header.destination = { address: ipv6Text(block.subarray(16, 32)), port: block.readUInt16BE(34) };
  }
  const parsed = parseTlvs(block.subarray(addressLength), 'v2');
  if (!parsed.ok) return invalid(parsed.reason);
  header.tlvs = parsed.tlvs;
  const repeated = repeatedType(parsed.tlvs, SINGLE_TLVS, 'v2');
  if (repeated !== undefined) return invalid(repeated);
  for (const tlv of parsed.tlvs) {
    switch (tlv.type) {
      case 0x01:
        header.alpn = tlv.value.toString('latin1');
        break;
      case 0x02: {
        const text = utf8(tlv.value, 'AUTHORITY');
        if (!text.ok) return invalid(text.reason);
        header.authority = text.text;
        break;
      }
      case 0x03: {
        if (tlv.value.length !== 4) return invalid('CRC32C TLV must be 4 bytes');
        const expected = tlv.value.readUInt32BE(0);
        const copy = Buffer.from(data.subarray(0, total));
        const offset = tlv.value.byteOffset - data.byteOffset;
        copy.fill(0, offset, offset + 4);
        if (crc32c(copy) !== expected) return invalid('v2 header CRC32C checksum does not match');
        break;
      }
      case 0x05:
        if (tlv.value.length > 128) return invalid('UNIQUE_ID TLV longer than 128 bytes');
        header.uniqueId = tlv.value;
        break;
      case 0x20: {
        const ssl = parseSslTlv(tlv.value);
        if (!ssl.ok) return invalid(ssl.reason);
        header.ssl = ssl.info;
        break;
      }
      default:
        break;
    }
  }
  return { kind: 'header', header, rest };
}

/** TLVs read as one value each (ALPN, AUTHORITY, CRC32C, UNIQUE_ID, SSL): a second one is refused, never chosen. */
const SINGLE_TLVS: ReadonlySet<number> = new Set([0x01, 0x02, 0x03, 0x05, 0x20]);
/** SSL sub-TLVs read as one value each: two CNs cannot both name the client. */
const SINGLE_SSL_SUB_TLVS: ReadonlySet<number> = new Set([0x21, 0x22, 0x23, 0x24, 0x25]);

/** An ambiguous header (which of two values would the proxy have meant?) is refused, as a parser must not guess. */
function repeatedType(tlvs: readonly ProxyTlv[], single: ReadonlySet<number>, what: string): string | undefined {
  const seen = new Set<number>();
  for (const { type } of tlvs) {
    if (!single.has(type)) continue;
    if (seen.has(type)) return `${what} TLV 0x${type.toString(16).padStart(2, '0')} appears more than once`;
    seen.add(type);
  }
  return undefined;
}

function parseSslTlv(value: Buffer): { ok: true; info: ProxySslInfo } | { ok: false; reason: string } {
  if (value.length < 5) return { ok: false, reason: 'SSL TLV shorter than its 5-byte fixed part' };
  const client = value[0] as number;
  const info: ProxySslInfo = {
    ssl: (client & 0x01) !== 0,
    certificatePresented: (client & 0x06) !== 0,
    verified: value.readUInt32BE(1) === 0,
  };
  const sub = parseTlvs(value.subarray(5), 'SSL sub-');
  if (!sub.ok) return sub;
  const repeated = repeatedType(sub.tlvs, SINGLE_SSL_SUB_TLVS, 'SSL sub-');
  if (repeated !== undefined) return { ok: false, reason: repeated };
  const names: Record<number, keyof ProxySslInfo> = {
    0x21: 'version',
    0x22: 'cn',
    0x23: 'cipher',
    0x24: 'signatureAlgorithm',
    0x25: 'keyAlgorithm',
  };
  for (const tlv of sub.tlvs) {
    const key = names[tlv.type];
    if (key === undefined) continue;
    const text = utf8(tlv.value, `SSL ${key}`);
    if (!text.ok) return text;
    // A CN `ali\0ce` could be read as `ali` by whatever compares it next; MQTT strings forbid U+0000 too.
    if (hasControlCharacter(text.text)) return { ok: false, reason: `SSL ${key} TLV contains a control character` };
    (info as unknown as Record<string, string>)[key] = text.text;
  }
  return { ok: true, info };
}

/** Accumulates socket chunks until a header is complete, bounded by the largest header allowed. */
export class ProxyHeaderReader {
  #buffer: Buffer = Buffer.alloc(0);
  readonly #limits: ProxyParseLimits;

  constructor(limits: ProxyParseLimits = {}) {
    this.#limits = limits;
  }

  push(chunk: Buffer): ProxyParseResult {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    return parseProxyHeader(this.#buffer, this.#limits);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Trusted proxies

/** IPv4 as 4 bytes, IPv6 as 16; IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is folded to IPv4. */
export function ipToBytes(address: string): Uint8Array | undefined {
  const bare = address.includes('%') ? address.slice(0, address.indexOf('%')) : address;
  if (isIPv4(bare)) {
    if (!IPV4.test(bare)) return undefined;
    return Uint8Array.from(bare.split('.').map(Number));
  }
  if (!isIPv6(bare)) return undefined;
  let text = bare;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = ipToBytes(text.slice(lastColon + 1));
    if (v4 === undefined || v4.length !== 4) return undefined;
    tail.push(...v4);
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const missing = 8 - headGroups.length - restGroups.length;
  const groups = rest === undefined ? headGroups : [...headGroups, ...Array<string>(missing).fill('0'), ...restGroups];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = Number.parseInt(g, 16);
    bytes[i * 2] = v >> 8;
    bytes[i * 2 + 1] = v & 0xff;
  });
  if (tail.length === 4) bytes.set(tail, 12);
  const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? bytes.slice(12) : bytes;
}

export interface CidrMatcher {
  matches(address: string): boolean;
  readonly entries: readonly string[];
}

interface Range {
  bytes: Uint8Array;
  prefix: number;
}

function inRange(address: Uint8Array, range: Range): boolean {
  if (address.length !== range.bytes.length) return false;
  let bits = range.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((address[i] as number) & mask) !== ((range.bytes[i] as number) & mask)) return false;
  }
  return true;
}

/**
 * Compiles trusted-proxy addresses and CIDRs. Refuses a CIDR with host bits set (`10.0.0.1/8`), which is
 * almost always a typo for a narrower or wider range than intended.
 */
export function parseCidrList(
  entries: readonly string[],
): { ok: true; matcher: CidrMatcher } | { ok: false; errors: string[] } {
  const ranges: Range[] = [];
  const errors: string[] = [];
  for (const entry of entries) {
    const [addressText, prefixText, extra] = entry.trim().split('/');
    const bytes = ipToBytes(addressText ?? '');
    if (bytes === undefined || extra !== undefined) {
      errors.push(`${JSON.stringify(entry)} is not an IP address or CIDR`);
      continue;
    }
    // An IPv4-mapped IPv6 CIDR (::ffff:10.0.0.0/104) was folded to IPv4: shift its prefix too.
    const foldedFromV6 = bytes.length === 4 && !isIPv4(addressText ?? '');
    const max = bytes.length * 8;
    let prefix = max;
    if (prefixText !== undefined) {
      if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) {
        errors.push(`${JSON.stringify(entry)} has an invalid prefix length`);
        continue;
      }
      prefix = Number(prefixText) - (foldedFromV6 ? 96 : 0);
      if (prefix < 0 || prefix > max) {
        errors.push(`${JSON.stringify(entry)} has a prefix length outside 0..${foldedFromV6 ? 128 : max}`);
        continue;
      }
    }
    const range = { bytes, prefix };
    const masked = Uint8Array.from(bytes, (b, i) => {
      const bits = Math.max(0, Math.min(8, prefix - i * 8));
      return b & ((0xff << (8 - bits)) & 0xff);
    });
    if (!masked.every((b, i) => b === bytes[i])) {
      errors.push(
        `${JSON.stringify(entry)} has host bits set; the network is ${bytes.length === 4 ? [...masked].join('.') : ipv6Text(Buffer.from(masked))}/${prefixText}`,
      );
      continue;
    }
    ranges.push(range);
  }
  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    matcher: {
      entries: [...entries],
      matches: (address) => {
        const bytes = ipToBytes(address);
        return bytes !== undefined && ranges.some((r) => inRange(bytes, r));
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Reading the header from a socket

export interface ProxyAcceptOptions extends ProxyParseLimits {
  trusted: CidrMatcher;
  timeoutMs: number;
}

export type ProxyRejection = 'untrusted_proxy' | 'timeout' | 'invalid_header' | 'closed';

export type ProxyAcceptResult =
  | {
      kind: 'accepted';
      header: ProxyHeader;
      /** The real client: from the header, or the socket's own peer for LOCAL/UNKNOWN. */
      client: ProxyEndpoint;
      /** The load balancer the connection came from. */
      proxy: ProxyEndpoint;
    }
  | { kind: 'rejected'; reason: ProxyRejection; detail: string; proxy: ProxyEndpoint };

/**
 * Reads the PROXY header from a fresh socket. Refuses peers outside `trusted` before reading a byte.
 * On success the bytes after the header are pushed back (`unshift`) and the socket is paused, so the
 * caller can hand it on as if untouched: to the MQTT framer, or to a TLS server with
 * `tlsServer.emit('connection', socket)` (Node's TLS reads a socket's buffered bytes first). On rejection
 * the caller records the reason and destroys the socket; this function never writes to it.
 */
export function readProxyHeader(socket: Socket, options: ProxyAcceptOptions): Promise<ProxyAcceptResult> {
  const proxy = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
  if (!options.trusted.matches(proxy.address)) {
    return Promise.resolve({
      kind: 'rejected',
      reason: 'untrusted_proxy',
      detail: `${proxy.address} is not a trusted proxy`,
      proxy,
    });
  }
  const reader = new ProxyHeaderReader(options);
  return new Promise((resolve) => {
    let done = false;
    const finish = (result: ProxyAcceptResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onClose);
      socket.off('close', onClose);
      socket.off('error', onError);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      const result = reader.push(chunk);
      if (result.kind === 'incomplete') return;
      if (result.kind === 'invalid') {
        finish({ kind: 'rejected', reason: 'invalid_header', detail: result.reason, proxy });
        return;
      }
      socket.pause();
      if (result.rest.length > 0) socket.unshift(result.rest);
      const header = result.header;
      finish({
        kind: 'accepted',
        header,
        client: header.command === 'proxy' && header.source ? header.source : proxy,
        proxy,
      });
    };
    const onClose = (): void =>
      finish({ kind: 'rejected', reason: 'closed', detail: 'connection closed before a complete PROXY header', proxy });
    const onError = (error: Error): void =>
      finish({ kind: 'rejected', reason: 'closed', detail: error.message, proxy });
    const timer = setTimeout(
      () =>
        finish({
          kind: 'rejected',
          reason: 'timeout',
          detail: `no complete PROXY header within ${options.timeoutMs} ms`,
          proxy,
        }),
      options.timeoutMs,
    );
    timer.unref();
    socket.on('data', onData);
    socket.once('end', onClose);
    socket.once('close', onClose);
    socket.once('error', onError);
  });
}

/**
 * The client-certificate CN from a v2 SSL TLV, only when the proxy says the client used TLS, presented a
 * certificate and the proxy verified it (a LOCAL header has none: its TLVs are not kept). Use it only with
 * `use_ssl_tlv_cn: true`.
 */
export function verifiedSslCommonName(header: ProxyHeader): string | undefined {
  const ssl = header.ssl;
  if (ssl === undefined || !ssl.ssl || !ssl.certificatePresented || !ssl.verified) return undefined;
  return ssl.cn;
}
