import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../../src/config/schema.js';
import { BulwarkServer } from '../../../src/server.js';
import { closedPort } from '../../helpers/authn-wire.js';

/** An operator watching `$SYS` must see the PostgreSQL mirror fall behind, not only the file log. */
describe('audit mirror counters under $SYS', () => {
  let server: BulwarkServer | undefined;
  afterAll(async () => server?.stop());

  it('publishes the mirror queue, written, dropped and failure counts; failures grow while the database is down', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-mirror-sys-'));
    const passwordFile = join(dataDir, 'mirror-password');
    writeFileSync(passwordFile, 'unused\n', { mode: 0o600 });
    const config = configSchema.parse({
      data_dir: dataDir,
      sys_interval_seconds: 1,
      persistence: { durability: 'none' },
      listeners: [{ name: 'test', transport: 'tcp', host: '127.0.0.1', port: 0 }],
      authentication: { anonymous: true },
      audit: {
        mirror: {
          type: 'postgres',
          port: await closedPort(),
          database: 'audit',
          user: 'bulwark',
          password_file: passwordFile,
          table: 'audit_records',
          connect_timeout: 200,
          retry_initial: 100,
          retry_max: 200,
        },
      },
    });
    const quiet = new Writable({ write: (_c, _e, done) => done() });
    server = new BulwarkServer({ config, log: pino({ level: 'silent' }, quiet) });
    await server.start();
    const port = server.listeners[0]!.address!.port;
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'sys-watcher', protocolVersion: 5 });
    const seen = new Map<string, number>();
    client.on('message', (topic, payload) => seen.set(topic.split('/').pop()!, Number(payload.toString())));
    await client.subscribeAsync('$SYS/broker/audit/mirror/+');
    await expect.poll(() => seen.get('failures') ?? 0, { timeout: 10_000, interval: 100 }).toBeGreaterThan(0);
    expect([...seen.keys()].sort()).toEqual(['dropped', 'failures', 'queued', 'refused', 'written']);
    expect(seen.get('written')).toBe(0);
    await client.endAsync();
  });
});
