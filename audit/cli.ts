import { once } from 'node:events';
import { statSync } from 'node:fs';
import { InvalidArgumentError, type Command, type CommanderError } from 'commander';
import { shownDefault, single } from '../src/cli/single-value.js';
import { BulwarkError } from '../src/errors.js';
import type { AuditOutcome } from './events.js';
import { formatHeader, formatRecord, type QueryFormat } from './format.js';
import { ipFilterProblem, parseQueryTime, queryAuditLog, type AuditQuery, type QueryStats } from './query.js';
import { loadPublicKey } from './signing-key.js';
import { isValidTopicFilter } from './topic-filter.js';
import { describeVerifyResult, verifyAuditLog, type VerifyResult } from './verify.js';

/** Exit codes: 0 intact / query done, 1 the log is not intact, 2 the command could not run (bad argument, I/O). */
const EXIT_BROKEN = 1;
const EXIT_USAGE = 2;

/** Every filter given must match: one that takes one value refuses a second (only --action takes several). */
const oneFilter = <T = string>(parse?: (value: string) => T) =>
  single<T>('this filter takes one value (only --action takes several)', parse);

export function registerAuditCommand(program: Command): void {
  const audit = program
    .command('audit')
    .description('Check and search the tamper-evident audit log (see docs/audit.md)');

  audit
    .command('verify')
    .description('Check every file, record, hash, sequence and checkpoint signature; exit 0 only when intact')
    .argument('<dir>', 'the audit directory (default location: <data_dir>/audit)')
    .option(
      '--public-key <file>',
      'trusted Ed25519 public key (PEM) that must have signed every checkpoint; repeat for rotated keys',
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option('--live', 'the broker is writing this log now: accept an unsigned tail after the last checkpoint')
    .option('--json', 'print the result as one JSON object')
    .exitOverride(usageExit)
    .action(async (dir: string, opts: { publicKey: string[]; live?: boolean; json?: boolean }) => {
      try {
        if (!checkDirectory(dir)) return;
        const publicKeys = opts.publicKey.map((file) => loadPublicKey(file));
        const result = await verifyAuditLog(dir, {
          publicKeys: publicKeys.length > 0 ? publicKeys : undefined,
          live: opts.live === true,
        });
        console.log(opts.json ? JSON.stringify(result) : describeForCli(result));
        process.exitCode = result.kind === 'intact' ? 0 : EXIT_BROKEN;
      } catch (error: unknown) {
        reportError(error);
      }
    });

  audit
    .command('query')
    .description('Stream the records that match every given filter, oldest first, across rotated files')
    .argument('<dir>', 'the audit directory')
    .option(
      '--since <time>',
      'from this time on: ISO 8601 (2026-11-01, 2026-11-01T08:00:00Z) or an age (7d, 24h)',
      oneFilter(time),
    )
    .option('--until <time>', 'before this time (same forms as --since)', oneFilter(time))
    .option(
      '--action <action>',
      'event.action, exact or with * wildcards (authz.*, authz.*_denied); repeat or separate with commas for any of several',
      (value: string, previous: string[]) => [...previous, ...value.split(',').filter((a) => a.length > 0)],
      [] as string[],
    )
    .option('--outcome <outcome>', 'success, failure or unknown', oneFilter(outcome))
    .option('--user <name>', 'user.name: the verified identity (anonymous and refused clients have none)', oneFilter())
    .option('--username <name>', 'mqtt.username: the username a CONNECT claimed, verified or not', oneFilter())
    .option('--client <id>', 'mqtt.client_id', oneFilter())
    .option('--ip <address>', 'client.ip: an address or a CIDR block (10.0.0.0/8)', oneFilter(ipFilter))
    .option('--topic <filter>', 'mqtt.topic matches this MQTT topic filter (+ and # wildcards)', oneFilter(topicFilter))
    .option('--limit <n>', 'stop after this many records', oneFilter(positiveInt))
    .option(
      '--format <format>',
      `table, json (the stored lines, JSON Lines) or csv ${shownDefault('table')}`,
      single('give it once', format),
    )
    .exitOverride(usageExit)
    .action(async (dir: string, opts: QueryOptions) => {
      try {
        if (!checkDirectory(dir)) return;
        const query: AuditQuery = {
          since: opts.since,
          until: opts.until,
          actions: opts.action,
          outcome: opts.outcome,
          user: opts.user,
          username: opts.username,
          clientId: opts.client,
          ip: opts.ip,
          topic: opts.topic,
          limit: opts.limit,
        };
        const stats: QueryStats = { files: 0, filesSkipped: 0, lines: 0, matched: 0, unreadable: 0 };
        const as = opts.format ?? 'table';
        const header = formatHeader(as);
        if (header !== undefined) await writeLine(header);
        for await (const m of queryAuditLog(dir, query, stats)) await writeLine(formatRecord(as, m.record, m.line));
        const unreadable = stats.unreadable > 0 ? `, ${stats.unreadable} unreadable lines skipped (run verify)` : '';
        console.error(`${stats.matched} records matched in ${stats.files} files${unreadable}`);
      } catch (error: unknown) {
        reportError(error);
      }
    });
}

interface QueryOptions {
  since?: number;
  until?: number;
  action: string[];
  outcome?: AuditOutcome;
  user?: string;
  username?: string;
  client?: string;
  ip?: string;
  topic?: string;
  limit?: number;
  format?: QueryFormat;
}

/** A usage error must not exit 1, which means "not intact" to a script calling verify. */
function usageExit(error: CommanderError): never {
  process.exit(error.exitCode === 0 ? 0 : EXIT_USAGE);
}

async function writeLine(line: string): Promise<void> {
  if (!process.stdout.write(`${line}\n`)) await once(process.stdout, 'drain');
}

function reportError(error: unknown): void {
  if (error instanceof BulwarkError) console.error(error.describe());
  // Node's message names the code and, for file errors, the path ("ENOENT: no such file or directory, scandir …").
  else console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = EXIT_USAGE;
}

/**
 * A directory that is not there is a command that could not run (exit 2), not a log found broken (exit 1): the
 * path is wrong, or not mounted. An existing directory without audit files stays `BROKEN missing-file`, since
 * that is what deleting every file looks like.
 */
function checkDirectory(dir: string): boolean {
  let problem: string | undefined;
  try {
    if (!statSync(dir).isDirectory()) problem = 'not a directory';
  } catch (error: unknown) {
    problem = isErrno(error) && error.code === 'ENOENT' ? 'no such directory' : (error as Error).message;
  }
  if (problem === undefined) return true;
  console.error(`bulwark audit: ${dir}: ${problem}`);
  process.exitCode = EXIT_USAGE;
  return false;
}

/**
 * The report line; an intact log with no checkpoint (a live log before its first) has no key to name, and
 * verify.ts would print "signed by trusted key " with nothing after it.
 */
function describeForCli(result: VerifyResult): string {
  const line = describeVerifyResult(result);
  if (result.kind !== 'intact' || result.summary.keyIds.length > 0) return line;
  const [counts, , ...rest] = line.split('; ');
  return [counts, 'nothing signed yet (no checkpoint)', ...rest].join('; ');
}

function isErrno(error: unknown): error is NodeJS.ErrnoException & { code: string } {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).code === 'string';
}

function time(value: string): number {
  const t = parseQueryTime(value);
  if (t === undefined)
    throw new InvalidArgumentError(
      'expected an ISO 8601 date/time that exists (2026-11-01, 2026-11-01T08:00:00Z) or an age such as 7d or 24h',
    );
  return t;
}

function ipFilter(value: string): string {
  const problem = ipFilterProblem(value);
  if (problem !== undefined) throw new InvalidArgumentError(problem);
  return value;
}

function outcome(value: string): AuditOutcome {
  if (value === 'success' || value === 'failure' || value === 'unknown') return value;
  throw new InvalidArgumentError('expected success, failure or unknown');
}

function format(value: string): QueryFormat {
  if (value === 'table' || value === 'json' || value === 'csv') return value;
  throw new InvalidArgumentError('expected table, json or csv');
}

function topicFilter(value: string): string {
  if (!isValidTopicFilter(value)) throw new InvalidArgumentError('not a valid MQTT topic filter');
  return value;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}
