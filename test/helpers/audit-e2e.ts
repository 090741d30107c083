import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCliBroker } from './cli.js';

/** One parsed audit line; nested members are read with `field(record, 'a.b.c')`. */
export type AuditRecord = Record<string, unknown>;

/** The `audit-*.jsonl` files of an audit directory in chain order (their names sort in it). */
export function auditFiles(auditDir: string): string[] {
  if (!existsSync(auditDir)) return [];
  return readdirSync(auditDir)
    .filter((n) => /^audit-\d{16}-\d{3}\.jsonl$/.test(n))
    .sort()
    .map((n) => join(auditDir, n));
}

/** Every byte the audit log holds, every file concatenated (for secret scans). */
export function auditText(auditDir: string): string {
  return auditFiles(auditDir)
    .map((f) => readFileSync(f, 'utf8'))
    .join('');
}

/** Every complete (newline-terminated) record in chain order; a torn last line is left out. */
export function readAuditRecords(auditDir: string): AuditRecord[] {
  const records: AuditRecord[] = [];
  for (const file of auditFiles(auditDir)) {
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.pop(); // the text after the last newline: empty, or a torn line
    for (const line of lines) records.push(JSON.parse(line) as AuditRecord);
  }
  return records;
}

/** A dotted path into a record: `field(r, 'event.action')`. `@timestamp` is a top-level key. */
export function field(record: AuditRecord, path: string): unknown {
  if (path in record) return record[path];
  let value: unknown = record;
  for (const key of path.split('.')) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

export function byAction(records: AuditRecord[], action: string): AuditRecord[] {
  return records.filter((r) => field(r, 'event.action') === action);
}

/** Polls the audit files of a running broker until a record matches (the writer batches, so this is brief). */
export async function waitForAudit(
  auditDir: string,
  where: (r: AuditRecord) => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<AuditRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = readAuditRecords(auditDir).find(where);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for audit record: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A `bulwark start -c FILE` process. */
export interface YamlBroker {
  child: ChildProcess;
  /** Everything the broker printed on stdout and stderr. */
  output(): string;
  /** Port of each listener by name, from the ready line. */
  ports: Record<string, number>;
  /** SIGTERM, then the exit code once it has exited. */
  stop(): Promise<number | null>;
  /** SIGKILL, resolved once the process is gone. */
  kill9(): Promise<void>;
}

export async function startYamlBroker(configFile: string): Promise<YamlBroker> {
  const { child, output } = await startCliBroker(['-c', configFile]);
  // Swallow the helper's late "exited" rejection path: exit is awaited explicitly below. 'close' rather than 'exit',
  // so that `output()` after `stop()` holds the broker's last lines too.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const ports: Record<string, number> = {};
  for (const m of output().matchAll(/(\w[\w-]*): (?:tcp|tls|ws|wss):\/\/[^:\s]+:(\d+)/g)) ports[m[1]!] = Number(m[2]);
  return {
    child,
    output,
    ports,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    async kill9() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
