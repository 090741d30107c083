import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RawClient, connectPacket } from '../../helpers/raw-client.js';
import { freePort } from '../../helpers/free-port.js';
import { CLI, startCliBroker } from '../../helpers/cli.js';
import { until } from '../../helpers/until.js';

describe('bulwark start: the start-up warm-up', () => {
  it("says what it did, and leaves no trace in the running broker's audit log, guard or temporary directory", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-cli-warmup-'));
    const tmp = mkdtempSync(join(dir, 'tmp-'));
    const port = await freePort();
    const file = join(dir, 'bulwark.yaml');
    writeFileSync(
      file,
      [
        `data_dir: ${join(dir, 'data')}`,
        'log_level: info',
        'warmup_connects: 300',
        'listeners:',
        `  - { name: main, transport: tcp, host: 127.0.0.1, port: ${port} }`,
        'authentication: { anonymous: true }',
        'authorization:',
        `  policy_files: [${join(dir, 'p.policy.yaml')}]`,
        // Strict enough that 300 connects counted by the running broker would have banned 127.0.0.1.
        'guard: { flapping: { address: { max_attempts: 3 }, network: { max_attempts: 3 } } }',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'p.policy.yaml'),
      'version: 1\nrules:\n  - name: local\n    allow: connect\n    subjects: { anonymous: true }\n    why: test\n',
    );
    const { child, output } = await startCliBroker(['-c', file], dir, { TMPDIR: tmp });
    expect(output()).toMatch(/start-up warm-up: 300 connects in \d+ ms/);
    const client = await RawClient.connect(port, 5);
    client.send(connectPacket('after-warmup', { protocolVersion: 5 }), 5);
    expect((await client.next('connack')).reasonCode).toBe(0);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);

    const auditDir = join(dir, 'data', 'audit');
    const log = readdirSync(auditDir)
      .map((name) => readFileSync(join(auditDir, name), 'utf8'))
      .join('');
    // The log records clients (the one that connected after the start), and none of the warm-up's.
    expect(log).toContain('after-warmup');
    expect(log).not.toContain('bulwark-warmup-');
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('stops on SIGTERM during the warm-up, exits 0 and leaves no temporary directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-cli-warmup-stop-'));
    const tmp = mkdtempSync(join(dir, 'tmp-'));
    const file = join(dir, 'bulwark.yaml');
    const port = await freePort();
    writeFileSync(
      file,
      [
        `data_dir: ${join(dir, 'data')}`,
        'warmup_connects: 20000',
        'listeners:',
        `  - { name: main, transport: tcp, host: 127.0.0.1, port: ${port} }`,
        '',
      ].join('\n'),
    );
    const child = spawn(process.execPath, [CLI, 'start', '-c', file], {
      env: { ...process.env, TMPDIR: tmp },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    // 'close': the line checked below is written just before the exit, which may be reported before it is read.
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await until(() => readdirSync(tmp).some((name) => name.startsWith('bulwark-warmup-')) || undefined, 'warm-up');
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(output).toContain('SIGTERM during start-up');
    expect(output).not.toContain('bulwark: ready');
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('a second stop signal while the warm-up stops neither kills the process nor leaves its temporary directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-cli-warmup-twice-'));
    const file = join(dir, 'bulwark.yaml');
    writeFileSync(
      file,
      [
        `data_dir: ${join(dir, 'data')}`,
        'warmup_connects: 20000',
        'listeners:',
        `  - { name: main, transport: tcp, host: 127.0.0.1, port: ${await freePort()} }`,
        '',
      ].join('\n'),
    );
    // A supervisor that signals again: a second SIGTERM that lands while the first one's exit removes the warm-up
    // folder must not find the signal's default action back. The window is milliseconds wide, so a few tries.
    for (let attempt = 0; attempt < 3; attempt++) {
      const tmp = mkdtempSync(join(dir, 'tmp-'));
      const child = spawn(process.execPath, [CLI, 'start', '-c', file], {
        env: { ...process.env, TMPDIR: tmp },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
        child.on('exit', (code, signal) => resolve([code, signal])),
      );
      await until(() => readdirSync(tmp).some((name) => name.startsWith('bulwark-warmup-')) || undefined, 'warm-up');
      child.kill('SIGTERM');
      // The same signal again over the next milliseconds: one of them lands while the first one's exit runs.
      const again = [1, 2, 4, 7, 11, 16].map((ms) => setTimeout(() => child.kill('SIGTERM'), ms));
      expect(await exited).toEqual([0, null]);
      for (const timer of again) clearTimeout(timer);
      expect(readdirSync(tmp)).toEqual([]);
      expect(readdirSync(join(dir, 'data'))).not.toContain('bulwark.lock');
    }
  });
});
