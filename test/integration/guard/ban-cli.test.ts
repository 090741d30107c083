import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import { registerBanCommands } from '../../../src/admin/ban-commands.js';
import { AdminServer } from '../../../src/admin/server.js';
import { matchesClient, type BanEntry, type GuardClient } from '../../../src/guard/blocklist.js';
import { registerBanCommandWith } from '../../../src/guard/cli.js';
import { guardConfigSchema } from '../../../src/guard/config.js';
import { Guard } from '../../../src/guard/guard.js';

let dir: string;
let cleanups: Array<() => Promise<void>>;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'bw-ban-'));
  cleanups = [];
});
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `bulwark <args>` in-process; returns what it printed, or the error it failed with. */
async function bulwark(...args: string[]): Promise<{ out: string; error?: string }> {
  const lines: string[] = [];
  const program = new Command('bulwark')
    .exitOverride()
    .configureOutput({ writeOut: (s) => lines.push(s), writeErr: (s) => lines.push(s) });
  registerBanCommandWith(program, { out: (line) => lines.push(`${line}\n`) });
  try {
    await program.parseAsync(['node', 'bulwark', ...args]);
    return { out: lines.join('') };
  } catch (error) {
    return { out: lines.join(''), error: error instanceof Error ? error.message : String(error) };
  }
}

/** A running broker's guard and control channel on `dir`, with live clients the ban listener disconnects. */
async function runningBroker(live: GuardClient[] = []) {
  const events: AuditEvent[] = [];
  const guard = await Guard.open({ config: guardConfigSchema.parse({}), dataDir: dir, onEvent: (e) => events.push(e) });
  const server = new AdminServer({ dataDir: dir, onAudit: (e) => events.push(e) });
  registerBanCommands(server, guard);
  const disconnected: string[] = [];
  guard.onBanAdded((entry: BanEntry) => {
    for (const client of live) if (matchesClient(entry, client)) disconnected.push(client.clientId);
  });
  await server.start();
  const stop = async () => {
    await server.stop();
    await guard.stop();
  };
  cleanups.push(stop);
  return { guard, server, events, disconnected, stop };
}

const uid = process.getuid?.();

