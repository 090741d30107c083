import { mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { configSchema } from '../../../src/config/schema.js';
import { BulwarkServer } from '../../../src/server.js';
import { scrape, sample } from '../../helpers/metrics-scrape.js';
import { endAll, rawConnect } from '../../helpers/mqtt-clients.js';
import type { RawClient } from '../../helpers/raw-client.js';
import { canMountTmpfs, SmallFilesystems } from '../../helpers/small-filesystem.js';

const filesystems = new SmallFilesystems();
const dirs: string[] = [];
let server: BulwarkServer | undefined;
const clients: RawClient[] = [];
afterEach(async () => {
  await endAll(...clients.splice(0));
  await server?.stop();
  server = undefined;
  filesystems.unmountAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function temp(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

describe.skipIf(!canMountTmpfs())('audit health in the metrics', () => {
  it('shows the audit log not writable and failing while its disk is full, and writable again once it has room', async () => {
    const fs = filesystems.mount(temp('bulwark-metrics-tmpfs-'), '256k') as string;
    const config = configSchema.parse({
      data_dir: temp('bulwark-metrics-data-'),
      sys_interval_seconds: 0,
      persistence: { durability: 'none' },
      authentication: { anonymous: true },
      guard: { exempt_networks: ['127.0.0.0/8', '::1/128'] },
      audit: { directory: join(fs, 'audit'), retry_initial: '20ms', retry_max: '100ms', checkpoint_interval: 0 },
      metrics: { enabled: true, port: 0 },
      listeners: [{ name: 'test', transport: 'tcp', host: '127.0.0.1', port: 0 }],
    });
    server = new BulwarkServer({
      config,
      log: pino({ level: 'warn' }, new Writable({ write: (_c, _e, done) => done() })),
      authorizer: {
        check: () => ({ allowed: true, reason: 'test allows everything' }),
        onChange() {},
        invalidate() {},
      },
    });
    await server.start();
    const port = server.listeners[0]!.address!.port;
    const address = server.metricsAddress!;
    const healthy = await scrape(address);
    expect(sample(healthy, 'bulwark_audit_writable')).toBe(1);
    expect(sample(healthy, 'bulwark_audit_failing')).toBe(0);
    // broker.started reaches the disk with the writer's next batch.
    await vi.waitFor(async () =>
      expect(sample(await scrape(address), 'bulwark_audit_records_written_total')).toBeGreaterThan(0),
    );

    // Every free block taken: the writer's next write fails with ENOSPC.
    const ballast = join(fs, 'ballast');
    const free = statfsSync(fs);
    writeFileSync(ballast, Buffer.alloc(Number(free.bavail) * Number(free.bsize)));
    // tmpfs still takes what fits in the audit file's last page: CONNECTs until a record needs a new page.
    for (let i = 0; i < 100 && server.broker.audit.writable; i++) {
      const c = await rawConnect(port, `filler-${i}`, 5);
      clients.push(c.client);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(server.broker.audit.writable).toBe(false);
    const failing = await scrape(address);
    expect(sample(failing, 'bulwark_audit_writable')).toBe(0);
    expect(sample(failing, 'bulwark_audit_failing')).toBe(1);
    expect(sample(failing, 'bulwark_audit_write_failures_total')).toBeGreaterThan(0);

    rmSync(ballast);
    await vi.waitFor(() => expect(server!.broker.audit.writable).toBe(true), { timeout: 10_000 });
    const recovered = await scrape(address);
    expect(sample(recovered, 'bulwark_audit_writable')).toBe(1);
    expect(sample(recovered, 'bulwark_audit_failing')).toBe(0);
  });
});
