import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli, startCliBroker } from '../../helpers/cli.js';
import { freePort } from '../../helpers/free-port.js';
import { scrape, sample } from '../../helpers/metrics-scrape.js';

const TOKEN = 'zq-cli-token-0c4d8e1f9a2b7365';

describe('bulwark with metrics', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bulwark-metrics-cli-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('config check refuses metrics on a non-loopback host without a token, and accepts it with one', async () => {
    const open = join(dir, 'open.yaml');
    writeFileSync(open, 'listeners:\n  - port: 1883\nmetrics:\n  enabled: true\n  host: 0.0.0.0\n');
    const refused = await runCli(['config', 'check', open]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(`${open}:5:\\d+: .*metrics on 0\\.0\\.0\\.0 \\(not loopback\\) need bearer_token_file`),
    );
    const protectedFile = join(dir, 'protected.yaml');
    writeFileSync(
      protectedFile,
      'listeners:\n  - port: 1883\nmetrics:\n  enabled: true\n  host: 0.0.0.0\n  bearer_token_file: metrics.token\n',
    );
    // config check reads the token file as start does: present, owner-only, long enough.
    const tokenFile = join(dir, 'metrics.token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
    chmodSync(tokenFile, 0o644);
    const exposed = await runCli(['config', 'check', protectedFile]);
    expect(exposed.code).toBe(1);
    // At the setting's line (line 6, after `bearer_token_file: `).
    expect(exposed.stderr).toMatch(
      /protected\.yaml:6:22: metrics\.bearer_token_file: .*readable or writable by group or others/,
    );
    expect(exposed.stderr).not.toContain(TOKEN);
    chmodSync(tokenFile, 0o600);
    const accepted = await runCli(['config', 'check', protectedFile]);
    expect(accepted.stderr).toBe('');
    expect(accepted.code).toBe(0);
  });

  it('bulwark start serves metrics behind the token (resolved beside the config file) and stops them on SIGTERM', async () => {
    const [mqttPort, metricsPort] = [await freePort(), await freePort()];
    const tokenFile = join(dir, 'metrics.token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
    chmodSync(tokenFile, 0o600);
    const config = join(dir, 'bulwark.yaml');
    writeFileSync(
      config,
      [
        `data_dir: ${join(dir, 'data')}`,
        'warmup_connects: 0',
        'authentication:\n  anonymous: true',
        `listeners:\n  - port: ${mqttPort}`,
        `metrics:\n  enabled: true\n  port: ${metricsPort}\n  bearer_token_file: metrics.token`,
        '',
      ].join('\n'),
    );
    const { child, output } = await startCliBroker(['-c', config], tmpdir());
    const address = { host: '127.0.0.1', port: metricsPort };
    expect((await scrape(address)).status).toBe(401);
    const scraped = await scrape(address, { token: TOKEN });
    expect(scraped.status).toBe(200);
    expect(sample(scraped, 'bulwark_audit_writable')).toBe(1);
    expect(sample(scraped, 'bulwark_store_sessions')).toBe(0);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await expect(scrape(address, { token: TOKEN })).rejects.toThrow();
    expect(output()).not.toContain(TOKEN);
  });
});
