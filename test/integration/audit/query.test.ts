import { Command } from 'commander';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerAuditCommand } from '../../../audit/cli.js';
import type { AuditEvent } from '../../../audit/events.js';
import { queryAuditLog, type AuditQuery } from '../../../audit/query.js';
import { runCli } from '../../helpers/cli.js';
import { openAuditWriter } from '../../../audit/writer.js';
import {
  allTempDirs,
  auditFiles,
  findSecrets,
  readLines,
  removeTempDirs,
  tempDir,
  testKey,
  writerOptions,
} from './harness.js';

const outputs: string[] = [];
afterAll(() => {
  expect(findSecrets(allTempDirs(), outputs)).toEqual([]);
  removeTempDirs();
});

const DAY = 86_400_000;
const T0 = Date.parse('2026-11-01T00:00:00Z');

/** Day-by-day events over rotated files; one client id is a spreadsheet formula, one carries a terminal escape. */
const EVENTS: Array<{ day: number; event: AuditEvent }> = [
  {
    day: 0,
    event: {
      event: { action: 'authn.denied', outcome: 'failure', reason: 'bad password', code: 'badUserNameOrPassword' },
      client: { ip: '10.0.0.7', port: 5000 },
      // Refused: the username is only what the CONNECT claimed.
      mqtt: { client_id: 'alice-phone', username: 'alice' },
      authn: { by: 'password-file' },
    },
  },
  {
    day: 1,
    event: {
      event: { action: 'authz.publish_denied', outcome: 'failure', code: 'notAuthorized' },
      client: { ip: '10.0.0.7' },
      user: { name: 'alice' },
      mqtt: { client_id: 'alice-phone', topic: 'plant/line1/cmd', username: 'alice' },
      authz: { rule: 'policies/site.yaml:42' },
    },
  },
  {
    day: 2,
    event: {
      event: { action: 'authz.subscribe_denied', outcome: 'failure', code: 'notAuthorized' },
      client: { ip: '192.168.1.20' },
      user: { name: 'bob' },
      mqtt: { client_id: '=HYPERLINK("http://evil")', topic: 'plant/+/cmd' },
      authz: { rule: 'default-deny' },
    },
  },
  {
    day: 3,
    event: {
      event: { action: 'authz.publish_allowed', outcome: 'success' },
      client: { ip: '::ffff:10.0.0.9' },
      user: { name: 'carol' },
      mqtt: { client_id: 'carol\u001b[2J', topic: 'plant/line2/status' },
      authz: { rule: 'policies/site.yaml:7' },
    },
  },
  {
    day: 4,
    event: {
      event: { action: 'guard.banned', outcome: 'success', reason: 'flapping' },
      client: { ip: '2001:db8::1' },
      guard: { key: '2001:db8::1', dimension: 'ip' },
    },
  },
  {
    day: 5,
    event: {
      event: { action: 'authz.publish_denied', outcome: 'failure', code: 'notAuthorized' },
      client: { ip: '10.0.0.8' },
      user: { name: 'bob' },
      // A certificate verified bob; the CONNECT claimed admin.
      mqtt: { client_id: 'bob-1', topic: '$SYS/broker/clients', username: 'admin' },
      authz: { rule: 'policies/site.yaml:3' },
    },
  },
];

let dir: string;
beforeAll(async () => {
  dir = tempDir();
  let now = T0;
  // Rotation by age: one file per day, so queries must stream across files.
  const writer = await openAuditWriter(writerOptions(dir, { now: () => now, rotateMaxAgeMs: DAY }));
  for (const { day, event } of EVENTS) {
    now = T0 + day * DAY + 3_600_000;
    writer.record(event);
    await writer.flush();
  }
  await writer.close();
});

async function seqs(query: AuditQuery): Promise<number[]> {
  const out: number[] = [];
  for await (const m of queryAuditLog(dir, query)) out.push(m.record.seq);
  return out;
}

