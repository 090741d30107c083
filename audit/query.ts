import { createReadStream } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { AuditOutcome } from './events.js';
import { listAuditFiles, readFileTail } from './files.js';
import { parseRecordLine, type AuditRecord } from './record.js';
import { topicMatches } from './topic-filter.js';

export interface AuditQuery {
  /** Epoch milliseconds, inclusive. */
  since?: number;
  /** Epoch milliseconds, exclusive. */
  until?: number;
  /** Exact actions, or patterns where `*` matches any characters (`authz.*`, `authz.*_denied`). Any of them. */
  actions?: readonly string[];
  outcome?: AuditOutcome;
  /** `user.name`: the verified identity's user name. */
  user?: string;
  /** `mqtt.username`: what the CONNECT claimed, verified or not (brute-force and spoofing forensics). */
  username?: string;
  clientId?: string;
  /** An address (`10.0.0.7`) or a CIDR block (`10.0.0.0/8`, `2001:db8::/32`). */
  ip?: string;
  /** An MQTT topic filter with `+` and `#`. */
  topic?: string;
  limit?: number;
}

export interface QueryMatch {
  record: AuditRecord;
  /** The line exactly as stored, so `--format json` output can still be checked against its hash. */
  line: string;
  file: string;
  lineNo: number;
}

export interface QueryStats {
  files: number;
  filesSkipped: number;
  lines: number;
  matched: number;
  /** Lines that are not records (a torn tail, damage): `verify` explains them. */
  unreadable: number;
}

/**
 * Streams the records of every audit file, oldest first, that match the query. Files whose newest record is
 * older than `since` are skipped without being read.
 */
export async function* queryAuditLog(
  dir: string,
  query: AuditQuery,
  stats: QueryStats = { files: 0, filesSkipped: 0, lines: 0, matched: 0, unreadable: 0 },
): AsyncGenerator<QueryMatch> {
  const match = compileQuery(query);
  for (const { name } of listAuditFiles(dir)) {
    const path = join(dir, name);
    if (query.since !== undefined) {
      const last = readFileTail(path, 1).lastLines[0];
      const record = last === undefined ? undefined : parseRecordLine(last);
      if (record && Date.parse(record['@timestamp']) < query.since) {
        stats.filesSkipped++;
        continue;
      }
    }
    stats.files++;
    const lines = createInterface({ input: createReadStream(path), crlfDelay: Number.POSITIVE_INFINITY });
    let lineNo = 0;
    try {
      for await (const line of lines) {
        lineNo++;
        stats.lines++;
        const record = parseRecordLine(line);
        if (!record) {
          stats.unreadable++;
          continue;
        }
        if (!match(record)) continue;
        stats.matched++;
        yield { record, line, file: name, lineNo };
        if (query.limit !== undefined && stats.matched >= query.limit) return;
      }
    } finally {
      lines.close();
    }
  }
}

export function compileQuery(query: AuditQuery): (record: AuditRecord) => boolean {
  const exact = new Set<string>();
  const patterns: RegExp[] = [];
  for (const a of query.actions ?? []) {
    if (a.includes('*')) {
      const escaped = a.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
      patterns.push(new RegExp(`^${escaped.join('.*')}$`));
    } else exact.add(a);
  }
  const anyAction = exact.size === 0 && patterns.length === 0;
  const ipMatch = query.ip === undefined ? undefined : compileIp(query.ip);
  return (r) => {
    if (query.since !== undefined || query.until !== undefined) {
      const t = Date.parse(r['@timestamp']);
      if (query.since !== undefined && !(t >= query.since)) return false;
      if (query.until !== undefined && !(t < query.until)) return false;
    }
    const action = r.event.action;
    if (!anyAction && !exact.has(action) && !patterns.some((p) => p.test(action))) return false;
    if (query.outcome !== undefined && r.event.outcome !== query.outcome) return false;
    if (query.user !== undefined && r.user?.name !== query.user) return false;
    if (query.username !== undefined && r.mqtt?.username !== query.username) return false;
    if (query.clientId !== undefined && r.mqtt?.client_id !== query.clientId) return false;
    if (ipMatch && (r.client?.ip === undefined || !ipMatch(r.client.ip))) return false;
    if (query.topic !== undefined && (r.mqtt?.topic === undefined || !topicMatches(query.topic, r.mqtt.topic))) {
      return false;
    }
    return true;
  };
}

/**
 * Why `spec` is neither an address nor a CIDR block, or undefined when it is one. A filter that can match nothing
 * must be refused, not run: "0 matches" for a typo reads as "no such client".
 */
export function ipFilterProblem(spec: string): string | undefined {
  const slash = spec.indexOf('/');
  const address = slash === -1 ? spec : spec.slice(0, slash);
  const family = isIP(address);
  if (family === 0) return 'expected an IPv4 or IPv6 address, or a CIDR block such as 10.0.0.0/8 or 2001:db8::/32';
  if (slash === -1) return undefined;
  const prefix = spec.slice(slash + 1);
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > max)
    return `the prefix length of an IPv${family} block is a whole number from 0 to ${max}`;
  return undefined;
}

function compileIp(spec: string): (ip: string) => boolean {
  const problem = ipFilterProblem(spec);
  if (problem !== undefined) throw new RangeError(`ip filter ${JSON.stringify(spec)}: ${problem}`);
  const slash = spec.indexOf('/');
  const address = slash === -1 ? spec : spec.slice(0, slash);
  const type = isIP(address) === 4 ? 'ipv4' : 'ipv6';
  const list = new BlockList();
  if (slash === -1) list.addAddress(address, type);
  else list.addSubnet(address, Number(spec.slice(slash + 1)), type);
  return (ip) => {
    const f = isIP(ip);
    if (f === 0) return false;
    // An IPv4 client seen on a dual-stack socket is recorded as ::ffff:a.b.c.d; match it as IPv4 too.
    if (f === 6 && type === 'ipv4' && ip.toLowerCase().startsWith('::ffff:') && isIP(ip.slice(7)) === 4) {
      return list.check(ip.slice(7), 'ipv4');
    }
    return list.check(ip, f === 4 ? 'ipv4' : 'ipv6');
  };
}

/** `--since`/`--until`: an ISO 8601 date or time, or an age such as `7d` or `24h` (before now). */
export function parseQueryTime(value: string, now: number = Date.now()): number | undefined {
  const age = /^(\d+)(s|m|h|d|w)$/.exec(value.trim());
  if (age) {
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[age[2] as 's'];
    return now - Number(age[1]) * unit;
  }
  const date = /^(\d{4})-(\d{2})-(\d{2})/.exec(value);
  if (!date) return undefined;
  // Date.parse rolls a day that does not exist over into the next month (2026-02-30 is 2026-03-02): refuse it.
  const [year, month, day] = [Number(date[1]), Number(date[2]), Number(date[3])];
  if (month < 1 || month > 12 || day < 1 || day > new Date(Date.UTC(year, month, 0)).getUTCDate()) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : t;
}
