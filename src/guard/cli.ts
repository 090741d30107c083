import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { mkdir, readFile } from 'node:fs/promises';
import { callAdmin, adminSocketPath } from '../admin/client.js';
import { shownDefault, single } from '../cli/single-value.js';
import { banEntrySchema, type BanEntry, type BanKind } from './ban-entry.js';
import { Blocklist } from './blocklist.js';
import {
  blocklistPath,
  formatForPath,
  parseBlocklistText,
  readBlocklistFile,
  serializeBlocklist,
  writeFileAtomic,
} from './blocklist-store.js';
import { defaultGuardConfig } from './config.js';
import { parseDuration } from '../config/duration.js';
import { lockDataDir, type DataDirLock } from '../data-dir.js';
import { BulwarkError } from '../errors.js';

/** Where the CLI writes; injected so tests read the output without touching the process streams. */
export interface CliIo {
  out(line: string): void;
}

const SELECTORS: ReadonlyArray<{ flag: string; option: string; kind: BanKind; help: string }> = [
  { flag: '--client-id <id>', option: 'clientId', kind: 'client_id', help: 'an exact client id' },
  { flag: '--username <name>', option: 'username', kind: 'username', help: 'an exact username' },
  { flag: '--ip <address>', option: 'ip', kind: 'address', help: 'a source address (IPv4 or IPv6)' },
  { flag: '--cidr <network>', option: 'cidr', kind: 'cidr', help: 'a network, e.g. 203.0.113.0/24 or 2001:db8::/48' },
  {
    flag: '--client-id-regex <pattern>',
    option: 'clientIdRegex',
    kind: 'client_id_regex',
    help: 'a regular expression on the client id (unanchored)',
  },
  {
    flag: '--username-regex <pattern>',
    option: 'usernameRegex',
    kind: 'username_regex',
    help: 'a regular expression on the username (unanchored)',
  },
  {
    flag: '--fingerprint <sha256>',
    option: 'fingerprint',
    kind: 'fingerprint',
    help: 'a client certificate SHA-256 fingerprint',
  },
  { flag: '--jwt-sub <subject>', option: 'jwtSub', kind: 'jwt_sub', help: "a JWT 'sub' claim" },
];

const DEFAULT_DATA_DIR = process.env.BULWARK_DATA_DIR ?? './data';

const DEFAULT_BLOCKLIST_FILE = defaultGuardConfig().blocklist.file;

/** Given twice, the last would win: a ban written to another broker's list, or kept with another reason. */
const given = single('give it once');

/** Defaults are applied where read (`paths`): a commander default would make `given` refuse the first value. */
interface CommonOptions {
  dataDir?: string;
  blocklistFile?: string;
}

function addCommon(command: Command): Command {
  return command
    .option(
      '--data-dir <dir>',
      `the broker data directory (env BULWARK_DATA_DIR) ${shownDefault(DEFAULT_DATA_DIR)}`,
      given,
    )
    .option(
      '--blocklist-file <name>',
      `block list file inside the data directory, if guard.blocklist.file is changed ${shownDefault(DEFAULT_BLOCKLIST_FILE)}`,
      given,
    );
}

/** A command adds or deletes one entry (docs/admin.md: exactly one selector). */
const once = single('give it once, one entry per command');

function addSelectors(command: Command): Command {
  for (const s of SELECTORS) command.option(s.flag, s.help, once);
  return command;
}

function selectorOf(options: Record<string, unknown>): { kind: BanKind; value: string } {
  const given = SELECTORS.filter((s) => typeof options[s.option] === 'string');
  if (given.length !== 1)
    throw new Error(`give exactly one of ${SELECTORS.map((s) => s.flag.split(' ')[0]).join(', ')}`);
  const s = given[0] as (typeof SELECTORS)[number];
  return { kind: s.kind, value: options[s.option] as string };
}

