import type { AuditRecord } from './record.js';

export type QueryFormat = 'table' | 'json' | 'csv';

interface Column {
  header: string;
  width: number;
  get: (r: AuditRecord) => string | number | boolean | undefined;
}

const COLUMNS: readonly Column[] = [
  { header: 'timestamp', width: 24, get: (r) => r['@timestamp'] },
  { header: 'seq', width: 7, get: (r) => r.seq },
  { header: 'action', width: 24, get: (r) => r.event.action },
  { header: 'outcome', width: 7, get: (r) => r.event.outcome },
  { header: 'user', width: 12, get: (r) => r.user?.name },
  { header: 'client_id', width: 16, get: (r) => r.mqtt?.client_id },
  { header: 'ip', width: 15, get: (r) => r.client?.ip },
  { header: 'topic', width: 20, get: (r) => r.mqtt?.topic },
  { header: 'decided_by', width: 24, get: (r) => r.authz?.rule ?? r.authn?.by ?? r.actor },
  { header: 'reason', width: 0, get: (r) => r.event.reason ?? r.event.code },
];

/**
 * Client ids, user names and topics are chosen by clients: a table printed to a terminal must not carry their
 * control characters (ANSI escapes could rewrite the reviewer's screen), so they are shown escaped.
 */
export function printable(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

/**
 * A spreadsheet treats a cell starting with `= + - @` (or tab/CR) as a formula; a client id like `=HYPERLINK(...)`
 * would run in the reviewer's spreadsheet (CSV injection), so such cells get a leading apostrophe.
 */
export function csvCell(value: string | number | boolean | undefined): string {
  if (value === undefined) return '';
  let s = String(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function formatHeader(format: QueryFormat): string | undefined {
  if (format === 'json') return undefined;
  if (format === 'csv') return COLUMNS.map((c) => c.header).join(',');
  return COLUMNS.map((c) => c.header.toUpperCase().padEnd(c.width))
    .join(' ')
    .trimEnd();
}

/** One output line (without newline) for a record; `line` is the stored line, which `json` prints unchanged. */
export function formatRecord(format: QueryFormat, record: AuditRecord, line: string): string {
  if (format === 'json') return line;
  if (format === 'csv') return COLUMNS.map((c) => csvCell(c.get(record))).join(',');
  return COLUMNS.map((c) => {
    const v = c.get(record);
    return printable(v === undefined ? '-' : String(v)).padEnd(c.width);
  })
    .join(' ')
    .trimEnd();
}
