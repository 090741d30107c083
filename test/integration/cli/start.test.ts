import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RawClient, connectPacket } from '../../helpers/raw-client.js';
import { freePort } from '../../helpers/free-port.js';
import { runCli, startCliBroker } from '../../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'bulwark-cli-'));

describe('bulwark start', () => {
  it('describes every command and option in --help', async () => {
    const top = await runCli(['--help']);
    expect(top.code).toBe(0);
    for (const command of ['start', 'passwd', 'policy', 'audit', 'ban', 'certs']) expect(top.stdout).toContain(command);
    const start = await runCli(['start', '--help']);
    expect(start.stdout).toContain('--config');
    expect(start.stdout).toContain('--port');
    expect(start.stdout).toContain('--data-dir');
  });

  it('refuses an invalid configuration naming file:line:column and the key, and starts nothing', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      ['data_dir: ./d', 'listeners:', '  - port: 1883', '    transport: carrier-pigeon', ''].join('\n'),
    );
    const result = await runCli(['start', '-c', file]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${file}:4:16`);
    expect(result.stderr).toContain('listeners.0.transport');
    expect(result.stderr).not.toContain('bulwark: ready');
  });

  it('refuses a YAML syntax error with its position', async () => {
    const file = join(dir, 'syntax.yaml');
    writeFileSync(file, 'listeners:\n  - port: [1883\n');
    const result = await runCli(['start', '-c', file]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(new RegExp(`${file}:\\d+:\\d+: YAML syntax error`));
  });

  it('refuses an unknown key rather than ignoring it', async () => {
    const file = join(dir, 'unknown.yaml');
    writeFileSync(file, 'listeners:\n  - port: 1883\nlimits:\n  max_packet_sise: 10\n');
    const result = await runCli(['start', '-c', file]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('max_packet_sise');
    expect(result.stderr).toContain(`${file}:4:3: limits.max_packet_sise: unknown key`);
  });

  it('starts local-only with -p, and on SIGTERM tells MQTT 5 clients 0x8B and exits 0', async () => {
    const port = await freePort();
    const { child, output } = await startCliBroker(['-p', String(port), '--data-dir', join(dir, 'data')], dir);
    expect(output()).toContain(`127.0.0.1:${port}`);
    expect(output()).toContain('anonymous=allowed');
    const client = await RawClient.connect(port, 5);
    client.send(connectPacket('sigterm-v5', { protocolVersion: 5 }), 5);
    expect((await client.next('connack')).reasonCode).toBe(0);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    const disconnect = await client.next('disconnect');
    expect(disconnect.reasonCode).toBe(0x8b);
    expect(await exited).toBe(0);
  });
});
