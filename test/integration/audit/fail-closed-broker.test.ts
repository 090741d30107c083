import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { verifyAuditLog } from '../../../audit/verify.js';
import { canMountTmpfs, fillFilesystem, SmallFilesystems } from '../../helpers/small-filesystem.js';
import { adminSocketPath, callAdmin } from '../../../src/admin/client.js';
import { configSchema } from '../../../src/config/schema.js';
import { BulwarkServer } from '../../../src/server.js';
import { runCli } from '../../helpers/cli.js';
import { endAll, rawConnect, rawSubscribe } from '../../helpers/mqtt-clients.js';
import type { RawClient } from '../../helpers/raw-client.js';
import { auditFiles } from './harness.js';

const filesystems = new SmallFilesystems();
const dirs: string[] = [];
afterEach(() => {
  filesystems.unmountAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function temp(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

/** A small tmpfs the test can fill completely. */
function smallFilesystem(): string | undefined {
  return filesystems.mount(temp('bulwark-failclosed-tmpfs-'), '256k');
}

const canMount = canMountTmpfs();

/** Takes every free byte of the file system, so the audit writer's next write fails with ENOSPC. */
function fill(fs: string): string {
  const ballast = join(fs, 'ballast');
  fillFilesystem(ballast);
  return ballast;
}

async function startServer(fs: string): Promise<{ server: BulwarkServer; dataDir: string; port: number }> {
  const dataDir = temp('bulwark-failclosed-data-');
  const config = configSchema.parse({
    data_dir: dataDir,
    sys_interval_seconds: 0,
    persistence: { durability: 'none' },
    authentication: { anonymous: true },
    guard: { exempt_networks: ['127.0.0.0/8', '::1/128'] },
    audit: { directory: join(fs, 'audit'), retry_initial: '20ms', retry_max: '100ms', checkpoint_interval: 0 },
    listeners: [{ name: 'test', transport: 'tcp', host: '127.0.0.1', port: 0 }],
  });
  const quiet = new Writable({ write: (_c, _e, done) => done() });
  const server = new BulwarkServer({
    config,
    log: pino({ level: 'warn' }, quiet),
    authorizer: { check: () => ({ allowed: true, reason: 'test allows everything' }), onChange() {}, invalidate() {} },
  });
  await server.start();
  return { server, dataDir, port: server.listeners[0]!.address!.port };
}

describe.skipIf(!canMount)('a fail-closed broker whose audit log cannot be written', () => {
  let clients: RawClient[] = [];
  afterEach(async () => {
    await endAll(...clients);
    clients = [];
  });

  it('refuses new subscriptions of connected clients and administrative commands, until a write succeeds', async () => {
    const fs = smallFilesystem() as string;
    const { server, dataDir, port } = await startServer(fs);
    // Connected before the outage: on both protocol versions.
    const v5 = await rawConnect(port, 'holder-5', 5);
    const v4 = await rawConnect(port, 'holder-4', 4);
    clients = [v5.client, v4.client];
    expect([v5.connack.reasonCode, v4.connack.returnCode]).toEqual([0, 0]);

    const ballast = fill(fs);
    // tmpfs still takes what fits in the audit file's last page: more CONNECTs, until a record needs a new page.
    for (let i = 0; i < 100 && server.broker.audit.writable; i++) {
      const late = await rawConnect(port, `late-${i}`, 5);
      clients.push(late.client);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(server.broker.audit.writable).toBe(false);

    const refused5 = await rawSubscribe(v5.client, 5, 1, [{ topic: 'plant/#', qos: 1 }]);
    const refused4 = await rawSubscribe(v4.client, 4, 1, [{ topic: 'plant/#', qos: 1 }]);
    // MQTT 5: 0x80 Unspecified error; 3.1.1: 0x80 Failure.
    expect(refused5.granted).toEqual([0x80]);
    expect(refused4.granted).toEqual([0x80]);
    expect(server.broker.sessions.get('holder-5')?.subscriptions.size).toBe(0);

    const socket = adminSocketPath(dataDir);
    const banned = await callAdmin(socket, 'ban.add', { kind: 'username', value: 'mallory', duration_ms: 60_000 });
    expect(banned).toMatchObject({ kind: 'error', code: 'audit_unavailable' });
    const cli = await runCli(['ban', 'add', '--username', 'mallory', '--for', '1h', '--data-dir', dataDir]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toContain('the audit log cannot be written');
    const listed = await callAdmin(socket, 'ban.list', {});
    expect(listed).toMatchObject({ kind: 'error', code: 'audit_unavailable' });

    rmSync(ballast);
    await vi.waitFor(() => expect(server.broker.audit.writable).toBe(true), { timeout: 10_000 });
    const granted = await rawSubscribe(v5.client, 5, 2, [{ topic: 'plant/#', qos: 1 }]);
    expect(granted.granted).toEqual([1]);
    expect(
      await callAdmin(socket, 'ban.add', { kind: 'username', value: 'mallory', duration_ms: 60_000 }),
    ).toMatchObject({
      kind: 'ok',
    });
    await endAll(...clients);
    clients = [];
    await server.stop();

    // The refused commands are in the log too, written after its recovery; and the log verifies.
    const dir = join(fs, 'audit');
    // Newline-terminated lines only: the full disk left a torn line, sealed by the next file.
    const records = auditFiles(dir)
      .flatMap((f) => readFileSync(f, 'utf8').split('\n').slice(0, -1))
      .map((l) => JSON.parse(l) as { event: { action: string; outcome: string }; labels?: Record<string, string> });
    const commands = records.filter((r) => r.event.action === 'admin.command' && r.labels?.['command'] === 'ban.add');
    expect(commands.map((r) => [r.event.outcome, r.labels?.['error_code']])).toEqual([
      ['failure', 'audit_unavailable'],
      ['failure', 'audit_unavailable'],
      ['success', undefined],
    ]);
    expect((await verifyAuditLog(dir)).kind).toBe('intact');
  }, 30_000);
});
