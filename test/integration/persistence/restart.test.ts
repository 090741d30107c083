import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../helpers/free-port.js';
import { runCli, startCliBroker } from '../../helpers/cli.js';
import { connectPacket, RawClient } from '../../helpers/raw-client.js';
import { until } from '../../helpers/until.js';

async function brokerSetup(
  durability: string,
  persistence: string[] = [],
): Promise<{ dir: string; config: string; port: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-persist-'));
  const port = await freePort();
  const config = join(dir, 'bulwark.yaml');
  writeFileSync(
    config,
    [
      `data_dir: ${join(dir, 'data')}`,
      'sys_interval_seconds: 0',
      'persistence:',
      `  durability: ${durability}`,
      ...persistence.map((line) => `  ${line}`),
      'limits:',
      '  max_inflight: 100',
      '  receive_maximum: 100',
      'authentication: { anonymous: true }',
      'listeners:',
      `  - { name: local, port: ${port} }`,
      '',
    ].join('\n'),
  );
  return { dir, config, port };
}

const exited = (child: ChildProcess): Promise<number | null> =>
  new Promise((resolve) =>
    child.exitCode !== null ? resolve(child.exitCode) : child.on('exit', (code) => resolve(code)),
  );

/** Connects a persistent subscriber and collects what arrives, registering the handler before CONNACK. */
function collect(url: string, options: mqtt.IClientOptions): { client: mqtt.MqttClient; received: string[] } {
  const received: string[] = [];
  const client = mqtt.connect(url, { reconnectPeriod: 0, ...options });
  client.on('message', (topic, payload) => received.push(`${topic} ${payload.toString()}`));
  return { client, received };
}