describe('audit query filters', () => {
  let seqOf: Map<number, number>;
  beforeAll(async () => {
    const all: number[] = [];
    for await (const m of queryAuditLog(dir, {}))
      if (m.record.event.action !== 'audit.checkpoint') all.push(m.record.seq);
    seqOf = new Map(all.map((s, i) => [i, s]));
    expect(auditFiles(dir).length).toBeGreaterThan(3);
    expect(all).toHaveLength(EVENTS.length);
  });
  const ev = (...idx: number[]): number[] => idx.map((i) => seqOf.get(i) as number);

  it('by time window, inclusive since and exclusive until', async () => {
    expect(await seqs({ since: T0 + DAY, until: T0 + 3 * DAY, actions: ['auth*'] })).toEqual(ev(1, 2));
  });
  it('by exact action and by action prefix', async () => {
    expect(await seqs({ actions: ['authz.publish_denied'] })).toEqual(ev(1, 5));
    expect(await seqs({ actions: ['authz.*', 'guard.banned'] })).toEqual(ev(1, 2, 3, 4, 5));
  });
  it('by outcome, user and client id', async () => {
    expect(await seqs({ outcome: 'failure' })).toEqual(ev(0, 1, 2, 5));
    expect(await seqs({ user: 'bob' })).toEqual(ev(2, 5));
    expect(await seqs({ clientId: 'alice-phone' })).toEqual(ev(0, 1));
  });
  it('by verified user name only with user, by the claimed CONNECT username with username', async () => {
    expect(await seqs({ user: 'alice' })).toEqual(ev(1));
    expect(await seqs({ user: 'admin' })).toEqual([]);
    expect(await seqs({ username: 'alice' })).toEqual(ev(0, 1));
    expect(await seqs({ username: 'admin' })).toEqual(ev(5));
    expect(await seqs({ user: 'bob', username: 'admin' })).toEqual(ev(5));
  });
  it('by address or CIDR block, matching IPv4-mapped IPv6 addresses as IPv4', async () => {
    expect(await seqs({ ip: '10.0.0.7' })).toEqual(ev(0, 1));
    expect(await seqs({ ip: '10.0.0.0/24' })).toEqual(ev(0, 1, 3, 5));
    expect(await seqs({ ip: '2001:db8::/32' })).toEqual(ev(4));
  });
  it('by MQTT topic filter, where wildcards do not match $ topics', async () => {
    expect(await seqs({ topic: 'plant/+/cmd' })).toEqual(ev(1, 2));
    expect(await seqs({ topic: 'plant/#' })).toEqual(ev(1, 2, 3));
    expect(await seqs({ topic: '#' })).toEqual(ev(1, 2, 3));
    expect(await seqs({ topic: '$SYS/#' })).toEqual(ev(5));
  });
  it('answers "who was denied on this topic, and which rule decided" in one query, with a limit', async () => {
    const found: string[] = [];
    for await (const m of queryAuditLog(dir, { actions: ['authz.*_denied'], topic: 'plant/#', limit: 1 })) {
      found.push(`${m.record.user?.name ?? '-'} ${m.record.authz?.rule ?? '-'}`);
    }
    expect(found).toEqual(['alice policies/site.yaml:42']);
  });
});

describe('bulwark audit commands', () => {
  let stdout: string[];
  let stderr: string[];
  beforeAll(() => {
    process.exitCode = undefined;
  });
  afterEach(() => {
    vi.restoreAllMocks();
    outputs.push(stdout.join(''), stderr.join(''));
    process.exitCode = undefined;
  });

  async function run(...args: string[]): Promise<string> {
    stdout = [];
    stderr = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout.push(String(chunk));
      return true;
    });
    vi.spyOn(console, 'log').mockImplementation((line: unknown) => void stdout.push(`${String(line)}\n`));
    vi.spyOn(console, 'error').mockImplementation((line: unknown) => void stderr.push(`${String(line)}\n`));
    const program = new Command('bulwark');
    registerAuditCommand(program);
    await program.parseAsync(['node', 'bulwark', 'audit', ...args]);
    return stdout.join('');
  }

  it('query --format csv neutralises spreadsheet formulas and quotes per RFC 4180', async () => {
    const out = await run('query', dir, '--user', 'bob', '--format', 'csv');
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toBe('timestamp,seq,action,outcome,user,client_id,ip,topic,decided_by,reason');
    expect(lines[1]).toContain(
      `,bob,"'=HYPERLINK(""http://evil"")",192.168.1.20,plant/+/cmd,default-deny,notAuthorized`,
    );
    expect(lines).toHaveLength(3);
    expect(stderr.join('')).toBe('2 records matched in 6 files\n');
  });

  it('query --username matches the claimed CONNECT username, --user the verified identity', async () => {
    const claimed = await run('query', dir, '--username', 'admin', '--format', 'json');
    expect(
      claimed
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as AuditEvent).mqtt?.client_id),
    ).toEqual(['bob-1']);
    expect(await run('query', dir, '--user', 'admin', '--format', 'json')).toBe('');
  });

  it('query --format table escapes control characters a client chose', async () => {
    const out = await run('query', dir, '--user', 'carol');
    expect(out).not.toContain('\u001b');
    expect(out).toContain('carol\\u001b[2J');
    expect(out.split('\n')[0]).toMatch(/^TIMESTAMP\s+SEQ\s+ACTION\s+OUTCOME\s+USER/);
  });

  it('query --format json prints the stored lines unchanged', async () => {
    const out = await run('query', dir, '--action', 'guard.banned', '--format', 'json');
    const stored = auditFiles(dir)
      .flatMap((f) => readLines(f))
      .filter((l) => l.includes('"guard.banned"'));
    expect(out).toBe(`${stored.join('\n')}\n`);
  });

  it('query --since skips whole files older than the window', async () => {
    await run('query', dir, '--since', '2026-11-05T00:00:00Z', '--action', 'guard.*,authz.*', '--format', 'json');
    expect(stderr.join('')).toBe('2 records matched in 3 files\n');
  });

  it('verify exits 0 when intact and 1 with the report when not', async () => {
    expect(await run('verify', dir, '--public-key', testKey().publicKeyFile)).toMatch(/^OK 6 files, /);
    expect(process.exitCode).toBe(0);
    const empty = tempDir();
    expect(await run('verify', empty)).toBe(
      `BROKEN missing-file: ${empty} line 0: the directory holds no audit files\n`,
    );
    expect(process.exitCode).toBe(1);
  });

  it('verify of a live log before its first checkpoint says nothing is signed yet, not "signed by trusted key "', async () => {
    const live = tempDir();
    const writer = await openAuditWriter(writerOptions(live));
    writer.record(EVENTS[0]!.event);
    await writer.flush();
    const out = await run('verify', live, '--live', '--public-key', testKey().publicKeyFile);
    await writer.close();
    expect(out).toMatch(
      /^OK 1 files, 1 records \(seq 1\.\.1\), 0 checkpoints; nothing signed yet \(no checkpoint\); live: /,
    );
    expect(out).not.toContain('signed by trusted key');
    expect(process.exitCode).toBe(0);
  });

  it('verify --json prints the result object', async () => {
    const parsed = JSON.parse(await run('verify', dir, '--json')) as { kind: string; summary: { files: number } };
    expect(parsed).toMatchObject({ kind: 'intact', summary: { files: 6 } });
  });
});

