import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { CLI, runCli, startCliBroker } from '../../helpers/cli.js';
import { freePort } from '../../helpers/free-port.js';
import { until } from '../../helpers/until.js';

function writeConfig(dir: string, port: number, extra: string[] = []): string {
  const file = join(dir, 'bulwark.yaml');
  writeFileSync(
    file,
    [
      `data_dir: ${join(dir, 'data')}`,
      'warmup_connects: 0',
      'sys_interval_seconds: 0',
      'authentication: { anonymous: true }',
      'listeners:',
      `  - { name: local, port: ${port} }`,
      ...extra,
      '',
    ].join('\n'),
  );
  return file;
}

const exited = (child: ChildProcess): Promise<number | null> =>
  new Promise((resolve) =>
    child.exitCode !== null ? resolve(child.exitCode) : child.on('exit', (code) => resolve(code)),
  );

/** Every store file with its content: what a second broker must not touch. */
function storeSnapshot(dataDir: string): Record<string, string> {
  const store = join(dataDir, 'store');
  return Object.fromEntries(readdirSync(store).map((f) => [f, readFileSync(join(store, f)).toString('base64')]));
}

describe('bulwark start and its data directory', () => {
  it('a second start on the same data directory is refused before it reads the store; the first keeps its journal', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-lock-'));
    const port = await freePort();
    const config = writeConfig(dir, port);
    const url = `mqtt://127.0.0.1:${port}`;
    let first = await startCliBroker(['-c', config]);
    const subscriber = await mqtt.connectAsync(url, { clientId: 'lock-sub', clean: false, protocolVersion: 4 });
    await subscriber.subscribeAsync('lock/#', { qos: 1 });
    await subscriber.endAsync();
    const before = storeSnapshot(join(dir, 'data'));

    const second = await runCli(['start', '-c', config, '-p', String(await freePort())]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(
      `bulwark: cannot start: another broker (pid ${first.child.pid}) is running on data directory ${join(dir, 'data')}`,
    );
    // Refused before the store was read (and so before it could be compacted) or a port opened.
    expect(second.stderr).not.toMatch(/store restored|listening/);
    // The journal is append-only: the first broker may have added to it, but its files and what they held remain.
    const after = storeSnapshot(join(dir, 'data'));
    expect(Object.keys(after)).toEqual(Object.keys(before));
    for (const [file, content] of Object.entries(before))
      expect(Buffer.from(after[file]!, 'base64').subarray(0, Buffer.from(content, 'base64').length)).toEqual(
        Buffer.from(content, 'base64'),
      );

    const publisher = await mqtt.connectAsync(url, { clientId: 'lock-pub', protocolVersion: 4 });
    for (let i = 0; i < 5; i++) await publisher.publishAsync('lock/x', `m${i}`, { qos: 1 });
    await publisher.endAsync();
    first.child.kill('SIGKILL');
    await exited(first.child);

    // The killed broker's lock is left behind naming a dead pid: the restart takes it over and says so.
    first = await startCliBroker(['-c', config]);
    await until(() => first.output().includes('which is no longer running'), 'the takeover log line');
    const received: string[] = [];
    const resumed = mqtt.connect(url, { clientId: 'lock-sub', clean: false, protocolVersion: 4, reconnectPeriod: 0 });
    resumed.on('message', (_topic, payload) => received.push(payload.toString()));
    await until(() => received.length >= 5, 'the acknowledged messages after the restart');
    expect(received).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    await resumed.endAsync();
    first.child.kill('SIGTERM');
    expect(await exited(first.child)).toBe(0);
    expect(readdirSync(join(dir, 'data'))).not.toContain('bulwark.lock');
  }, 60_000);

  it('creates a missing data directory 0700 with durability none and the audit log off', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-fresh-'));
    const config = writeConfig(dir, await freePort(), [
      'persistence: { durability: none }',
      'audit: { enabled: false }',
    ]);
    const broker = await startCliBroker(['-c', config]);
    expect(statSync(join(dir, 'data')).mode & 0o777).toBe(0o700);
    broker.child.kill('SIGTERM');
    expect(await exited(broker.child)).toBe(0);
  }, 30_000);

  it('refuses a data directory writable by group or others before it reads the store', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-mode-'));
    const config = writeConfig(dir, await freePort());
    const broker = await startCliBroker(['-c', config]);
    broker.child.kill('SIGTERM');
    await exited(broker.child);
    chmodSync(join(dir, 'data'), 0o770);
    const result = await runCli(['start', '-c', config]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`data directory ${join(dir, 'data')} is writable by group or others (mode 770)`);
    expect(result.stderr).not.toMatch(/store restored|listening/);
  }, 30_000);

  it('warns, at start and in config check, of a folder above the data directory that others may rename entries in', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-above-'));
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const port = await freePort();
    const file = join(open, 'bulwark.yaml');
    writeFileSync(file, readFileSync(writeConfig(dir, port)).toString().replace(join(dir, 'data'), join(open, 'data')));
    const broker = await startCliBroker(['-c', file]);
    const line = broker
      .output()
      .split('\n')
      .find((l) => l.includes('a folder above the data directory lets another user replace it'));
    expect(line && JSON.parse(line)).toMatchObject({
      level: 40,
      folder: open,
      problem: 'writable by others without the sticky bit (mode 777)',
    });
    broker.child.kill('SIGTERM');
    expect(await exited(broker.child)).toBe(0);
    const check = await runCli(['config', 'check', file]);
    expect(check.code).toBe(0);
    expect(check.stderr).toContain(
      `warning: data_dir: a folder above the data directory lets another user replace it: ${open} is writable by others without the sticky bit (mode 777)`,
    );
    // With the sticky bit (as /tmp has) nobody can rename another user's entries: no warning.
    chmodSync(open, 0o1777);
    const sticky = await runCli(['config', 'check', file]);
    expect(sticky.code).toBe(0);
    expect(sticky.stderr).not.toContain('warning');
  }, 30_000);

  it('survives a SIGHUP during start-up and reloads once it is ready', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-hup-'));
    const config = writeConfig(dir, await freePort());
    // A warm-up long enough that the signal surely lands before the broker is ready.
    writeFileSync(config, readFileSync(config, 'utf8').replace('warmup_connects: 0', 'warmup_connects: 4000'));
    const child = spawn(process.execPath, [CLI, 'start', '-c', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    // The lock is taken before the warm-up begins: the signal lands while the broker is far from ready.
    await until(() => existsSync(join(dir, 'data', 'bulwark.lock')), 'the lock', 30_000);
    child.kill('SIGHUP');
    await until(
      () => output.includes('bulwark: ready') || child.exitCode !== null || child.signalCode !== null,
      'ready',
      30_000,
    );
    expect(child.signalCode).toBeNull();
    expect(output).toContain('bulwark: SIGHUP during start-up; reloading once the broker is ready');
    await until(() => output.includes('SIGHUP: re-reading the configuration'), 'the deferred reload');
    expect(output.indexOf('SIGHUP: re-reading the configuration')).toBeGreaterThan(output.indexOf('bulwark: ready'));
    child.kill('SIGTERM');
    expect(await exited(child)).toBe(0);
  }, 60_000);

  it('a SIGTERM while the store is being read stops the broker cleanly once it has started, not by the signal', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-term-'));
    const config = writeConfig(dir, await freePort());
    // The journal is a named pipe: replaying it blocks the start in the store's read, which the test can see and
    // release, so the signal surely lands in the middle of the start.
    const store = join(dir, 'data', 'store');
    mkdirSync(store, { recursive: true, mode: 0o700 });
    const journal = join(store, 'journal-00000001.log');
    execFileSync('mkfifo', ['-m', '600', journal]);
    const child = spawn(process.execPath, [CLI, 'start', '-c', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const waitsForJournal = (): boolean => {
      try {
        return readFileSync(`/proc/${child.pid}/wchan`, 'utf8') === 'wait_for_partner';
      } catch {
        return false;
      }
    };
    await until(waitsForJournal, 'the broker reading its journal', 30_000);
    child.kill('SIGTERM');
    // The handler runs only once the read returns; first make sure the kernel has delivered the signal.
    const delivered = (): boolean =>
      !/^(SigPnd|ShdPnd):\s*0*[1-9a-f]/m.test(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
    await until(delivered, 'the signal delivered');
    // Opened for reading and writing, the pipe lets the replay read an empty journal and the writer append to it.
    const pipe = openSync(journal, constants.O_RDWR);
    try {
      expect(await exited(child)).toBe(0);
    } finally {
      closeSync(pipe);
    }
    expect(child.signalCode).toBeNull();
    expect(output).toContain('bulwark: SIGTERM during start-up; stopping once the broker has started');
    expect(output.indexOf('"msg":"shutting down"')).toBeGreaterThan(output.indexOf('store restored'));
    expect(existsSync(join(dir, 'data', 'bulwark.lock'))).toBe(false);
  }, 60_000);
});