function describe(entry: BanEntry): string {
  const reason = entry.reason === '' ? '' : `  reason: ${entry.reason}`;
  return `${entry.kind.padEnd(15)} ${entry.value}  until ${entry.until ?? 'forever'}  by ${entry.by}${reason}`;
}

function paths(options: CommonOptions): { dataDir: string; socket: string; file: string } {
  const dataDir = resolve(options.dataDir ?? DEFAULT_DATA_DIR);
  return {
    dataDir,
    socket: adminSocketPath(dataDir),
    file: blocklistPath(dataDir, options.blocklistFile ?? DEFAULT_BLOCKLIST_FILE),
  };
}

function offlineActor(): string {
  return `cli:${process.getuid?.() ?? 'unknown'}@offline`;
}

const OFFLINE_NOTE = 'offline: no broker is running; edited';
const AUDIT_NOTE = 'not recorded in the audit log; the broker records expiries and its own changes';

/**
 * The data directory's broker lock, held for the length of an offline edit. An unreachable control socket does not
 * prove that no broker runs there: one that is starting has taken the lock and loaded the block list before its
 * socket opens, and would neither see the edit nor keep it (its next change rewrites the file from memory).
 */
async function lockForOfflineEdit(dataDir: string): Promise<DataDirLock> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  try {
    return lockDataDir(dataDir);
  } catch (error) {
    if (!(error instanceof BulwarkError)) throw error;
    throw new Error(
      `not changed: ${error.message}, but its control socket did not answer (still starting?); ` +
        'try again once it is ready, so the change goes through it and is audited',
      { cause: error },
    );
  }
}

/** Loads the file into a block list with the default limits, applies `edit`, writes it back atomically. */
async function editOffline<T>(dataDir: string, file: string, edit: (list: Blocklist) => T): Promise<T> {
  const lock = await lockForOfflineEdit(dataDir);
  try {
    return await editUnderLock(file, edit);
  } finally {
    lock.release();
  }
}

async function editUnderLock<T>(file: string, edit: (list: Blocklist) => T): Promise<T> {
  const config = defaultGuardConfig().blocklist;
  const list = new Blocklist({
    maxEntries: config.max_entries,
    maxRegexEntries: config.max_regex_entries,
    maxRegexLength: config.max_regex_length,
  });
  for (const entry of await readBlocklistFile(file)) list.restore(entry);
  const result = edit(list);
  await writeFileAtomic(file, serializeBlocklist(list.list(), 'json'));
  return result;
}

function brokerError(code: string, message: string): Error {
  return new Error(`the broker refused: ${message} (${code})`);
}

const entriesSchema = banEntrySchema.array();

