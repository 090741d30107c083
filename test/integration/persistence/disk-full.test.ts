import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startCliBroker } from '../../helpers/cli.js';
import { freePort } from '../../helpers/free-port.js';
import { canMountTmpfs, fillFilesystem, SmallFilesystems } from '../../helpers/small-filesystem.js';
import { until } from '../../helpers/until.js';

/** A real full disk needs a small file system of its own: a tmpfs, which only root can mount. */
const canMount = canMountTmpfs();

const exited = (child: ChildProcess): Promise<unknown> =>
  new Promise((resolve) => (child.exitCode !== null || child.signalCode ? resolve(null) : child.on('exit', resolve)));

const linesWith = (output: string, msg: string): number =>
  output.split('\n').filter((line) => line.includes(`"msg":"${msg}`)).length;

describe.skipIf(!canMount)('store on a full disk', () => {
  const filesystems = new SmallFilesystems();
  const brokers: ChildProcess[] = [];
  // A failed assertion must not leave a broker holding the mount.
  afterEach(async () => {
    for (const child of brokers.splice(0)) {
      child.kill('SIGKILL');
      await exited(child);
    }
    filesystems.unmountAll();
  });

  it('holds the PUBACK, logs once and retries each second, cuts back the partial record, and after a kill -9 starts without --repair with every acknowledged message', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-diskfull-'));
    const mount = join(dir, 'mnt');
    mkdirSync(mount);
    expect(filesystems.mount(mount, '512k')).toBe(mount);
    const port = await freePort();
    const config = join(dir, 'bulwark.yaml');
    writeFileSync(
      config,
      [
        `data_dir: ${join(mount, 'data')}`,
        'sys_interval_seconds: 0',
        'warmup_connects: 0',
        'audit: { enabled: false }',
        'persistence: { durability: sync }',
        'authentication: { anonymous: true }',
        'listeners:',
        `  - { name: local, port: ${port} }`,
        '',
      ].join('\n'),
    );
    const url = `mqtt://127.0.0.1:${port}`;
    let broker = await startCliBroker(['-c', config]);
    brokers.push(broker.child);
    const sub = await mqtt.connectAsync(url, { clientId: 'full-sub', protocolVersion: 4, clean: false });
    await sub.subscribeAsync('d/#', { qos: 1 });
    await sub.endAsync();

    const publisher = mqtt.connect(url, { clientId: 'full-pub', protocolVersion: 4, reconnectPeriod: 0 });
    await new Promise((resolve) => publisher.once('connect', resolve));
    await publisher.publishAsync('d/1', 'before', { qos: 1 });
    fillFilesystem(join(mount, 'filler'));
    let acknowledged = false;
    publisher.publish('d/1', `during ${'x'.repeat(6000)}`, { qos: 1 }, (error) => (acknowledged = !error));
    await until(() => linesWith(broker.output(), 'store write failed') > 0, 'the first store write failure');
    // Long enough for two more retries; a retry on every turn of the event loop would log thousands of lines.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(acknowledged).toBe(false);
    expect(linesWith(broker.output(), 'store write failed')).toBe(1);

    unlinkSync(join(mount, 'filler'));
    await until(() => acknowledged, 'the PUBACK once the disk has room', 5000);
    expect(linesWith(broker.output(), 'store write recovered')).toBe(1);
    publisher.end(true);
    broker.child.kill('SIGKILL');
    await exited(broker.child);

    broker = await startCliBroker(['-c', config]);
    brokers.push(broker.child);
    const received: string[] = [];
    const again = mqtt.connect(url, { clientId: 'full-sub', protocolVersion: 4, clean: false, reconnectPeriod: 0 });
    again.on('message', (_topic, payload) => received.push(payload.toString().slice(0, 6)));
    await until(() => received.length >= 2, 'both acknowledged messages after the restart');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(received).toEqual(['before', 'during']);
    await again.endAsync();
    broker.child.kill('SIGTERM');
    await exited(broker.child);
  }, 60_000);
});
