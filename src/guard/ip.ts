import { isIPv6 } from 'node:net';

/**
 * IP addresses as numbers so CIDR checks are a mask and a map lookup. IPv4-mapped IPv6 addresses
 * (`::ffff:192.0.2.1`, what a dual-stack listener reports for an IPv4 peer) are folded into IPv4: otherwise a ban on
 * `192.0.2.1` would not match the same host arriving through an IPv6 socket.
 */
export type IpAddress = { readonly family: 4; readonly value: number } | { readonly family: 6; readonly value: bigint };

const MAPPED_PREFIX = 0xffffn << 32n;
const V6_ALL = (1n << 128n) - 1n;

/**
 * Dotted-quad IPv4 by hand: every CONNECT parses its peer address for the block list, flapping and throttling, and
 * `isIPv4` + `split` + `map` was 2% of connection set-up. Same grammar as `net.isIPv4`: four decimal octets of at
 * most 255, no leading zeros, nothing else.
 */
function parseIpv4(text: string): number | undefined {
  const length = text.length;
  if (length < 7 || length > 15) return undefined;
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || dots === 3) return undefined;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && octet === 0) return undefined;
      octet = octet * 10 + (c - 0x30);
      if (++digits > 3 || octet > 255) return undefined;
    } else return undefined;
  }
  if (dots !== 3 || digits === 0) return undefined;
  return value * 256 + octet;
}

function parseIpv6(text: string): bigint | undefined {
  if (!isIPv6(text)) return undefined;
  let body = text;
  if (body.includes('.')) {
    const cut = body.lastIndexOf(':');
    const v4 = parseIpv4(body.slice(cut + 1));
    if (v4 === undefined) return undefined;
    body = `${body.slice(0, cut + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [left = '', right] = body.split('::');
  const head = left === '' ? [] : left.split(':');
  const tail = right === undefined || right === '' ? [] : right.split(':');
  const missing = 8 - head.length - tail.length;
  if (missing < 0 || (right === undefined && missing !== 0)) return undefined;
  const groups = [...head, ...Array<string>(missing).fill('0'), ...tail];
  let value = 0n;
  for (const group of groups) value = (value << 16n) | BigInt(Number.parseInt(group, 16));
  return value;
}

/**
 * A CONNECT parses its peer address four times (block list, flapping, throttle, the guard's keys), so the last
 * answer is kept. Callers treat the returned object as immutable; `maskIp` and the others build new ones.
 */
let lastParsedText: string | undefined;
let lastParsed: IpAddress | undefined;
let lastNormalizedText: string | undefined;
let lastNormalized: string | undefined;

export function parseIp(text: string): IpAddress | undefined {
  if (text === lastParsedText) return lastParsed;
  const parsed = parseIpUncached(text);
  lastParsedText = text;
  lastParsed = parsed;
  return parsed;
}

function parseIpUncached(text: string): IpAddress | undefined {
  const bare = text.trim();
  const v4 = parseIpv4(bare);
  if (v4 !== undefined) return { family: 4, value: v4 };
  // A zone id (`fe80::1%eth0`) names the local interface, not the peer; bans apply to the address itself.
  const zone = bare.indexOf('%');
  const v6 = parseIpv6(zone === -1 ? bare : bare.slice(0, zone));
  if (v6 === undefined) return undefined;
  if (v6 >> 32n === 0xffffn) return { family: 4, value: Number(v6 & 0xffffffffn) };
  return { family: 6, value: v6 };
}

export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) {
    const v = ip.value;
    return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i -= 1) groups.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952 section 4.2: compress the longest run of two or more zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j += 1;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** The canonical text of an address (lower-case, compressed, IPv4-mapped folded), or undefined if not an address. */
export function normalizeIp(text: string): string | undefined {
  if (text === lastNormalizedText) return lastNormalized;
  const ip = parseIp(text);
  lastNormalizedText = text;
  lastNormalized = ip === undefined ? undefined : formatIp(ip);
  return lastNormalized;
}

export interface Cidr {
  family: 4 | 6;
  /** The network address with host bits cleared. */
  network: IpAddress;
  prefix: number;
}

export function maskIp(ip: IpAddress, prefix: number): IpAddress {
  if (ip.family === 4) {
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    return { family: 4, value: (ip.value & mask) >>> 0 };
  }
  const mask = prefix === 0 ? 0n : (V6_ALL << BigInt(128 - prefix)) & V6_ALL;
  return { family: 6, value: ip.value & mask };
}

/** Parses `a.b.c.d/n` or `x:y::/n`; host bits are cleared, so `10.1.2.3/8` becomes `10.0.0.0/8`. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash === -1) return undefined;
  const prefixText = text.slice(slash + 1).trim();
  if (!/^\d{1,3}$/.test(prefixText)) return undefined;
  let prefix = Number(prefixText);
  const addressText = text.slice(0, slash).trim();
  let ip: IpAddress | undefined;
  const v4 = parseIpv4(addressText);
  if (v4 !== undefined) ip = { family: 4, value: v4 };
  else {
    const v6 = parseIpv6(addressText);
    if (v6 === undefined) return undefined;
    if (prefix >= 96 && prefix <= 128 && (v6 & ~0xffffffffn) === MAPPED_PREFIX) {
      ip = { family: 4, value: Number(v6 & 0xffffffffn) };
      prefix -= 96;
    } else ip = { family: 6, value: v6 };
  }
  if (prefix > (ip.family === 4 ? 32 : 128)) return undefined;
  return { family: ip.family, network: maskIp(ip, prefix), prefix };
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIp(cidr.network)}/${cidr.prefix}`;
}

export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  if (cidr.family !== ip.family) return false;
  const masked = maskIp(ip, cidr.prefix);
  return masked.value === cidr.network.value;
}

/** The network an address belongs to for per-network counting, e.g. `203.0.113.0/24` or `2001:db8:1:2::/64`. */
export function networkOf(ip: IpAddress, ipv4Prefix: number, ipv6Prefix: number): string {
  const prefix = ip.family === 4 ? ipv4Prefix : ipv6Prefix;
  return `${formatIp(maskIp(ip, prefix))}/${prefix}`;
}