describe('bulwark ban, offline', () => {
  it('adds, lists and deletes entries in the data directory and says it worked offline', async () => {
    const added = await bulwark(
      'ban',
      'add',
      '--cidr',
      '203.0.113.77/24',
      '--for',
      '2h',
      '--reason',
      'spray',
      '--data-dir',
      dir,
    );
    expect(added.error).toBeUndefined();
    expect(added.out).toContain('cidr');
    expect(added.out).toContain('203.0.113.0/24');
    expect(added.out).toMatch(/offline: no broker is running/);
    const stored = JSON.parse(readFileSync(join(dir, 'blocklist.json'), 'utf8')) as { entries: BanEntry[] };
    expect(stored.entries).toEqual([
      expect.objectContaining({ kind: 'cidr', value: '203.0.113.0/24', reason: 'spray', by: `cli:${uid}@offline` }),
    ]);
    const until = stored.entries[0]?.until ?? '';
    const created = stored.entries[0]?.created ?? '';
    expect(Date.parse(until) - Date.parse(created)).toBe(2 * 3_600_000);

    const listed = await bulwark('ban', 'list', '--data-dir', dir);
    expect(listed.out).toMatch(/1 entries from .*offline/);
    expect(listed.out).toContain('203.0.113.0/24');

    const deleted = await bulwark('ban', 'delete', '--cidr', '203.0.113.0/24', '--data-dir', dir);
    expect(deleted.out).toMatch(/deleted cidr/);
    expect((JSON.parse(readFileSync(join(dir, 'blocklist.json'), 'utf8')) as { entries: unknown[] }).entries).toEqual(
      [],
    );
    expect((await bulwark('ban', 'delete', '--cidr', '203.0.113.0/24', '--data-dir', dir)).error).toMatch(
      /no cidr entry/,
    );
  });

  it('refuses to edit while a broker holds the data directory without answering on its socket, and never leaves the lock', async () => {
    // A broker that is starting holds the lock and has read the block list before its control socket opens.
    const starting = spawn('sleep', ['60'], { stdio: 'ignore' });
    cleanups.push(async () => {
      starting.kill();
    });
    writeFileSync(join(dir, 'bulwark.lock'), `${starting.pid}\n`);
    const refused = await bulwark('ban', 'add', '--username', 'mallory', '--forever', '--data-dir', dir);
    expect(refused.error).toBe(
      `not changed: another broker (pid ${starting.pid}) is running on data directory ${dir}, but its control ` +
        'socket did not answer (still starting?); try again once it is ready, so the change goes through it and is audited',
    );
    expect(existsSync(join(dir, 'blocklist.json'))).toBe(false);
    expect(readFileSync(join(dir, 'bulwark.lock'), 'utf8')).toBe(`${starting.pid}\n`);

    // Once that process is gone its lock is stale: the edit takes it over and gives it up when done.
    starting.kill();
    await new Promise((done) => starting.once('exit', done));
    const added = await bulwark('ban', 'add', '--username', 'mallory', '--forever', '--data-dir', dir);
    expect(added.error).toBeUndefined();
    expect(existsSync(join(dir, 'bulwark.lock'))).toBe(false);
    const stored = JSON.parse(readFileSync(join(dir, 'blocklist.json'), 'utf8')) as { entries: BanEntry[] };
    expect(stored.entries.map((e) => e.value)).toEqual(['mallory']);
    expect((await bulwark('ban', 'delete', '--username', 'mallory', '--data-dir', dir)).error).toBeUndefined();
    expect(existsSync(join(dir, 'bulwark.lock'))).toBe(false);
  });

  it('is picked up by the broker at its next start', async () => {
    await bulwark('ban', 'add', '--username', 'mallory', '--forever', '--data-dir', dir);
    const { guard } = await runningBroker();
    expect(guard.checkConnect({ clientId: 'x', username: 'mallory', address: '192.0.2.1' })).toMatchObject({
      kind: 'refuse',
      reason: 'banned',
    });
  });

  it('exports to YAML and imports into another data directory', async () => {
    await bulwark('ban', 'add', '--client-id-regex', '^scanner-', '--forever', '--data-dir', dir);
    await bulwark('ban', 'add', '--jwt-sub', 'svc-9', '--for', '1d', '--data-dir', dir);
    const file = join(dir, 'export.yaml');
    expect((await bulwark('ban', 'export', file, '--data-dir', dir)).out).toMatch(/exported 2 entries/);
    expect(readFileSync(file, 'utf8')).toMatch(/^version: 1\nentries:/);
    const other = mkdtempSync(join(tmpdir(), 'bw-ban-other-'));
    try {
      const imported = await bulwark('ban', 'import', file, '--data-dir', other);
      expect(imported.out).toMatch(/imported 2 entries/);
      const copy = JSON.parse(readFileSync(join(other, 'blocklist.json'), 'utf8')) as { entries: BanEntry[] };
      const original = JSON.parse(readFileSync(join(dir, 'blocklist.json'), 'utf8')) as { entries: BanEntry[] };
      expect(copy.entries).toEqual(original.entries);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('refuses an import file with a broken entry and names its position', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(
      file,
      '{"version": 1, "entries": [\n  {"kind": "address", "value": "1.2.3.4", "by": "x", "created": "now", "until": null}\n]}\n',
    );
    const result = await bulwark('ban', 'import', file, '--data-dir', dir);
    expect(result.error).toMatch(/bad\.json:2:\d+: block list entry invalid at entries\.0\.created/);
  });

  it.each([
    [['ban', 'add', '--for', '1h'], /exactly one of --client-id/],
    [['ban', 'add', '--username', 'a', '--ip', '192.0.2.1', '--for', '1h'], /exactly one of/],
    [['ban', 'add', '--username', 'a'], /--for DURATION or --forever/],
    [['ban', 'add', '--username', 'a', '--for', '300'], /duration such as/],
    [['ban', 'add', '--ip', 'not-an-ip', '--forever'], /not an IP address/],
    [['ban', 'add', '--username-regex', '(a+)+', '--forever'], /catastrophic backtracking/],
  ])('refuses %j with a clear message', async (args, message) => {
    const result = await bulwark(...args, '--data-dir', dir);
    expect(result.error).toMatch(message);
  });

  it.each(['add', 'delete', 'list', 'export', 'import'])('documents ban %s in --help', async (sub) => {
    const result = await bulwark('ban', sub, '--help');
    expect(result.out).toContain(`Usage: bulwark ban ${sub}`);
    expect(result.out).toContain('--data-dir');
    if (sub === 'add')
      for (const flag of [
        '--client-id',
        '--username',
        '--ip',
        '--cidr',
        '--client-id-regex',
        '--username-regex',
        '--fingerprint',
        '--jwt-sub',
        '--reason',
        '--for',
        '--forever',
      ])
        expect(result.out).toContain(flag);
  });
});

describe('bulwark ban, against a running broker', () => {
  const live: GuardClient[] = [
    { clientId: 'meter-1', username: 'meter', address: '192.0.2.50' },
    { clientId: 'meter-2', username: 'meter', address: '192.0.2.51' },
    { clientId: 'hvac-1', username: 'hvac', address: '2001:db8:5::10', certFingerprint: 'BE'.repeat(32) },
    { clientId: 'svc', username: 'svc', address: '198.51.100.1', jwtSubject: 'robot-7' },
  ];

  it.each<[string[], string[]]>([
    [['--client-id', 'meter-1'], ['meter-1']],
    [
      ['--username', 'meter'],
      ['meter-1', 'meter-2'],
    ],
    [['--ip', '192.0.2.51'], ['meter-2']],
    [['--cidr', '2001:db8::/32'], ['hvac-1']],
    [
      ['--client-id-regex', '^meter-'],
      ['meter-1', 'meter-2'],
    ],
    [['--fingerprint', 'be'.repeat(32)], ['hvac-1']],
    [['--jwt-sub', 'robot-7'], ['svc']],
  ])(
    'ban add %j goes through the socket and disconnects exactly the matching live clients',
    async (selector, expected) => {
      const broker = await runningBroker(live);
      const result = await bulwark(
        'ban',
        'add',
        ...selector,
        '--for',
        '30m',
        '--reason',
        'incident',
        '--data-dir',
        dir,
      );
      expect(result.error).toBeUndefined();
      expect(result.out).toMatch(/through the running broker/);
      expect(broker.disconnected).toEqual(expected);
      const actor = `cli:${uid}@unix-socket`;
      expect(broker.events.map((e) => [e.event.action, e.actor])).toEqual([
        ['guard.banned', actor],
        ['admin.command', actor],
      ]);
      // Already on disk when the CLI returns: the broker answers only after the write.
      const stored = JSON.parse(readFileSync(join(dir, 'blocklist.json'), 'utf8')) as { entries: BanEntry[] };
      expect(stored.entries).toHaveLength(1);
    },
  );

  it.each<[string[]]>([
    [['add', '--ip', '192.0.2.50', '--ip', '192.0.2.51', '--for', '30m']],
    [['add', '--client-id', 'meter-1', '--client-id', 'meter-2', '--forever']],
    [['add', '--ip', '192.0.2.50', '--for', '30m', '--for', '7d']],
    [['unthrottle', '--username', 'meter', '--username', 'hvac']],
    // Options with a default too: the last --data-dir would have banned on another broker's list.
    [['add', '--ip', '192.0.2.50', '--for', '30m', '--data-dir', join(tmpdir(), 'bw-ban-not-this-one')]],
    [['add', '--ip', '192.0.2.50', '--for', '30m', '--blocklist-file', 'a.json', '--blocklist-file', 'b.json']],
    [['add', '--ip', '192.0.2.50', '--for', '30m', '--reason', 'spraying', '--reason', 'typo']],
  ])('refuses an option given twice rather than acting on the last value alone: ban %j', async (args) => {
    const broker = await runningBroker(live);
    const result = await bulwark('ban', ...args, '--data-dir', dir);
    expect(result.error).toMatch(/given more than once \(also "[^"]+"\)/);
    // Nothing was banned, released or disconnected: a command that said "banned 192.0.2.51" would have left
    // 192.0.2.50 connected.
    expect(broker.disconnected).toEqual([]);
    expect(broker.events).toEqual([]);
    expect(existsSync(join(dir, 'blocklist.json'))).toBe(false);
  });

  it('lists, deletes and survives a restart', async () => {
    const first = await runningBroker();
    await bulwark('ban', 'add', '--ip', '192.0.2.9', '--forever', '--data-dir', dir);
    await bulwark('ban', 'add', '--username', 'eve', '--for', '1h', '--data-dir', dir);
    const listed = await bulwark('ban', 'list', '--json', '--data-dir', dir);
    const parsed = JSON.parse(listed.out) as { source: string; entries: BanEntry[] };
    expect(parsed.source).toMatch(/running broker/);
    expect(parsed.entries.map((e) => e.value)).toEqual(['192.0.2.9', 'eve']);
    expect((await bulwark('ban', 'delete', '--username', 'eve', '--data-dir', dir)).out).toMatch(
      /through the running broker/,
    );
    expect(first.events.filter((e) => e.event.action === 'guard.unbanned').map((e) => e.actor)).toEqual([
      `cli:${uid}@unix-socket`,
    ]);
    await first.stop();
    cleanups.pop();
    const second = await runningBroker();
    expect(second.guard.list().map((e) => e.value)).toEqual(['192.0.2.9']);
  });

  it('reports the broker refusing a ban instead of falling back to the file', async () => {
    const broker = await runningBroker();
    const result = await bulwark('ban', 'add', '--client-id-regex', '(x|xy)*z', '--forever', '--data-dir', dir);
    expect(result.error).toMatch(/the broker refused: pattern refused/);
    expect(broker.guard.list()).toEqual([]);
    expect(broker.events.map((e) => [e.event.action, e.event.outcome])).toEqual([['admin.command', 'failure']]);
  });

  it('imports through the broker, which disconnects clients the imported entries match', async () => {
    const file = join(dir, 'incoming.json');
    writeFileSync(
      file,
      JSON.stringify({
        version: 1,
        entries: [
          { kind: 'username', value: 'hvac', by: 'soc', reason: 'feed', created: '2026-01-01T00:00:00Z', until: null },
        ],
      }),
    );
    const broker = await runningBroker(live);
    const result = await bulwark('ban', 'import', file, '--data-dir', dir);
    expect(result.out).toMatch(/imported 1 entries[\s\S]*through the running broker/);
    expect(broker.disconnected).toEqual(['hvac-1']);
    expect(broker.guard.list()[0]).toMatchObject({ by: 'soc', created: '2026-01-01T00:00:00.000Z' });
  });

  it('shows throttle lockouts in ban list and lifts one with ban unthrottle', async () => {
    const broker = await runningBroker();
    const guesser = { clientId: 'g', username: 'alice', address: '::ffff:192.0.2.77' };
    for (let i = 0; i < 20; i += 1)
      broker.guard.recordAuthResult({ ...guesser, username: i % 4 === 0 ? 'alice' : `u${i}` }, false);
    expect(broker.guard.checkConnect(guesser).kind).toBe('refuse');
    const listed = await bulwark('ban', 'list', '--data-dir', dir);
    expect(listed.out).toMatch(/throttle address 192\.0\.2\.77 until .* \(connectionRateExceeded\)/);
    expect(listed.out).toMatch(/throttle username alice until/);
    expect((await bulwark('ban', 'unthrottle', '--ip', '::ffff:192.0.2.77', '--data-dir', dir)).out).toMatch(
      /released address/,
    );
    expect((await bulwark('ban', 'unthrottle', '--username', 'alice', '--data-dir', dir)).out).toMatch(
      /released username/,
    );
    expect(broker.guard.checkConnect(guesser).kind).toBe('pass');
    const released = broker.events.filter((e) => e.event.action === 'guard.unbanned');
    expect(released.map((e) => [e.guard?.dimension, e.actor])).toEqual([
      ['ip', `cli:${uid}@unix-socket`],
      ['username', `cli:${uid}@unix-socket`],
    ]);
    expect((await bulwark('ban', 'unthrottle', '--username', 'alice', '--data-dir', dir)).error).toMatch(/not_found/);
  });

  it('refuses to unthrottle offline, since lockouts live only in a running broker', async () => {
    expect((await bulwark('ban', 'unthrottle', '--username', 'alice', '--data-dir', dir)).error).toMatch(
      /no broker is running/,
    );
  });
});