describe('persistence across restarts', () => {
  it('a SIGTERM restart keeps persistent v5 and 3.1.1 sessions: every queued message arrives once, in order', async () => {
    const { config, port } = await brokerSetup('sync');
    const url = `mqtt://127.0.0.1:${port}`;
    let broker = await startCliBroker(['-c', config]);

    const v5 = await mqtt.connectAsync(url, {
      clientId: 'keep-v5',
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
    });
    await v5.subscribeAsync('r/v5/#', { qos: 2 });
    await v5.endAsync();
    const v4 = await mqtt.connectAsync(url, { clientId: 'keep-v4', protocolVersion: 4, clean: false });
    await v4.subscribeAsync('r/v4/#', { qos: 1 });
    await v4.endAsync();

    const publisher = await mqtt.connectAsync(url, { clientId: 'restart-pub', protocolVersion: 5 });
    for (let i = 0; i < 20; i++) {
      await publisher.publishAsync('r/v5/x', `m${i}`, { qos: 2 });
      await publisher.publishAsync('r/v4/x', `m${i}`, { qos: 1 });
    }
    await publisher.endAsync();

    broker.child.kill('SIGTERM');
    expect(await exited(broker.child)).toBe(0);
    broker = await startCliBroker(['-c', config]);
    expect(broker.output()).toMatch(/store restored: 2 sessions, 40 messages/);

    const a = collect(url, {
      clientId: 'keep-v5',
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
    });
    const b = collect(url, { clientId: 'keep-v4', protocolVersion: 4, clean: false });
    await until(() => a.received.length >= 20 && b.received.length >= 20, 'queued messages after restart', 15_000);
    await new Promise((r) => setTimeout(r, 200));
    const expected = (topic: string): string[] => Array.from({ length: 20 }, (_, i) => `${topic} m${i}`);
    expect(a.received).toEqual(expected('r/v5/x'));
    expect(b.received).toEqual(expected('r/v4/x'));
    a.client.end();
    b.client.end();
    broker.child.kill('SIGTERM');
    await exited(broker.child);
  }, 60_000);

  it('kill -9 during QoS 1/2 traffic in sync mode loses nothing the publisher had acknowledged', async () => {
    const { config, port } = await brokerSetup('sync');
    const url = `mqtt://127.0.0.1:${port}`;
    let broker = await startCliBroker(['-c', config]);
    const sub = await mqtt.connectAsync(url, {
      clientId: 'crash-sub',
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
    });
    await sub.subscribeAsync('crash/#', { qos: 2 });
    await sub.endAsync();

    const publisher = mqtt.connect(url, { clientId: 'crash-pub', protocolVersion: 5, reconnectPeriod: 0 });
    await new Promise((r) => publisher.once('connect', r));
    publisher.on('error', () => undefined);
    const acknowledged: string[] = [];
    let sent = 0;
    let settled = 0;
    // A window of 50 unacknowledged messages, within the broker's Receive Maximum of 100.
    const pump = (): void => {
      while (publisher.connected && sent - settled < 50) {
        const n = sent++;
        const qos = n % 2 === 0 ? 1 : 2;
        publisher.publish(`crash/q${qos}`, `n${n}`, { qos }, (error) => {
          settled++;
          if (!error) acknowledged.push(`crash/q${qos} n${n}`);
        });
      }
    };
    const pumpTimer = setInterval(pump, 2);
    await until(() => acknowledged.length >= 300, 'publisher acknowledgements', 15_000);
    broker.child.kill('SIGKILL');
    await exited(broker.child);
    clearInterval(pumpTimer);
    const acked = [...acknowledged];
    publisher.end(true);

    broker = await startCliBroker(['-c', config]);
    const after = collect(url, {
      clientId: 'crash-sub',
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
    });
    const got = new Set<string>();
    await until(
      () => {
        for (const r of after.received) got.add(r);
        return acked.every((m) => got.has(m));
      },
      `all ${acked.length} acknowledged messages after the crash`,
      15_000,
    );
    expect(acked.filter((m) => !got.has(m))).toEqual([]);
    const qos2 = after.received.filter((r) => r.startsWith('crash/q2'));
    expect(new Set(qos2).size).toBe(qos2.length);
    after.client.end();
    broker.child.kill('SIGTERM');
    await exited(broker.child);
  }, 60_000);

  it('a corrupted store stops start-up with an error naming the file; --repair starts and says what it dropped', async () => {
    const { dir, config, port } = await brokerSetup('sync');
    const url = `mqtt://127.0.0.1:${port}`;
    const broker = await startCliBroker(['-c', config]);
    const client = await mqtt.connectAsync(url, { clientId: 'corrupt', protocolVersion: 4 });
    for (let i = 0; i < 5; i++) await client.publishAsync(`keep/${i}`, `v${i}`, { qos: 1, retain: true });
    await client.endAsync();
    broker.child.kill('SIGTERM');
    await exited(broker.child);

    const storeDir = join(dir, 'data', 'store');
    const file = join(
      storeDir,
      readdirSync(storeDir).find((f) => f.endsWith('.log'))!,
    );
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    writeFileSync(file, bytes);

    const refused = await runCli(['start', '-c', config]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`store file ${file} is corrupt`);
    expect(refused.stderr).toContain('--repair');

    const repaired = await startCliBroker(['-c', config, '--repair']);
    expect(repaired.output()).toMatch(/unreadable records were dropped/);
    repaired.child.kill('SIGTERM');
    await exited(repaired.child);
  }, 60_000);
  it('a damaged length field stops start-up with its offset and leaves the file as it was, not taken for a torn tail', async () => {
    const { dir, config, port } = await brokerSetup('sync');
    const broker = await startCliBroker(['-c', config]);
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'lenflip', protocolVersion: 4 });
    for (let i = 0; i < 5; i++) await client.publishAsync(`keep/${i}`, `v${i}`, { qos: 1, retain: true });
    await client.endAsync();
    broker.child.kill('SIGTERM');
    await exited(broker.child);

    const storeDir = join(dir, 'data', 'store');
    const file = join(
      storeDir,
      readdirSync(storeDir).find((f) => f.endsWith('.log'))!,
    );
    const bytes = readFileSync(file);
    // The second record's length grows to about 1 MiB: past the end of the file, over the records after it.
    const offset = 8 + bytes.readUInt32BE(0);
    bytes[offset + 1] = 0x10;
    const length = bytes.readUInt32BE(offset);
    writeFileSync(file, bytes);

    const refused = await runCli(['start', '-c', config]);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n').at(-1)).toBe(
      `bulwark: cannot start: ${file}:0:${offset}: store file ${file} is corrupt at byte ${offset}: ` +
        `impossible record length ${length}: it runs past the end of the file over bytes that are not the start of ` +
        'one record (restore from backup, or start with --repair to keep what is readable)',
    );
    expect(readdirSync(storeDir)).toEqual([file.slice(storeDir.length + 1), 'newest-generation']);
    expect(readFileSync(file)).toEqual(bytes);
  }, 60_000);

  it('a missing newest journal file stops start-up and names it; --repair starts from what is left and says so', async () => {
    const { dir, config, port } = await brokerSetup('sync');
    const url = `mqtt://127.0.0.1:${port}`;
    let broker = await startCliBroker(['-c', config]);
    const client = await mqtt.connectAsync(url, { clientId: 'vanish', protocolVersion: 4, clean: false });
    await client.subscribeAsync('vanish/#', { qos: 1 });
    await client.endAsync();
    broker.child.kill('SIGTERM');
    await exited(broker.child);

    // A clean-up that deletes `*.log` files: the marker stays and tells the next start what is gone.
    const storeDir = join(dir, 'data', 'store');
    const journals = readdirSync(storeDir).filter((f) => f.endsWith('.log'));
    expect(journals).toHaveLength(1);
    const generation = Number(readFileSync(join(storeDir, 'newest-generation'), 'utf8'));
    expect(journals[0]).toBe(`journal-${String(generation).padStart(8, '0')}.log`);
    for (const f of journals) unlinkSync(join(storeDir, f));

    const refused = await runCli(['start', '-c', config]);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n').at(-1)).toBe(
      `bulwark: cannot start: store journal ${join(storeDir, journals[0]!)} is missing: ` +
        `${join(storeDir, 'newest-generation')} says the store reached generation ${generation}, the newest file ` +
        'left is none (restore the file from backup, or start with --repair to continue from what is left (its ' +
        'sessions and messages are lost))',
    );
    expect(readdirSync(storeDir)).toEqual(['newest-generation']);

    broker = await startCliBroker(['-c', config, '--repair']);
    await until(() => broker.output().includes('store repaired: the newest journal file is missing'), 'the warning');
    broker.child.kill('SIGTERM');
    await exited(broker.child);
    // Repaired: the next start needs no --repair.
    broker = await startCliBroker(['-c', config]);
    broker.child.kill('SIGTERM');
    expect(await exited(broker.child)).toBe(0);
  }, 60_000);
  it('periodic: a kill -9 right after the last PUBACK loses none of the acknowledged messages', async () => {
    // A long batch delay: an acknowledgement sent before the batch is written would have 100 ms to be lost in.
    const { config, port } = await brokerSetup('periodic', ['max_batch_delay_ms: 100']);
    const url = `mqtt://127.0.0.1:${port}`;
    let broker = await startCliBroker(['-c', config]);
    const sub = await mqtt.connectAsync(url, { clientId: 'periodic-sub', protocolVersion: 4, clean: false });
    await sub.subscribeAsync('periodic/#', { qos: 1 });
    await sub.endAsync();
    const publisher = await mqtt.connectAsync(url, { clientId: 'periodic-pub', protocolVersion: 4 });
    const acknowledged: string[] = [];
    for (let i = 0; i < 20; i++) {
      await publisher.publishAsync('periodic/x', `m${i}`, { qos: 1, retain: i === 19 });
      acknowledged.push(`periodic/x m${i}`);
    }
    broker.child.kill('SIGKILL');
    await exited(broker.child);
    publisher.end(true);

    broker = await startCliBroker(['-c', config]);
    expect(broker.output()).toMatch(/store restored: 1 sessions, 20 messages, 1 retained/);
    const after = collect(url, { clientId: 'periodic-sub', protocolVersion: 4, clean: false });
    await until(() => after.received.length >= 20, 'the acknowledged messages after the crash');
    await new Promise((r) => setTimeout(r, 200));
    expect(after.received).toEqual(acknowledged);
    after.client.end();
    broker.child.kill('SIGTERM');
    await exited(broker.child);
  }, 60_000);

  it.each(['sync', 'periodic'])(
    '%s: after PUBCOMP and a kill -9, a new QoS 2 PUBLISH reusing the released packet id is routed',
    async (durability) => {
      const { config, port } = await brokerSetup(durability, ['max_batch_delay_ms: 100']);
      let broker = await startCliBroker(['-c', config]);
      const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
        clientId: 'qos2-sub',
        protocolVersion: 4,
        clean: false,
      });
      await sub.subscribeAsync('qos2/#', { qos: 2 });
      await sub.endAsync();

      let pub = await RawClient.connect(port);
      pub.send(connectPacket('qos2-pub', { clean: false }));
      await pub.next('connack');
      pub.send({
        cmd: 'publish',
        topic: 'qos2/a',
        payload: Buffer.from('first'),
        qos: 2,
        retain: false,
        dup: false,
        messageId: 1,
      });
      await pub.next('pubrec');
      pub.send({ cmd: 'pubrel', messageId: 1 });
      await pub.next('pubcomp');
      broker.child.kill('SIGKILL');
      await exited(broker.child);
      pub.end();

      broker = await startCliBroker(['-c', config]);
      pub = await RawClient.connect(port);
      pub.send(connectPacket('qos2-pub', { clean: false }));
      expect((await pub.next('connack')).sessionPresent).toBe(true);
      pub.send({
        cmd: 'publish',
        topic: 'qos2/a',
        payload: Buffer.from('second'),
        qos: 2,
        retain: false,
        dup: false,
        messageId: 1,
      });
      await pub.next('pubrec');
      pub.send({ cmd: 'pubrel', messageId: 1 });
      await pub.next('pubcomp');
      pub.end();

      const after = collect(`mqtt://127.0.0.1:${port}`, { clientId: 'qos2-sub', protocolVersion: 4, clean: false });
      await until(() => after.received.length >= 2, 'both QoS 2 messages');
      await new Promise((r) => setTimeout(r, 200));
      expect(after.received).toEqual(['qos2/a first', 'qos2/a second']);
      after.client.end();
      broker.child.kill('SIGTERM');
      await exited(broker.child);
    },
    60_000,
  );
});