describe('bulwark audit refusing what it cannot run (exit 2, naming the option and value)', () => {
  let logDir: string;
  beforeAll(async () => {
    logDir = tempDir();
    const writer = await openAuditWriter(writerOptions(logDir));
    for (const { event } of EVENTS) writer.record(event);
    await writer.close();
  });

  it.each([
    [
      ['--ip', 'not-an-ip'],
      "option '--ip <address>' argument 'not-an-ip' is invalid. expected an IPv4 or IPv6 address",
    ],
    [['--ip', '127.0.0.1/99'], "argument '127.0.0.1/99' is invalid. the prefix length of an IPv4 block is a whole"],
    [['--ip', '127.0.0.1/abc'], "argument '127.0.0.1/abc' is invalid. the prefix length of an IPv4 block"],
    [['--ip', '2001:db8::/129'], "argument '2001:db8::/129' is invalid. the prefix length of an IPv6 block"],
    [['--since', '2026-02-30'], "option '--since <time>' argument '2026-02-30' is invalid. expected an ISO 8601"],
    [['--until', '2026-11-31T00:00:00Z'], "option '--until <time>' argument '2026-11-31T00:00:00Z' is invalid"],
    [['--since', '2026-13-01'], "argument '2026-13-01' is invalid"],
    // Keeping only the last would answer with records that do not match the first.
    [
      ['--client', 'gw-1', '--client', 'gw-2'],
      "option '--client <id>' argument 'gw-2' is invalid. given more than once (also \"gw-1\"); this filter takes one value",
    ],
    [['--user', 'a', '--user', 'b'], "option '--user <name>' argument 'b' is invalid. given more than once"],
    [['--ip', '10.0.0.0/8', '--ip', '192.0.2.1'], "argument '192.0.2.1' is invalid. given more than once"],
    [['--since', '7d', '--since', '1d'], "option '--since <time>' argument '1d' is invalid. given more than once"],
    [
      ['--format', 'json', '--format=csv'],
      "option '--format <format>' argument 'csv' is invalid. given more than once",
    ],
  ])('query %j', async (args, message) => {
    const result = await runCli(['audit', 'query', logDir, ...args]);
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe('');
    expect(result.code).toBe(2);
  });

  it('query accepts the last day of a month and a prefix at its limit', async () => {
    for (const args of [
      ['--since', '2028-02-29'],
      ['--ip', '10.0.0.0/32'],
      ['--ip', '::/0'],
    ]) {
      const result = await runCli(['audit', 'query', logDir, ...args]);
      expect(result.code, result.stderr).toBe(0);
    }
  });

  it.each(['verify', 'query'])('%s of a directory that does not exist', async (command) => {
    const missing = `${logDir}/not-there`;
    const result = await runCli(['audit', command, missing]);
    expect(result.stderr).toBe(`bulwark audit: ${missing}: no such directory\n`);
    expect(result.stdout).toBe('');
    expect(result.code).toBe(2);
  });

  it('verify of a file rather than a directory', async () => {
    const file = auditFiles(logDir)[0]!;
    const result = await runCli(['audit', 'verify', file]);
    expect(result.stderr).toBe(`bulwark audit: ${file}: not a directory\n`);
    expect(result.code).toBe(2);
  });
});