export function registerBanCommandWith(program: Command, io: CliIo): void {
  const ban = program
    .command('ban')
    .description('manage the block list: through the running broker, or offline in the data directory')
    .addHelpText(
      'after',
      '\nWith a broker running on the data directory, changes go through its control socket (<data-dir>/admin.sock),\n' +
        'take effect at once, disconnect matching clients and are audited. Otherwise the block list file is edited.',
    );

  addCommon(
    addSelectors(
      ban
        .command('add')
        .description('ban a client id, username, address, network, pattern, certificate or JWT subject'),
    ),
  )
    .option('--reason <text>', `why (kept with the entry and in the audit log) ${shownDefault('')}`, given)
    .addOption(new Option('--for <duration>', 'ban length, e.g. 30m, 12h, 7d').conflicts('forever').argParser(once))
    .option('--forever', 'ban until deleted')
    .addHelpText(
      'after',
      '\nExamples:\n  bulwark ban add --ip 203.0.113.7 --for 1h --reason "password spraying"\n  bulwark ban add --client-id-regex "^scanner-" --forever',
    )
    .action(
      async (
        options: Record<string, unknown> & CommonOptions & { reason?: string; for?: string; forever?: boolean },
      ) => {
        const { kind, value } = selectorOf(options);
        if ((options.for === undefined) === (options.forever !== true))
          throw new Error('give --for DURATION or --forever');
        let durationMs: number | undefined;
        if (options.for !== undefined) {
          durationMs = parseDuration(options.for);
          if (durationMs === undefined || durationMs <= 0)
            throw new Error(`--for expects a duration such as 30m, 12h or 7d, got "${options.for}"`);
        }
        const { dataDir, socket, file } = paths(options);
        const params = {
          kind,
          value,
          reason: options.reason ?? '',
          ...(durationMs === undefined ? { forever: true } : { duration_ms: durationMs }),
        };
        const online = await callAdmin(socket, 'ban.add', params);
        if (online.kind === 'ok') {
          const entry = (online.result as { entry: BanEntry }).entry;
          io.out(`banned ${describe(entry)}`);
          io.out(`(through the running broker at ${socket}; matching clients were disconnected)`);
          return;
        }
        if (online.kind === 'error') throw brokerError(online.code, online.message);
        const now = Date.now();
        const added = await editOffline(dataDir, file, (list) =>
          list.add(
            {
              kind,
              value,
              reason: options.reason ?? '',
              by: offlineActor(),
              until: durationMs === undefined ? null : now + durationMs,
            },
            now,
          ),
        );
        if (added.kind === 'rejected') throw new Error(`not added: ${added.reason}`);
        io.out(`banned ${describe(added.entry)}`);
        io.out(`(${OFFLINE_NOTE} ${file}; ${AUDIT_NOTE})`);
      },
    );

  addCommon(
    addSelectors(ban.command('delete').description('remove a block-list entry (same selector as it was added with)')),
  )
    .addHelpText('after', '\nExample:\n  bulwark ban delete --cidr 203.0.113.0/24')
    .action(async (options: Record<string, unknown> & CommonOptions) => {
      const { kind, value } = selectorOf(options);
      const { dataDir, socket, file } = paths(options);
      const online = await callAdmin(socket, 'ban.delete', { kind, value });
      if (online.kind === 'ok') {
        io.out(`deleted ${describe((online.result as { entry: BanEntry }).entry)}`);
        io.out(`(through the running broker at ${socket})`);
        return;
      }
      if (online.kind === 'error') throw brokerError(online.code, online.message);
      const removed = await editOffline(dataDir, file, (list) => list.remove(kind, value));
      if (removed === undefined) throw new Error(`no ${kind} entry for that value in ${file}`);
      io.out(`deleted ${describe(removed)}`);
      io.out(`(${OFFLINE_NOTE} ${file}; ${AUDIT_NOTE})`);
    });

  addCommon(ban.command('list').description('show block-list entries (and, online, active throttle lockouts)'))
    .option('--json', 'print JSON')
    .action(async (options: CommonOptions & { json?: boolean }) => {
      const { socket, file } = paths(options);
      const online = await callAdmin(socket, 'ban.list', {});
      if (online.kind === 'error') throw brokerError(online.code, online.message);
      let entries: BanEntry[];
      let throttled: unknown[] = [];
      let source: string;
      if (online.kind === 'ok') {
        const result = online.result as { entries: unknown; throttled: unknown[] };
        entries = entriesSchema.parse(result.entries);
        throttled = result.throttled;
        source = `the running broker at ${socket}`;
      } else {
        entries = await readBlocklistFile(file);
        source = `${file} (offline: no broker is running)`;
      }
      if (options.json === true) {
        io.out(JSON.stringify({ source, entries, throttled }, null, 2));
        return;
      }
      const now = Date.now();
      io.out(`${entries.length} entries from ${source}`);
      for (const entry of entries) {
        const expired = entry.until !== null && Date.parse(entry.until) <= now ? '  (expired)' : '';
        io.out(`  ${describe(entry)}${expired}`);
      }
      for (const t of throttled as Array<{ dimension: string; key: string; until: string; reason: string }>)
        io.out(`  throttle ${t.dimension} ${t.key} until ${t.until} (${t.reason}) [not in the block list]`);
    });

  addCommon(
    ban
      .command('export')
      .argument('<file>', 'where to write (.json, or .yaml/.yml for YAML)')
      .description('write the block list to a file'),
  ).action(async (target: string, options: CommonOptions) => {
    const { socket, file } = paths(options);
    const online = await callAdmin(socket, 'ban.export', {});
    if (online.kind === 'error') throw brokerError(online.code, online.message);
    const entries =
      online.kind === 'ok'
        ? entriesSchema.parse((online.result as { entries: unknown }).entries)
        : await readBlocklistFile(file);
    await writeFileAtomic(resolve(target), serializeBlocklist(entries, formatForPath(target)));
    io.out(
      `exported ${entries.length} entries to ${target} (${online.kind === 'ok' ? `from the running broker at ${socket}` : `offline, from ${file}`})`,
    );
  });

  addCommon(
    ban
      .command('import')
      .argument('<file>', 'a block list in JSON or YAML, as written by ban export')
      .description('merge entries from a file into the block list'),
  ).action(async (source: string, options: CommonOptions) => {
    let text: string;
    try {
      text = await readFile(source, 'utf8');
    } catch (error) {
      throw new Error(`cannot read ${source}: ${(error as Error).message}`, { cause: error });
    }
    let entries: BanEntry[];
    try {
      entries = parseBlocklistText(text, source);
    } catch (error) {
      throw error instanceof BulwarkError ? new Error(error.describe(), { cause: error }) : error;
    }
    const { dataDir, socket, file } = paths(options);
    const online = await callAdmin(socket, 'ban.import', { entries });
    if (online.kind === 'error') throw brokerError(online.code, online.message);
    let outcome: { added: number; skipped: Array<{ kind: string; value: string; reason: string }> };
    if (online.kind === 'ok') outcome = online.result as typeof outcome;
    else {
      outcome = await editOffline(dataDir, file, (list) => {
        const skipped: Array<{ kind: string; value: string; reason: string }> = [];
        let added = 0;
        for (const entry of entries) {
          const result = list.restore(entry);
          if (result.kind === 'added') added += 1;
          else skipped.push({ kind: entry.kind, value: entry.value, reason: result.reason });
        }
        return { added, skipped };
      });
    }
    io.out(`imported ${outcome.added} entries from ${source}`);
    for (const s of outcome.skipped) io.out(`  skipped ${s.kind} ${s.value}: ${s.reason}`);
    io.out(
      online.kind === 'ok' ? `(through the running broker at ${socket})` : `(${OFFLINE_NOTE} ${file}; ${AUDIT_NOTE})`,
    );
  });
  addCommon(
    ban
      .command('unthrottle')
      .description('lift a brute-force throttle lockout early (running broker only; lockouts live in its memory)')
      .option('--username <name>', 'the locked-out username', once)
      .option('--ip <address>', 'the locked-out source address', once),
  ).action(async (options: CommonOptions & { username?: string; ip?: string }) => {
    if ((options.username === undefined) === (options.ip === undefined))
      throw new Error('give exactly one of --username, --ip');
    const { socket } = paths(options);
    const params =
      options.username !== undefined
        ? { dimension: 'username', key: options.username }
        : { dimension: 'address', key: options.ip };
    const online = await callAdmin(socket, 'throttle.release', params);
    if (online.kind === 'unreachable') throw new Error('no broker is running; throttle lockouts end with the broker');
    if (online.kind === 'error') throw brokerError(online.code, online.message);
    io.out(`released ${params.dimension} ${params.key} (through the running broker at ${socket})`);
  });
}

/** `bulwark ban add|delete|list|export|import`. */
export function registerBanCommand(program: Command): void {
  registerBanCommandWith(program, { out: (line) => console.log(line) });
}
