import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { startCliBroker } from '../../helpers/cli.js';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';
import { PacketLog, publishNoWait } from '../../helpers/packet-log.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';
import { BASE, WITH_BETA, WITHOUT_NEWS_READERS } from './reload-policies.js';

/** `bulwark start -c` with file watching off, so only SIGHUP can reload the policy. */
interface CliBroker {
  child: ChildProcess;
  url: string;
  policyFile: string;
  /** Structured log lines printed so far. */
  logs(): Record<string, unknown>[];
  waitForLog(where: (l: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>>;
}

describe('policy reload on SIGHUP (bulwark start)', () => {
  let dir: TempDir | undefined;
  let running: ChildProcess | undefined;
  const clients: Connected[] = [];
  afterEach(async () => {
    await endAll(...clients.splice(0).map((c) => c.client));
    if (running && running.exitCode === null) {
      const exited = new Promise((r) => running!.once('exit', r));
      running.kill('SIGTERM');
      await exited;
    }
    running = undefined;
    dir?.cleanup();
    dir = undefined;
  });

  async function start(policy: string): Promise<CliBroker> {
    dir = tempDir();
    const policyFile = dir.write('site.policy.yaml', policy);
    const config = dir.write(
      'bulwark.yaml',
      [
        `data_dir: ${JSON.stringify(dir.file('data'))}`,
        'sys_interval_seconds: 0',
        'persistence: { durability: none }',
        'authentication: { anonymous: true }',
        'listeners:',
        '  - { name: main, transport: tcp, host: 127.0.0.1, port: 0 }',
        'authorization:',
        `  policy_files: [${JSON.stringify(policyFile)}]`,
        '  watch: false',
        '',
      ].join('\n'),
    );
    const { child, output } = await startCliBroker(['-c', config]);
    running = child;
    const port = /tcp:\/\/127\.0\.0\.1:(\d+)/.exec(output())?.[1];
    expect(port).toBeDefined();
    const logs = (): Record<string, unknown>[] =>
      output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    return {
      child,
      url: `mqtt://127.0.0.1:${port}`,
      policyFile,
      logs,
      async waitForLog(where, what) {
        for (let i = 0; i < 500; i++) {
          const found = logs().find(where);
          if (found) return found;
          await new Promise((r) => setTimeout(r, 10));
        }
        throw new Error(`timed out waiting for log: ${what}`);
      },
    };
  }

  async function connect(cli: CliBroker, clientId: string): Promise<Connected> {
    const c = await connectClient(cli.url, { clientId, protocolVersion: 5 });
    clients.push(c);
    return c;
  }

  async function publishCode(c: Connected, log: PacketLog, topic: string): Promise<number> {
    const id = await publishNoWait(c.client, topic, 'x', { qos: 1 });
    return (await log.ack('puback', id!)).reasonCode ?? 0;
  }

  it('applies a changed policy only after SIGHUP', async () => {
    const cli = await start(BASE);
    const c = await connect(cli, 'beta-tester');
    const log = new PacketLog(c.client);
    writeFileSync(cli.policyFile, WITH_BETA);
    // Not watching: the running policy is unchanged until the signal.
    expect(await publishCode(c, log, 'beta/x')).toBe(0x87);
    cli.child.kill('SIGHUP');
    const reloaded = await cli.waitForLog(
      (l) => l.event === 'policy.reloaded' && l.trigger === 'sighup',
      'policy.reloaded (sighup)',
    );
    expect(reloaded.new_hash).not.toBe(reloaded.old_hash);
    expect(await publishCode(c, log, 'beta/x')).toBe(0);
  });

  it('keeps the running policy when the file is broken at SIGHUP, logging policy.reload_failed with file:line:column', async () => {
    const cli = await start(BASE);
    const c = await connect(cli, 'broken');
    const log = new PacketLog(c.client);
    const broken = WITH_BETA.replace('    allow: publish\n', '    allow: publish\n    colour: blue\n');
    const line = broken.split('\n').findIndex((l) => l.includes('colour: blue')) + 1;
    writeFileSync(cli.policyFile, broken);
    cli.child.kill('SIGHUP');
    const failed = await cli.waitForLog((l) => l.event === 'policy.reload_failed', 'policy.reload_failed');
    expect(failed.trigger).toBe('sighup');
    const errors = failed.errors as string[];
    expect(errors[0]).toContain(`${cli.policyFile}:${line}:5: error:`);
    expect(await publishCode(c, log, 'beta/x')).toBe(0x87);
    expect(await publishCode(c, log, 'open/x')).toBe(0);
  });

  it('stops a live subscription that the policy loaded at SIGHUP no longer allows', async () => {
    const cli = await start(BASE);
    const reader = await connect(cli, 'reader');
    await reader.client.subscribeAsync(['news/#', 'open/#'], { qos: 1 });
    const desk = await connect(cli, 'desk');
    await desk.client.publishAsync('news/before', 'b', { qos: 1 });
    await reader.received.waitForTopic('news/before');
    writeFileSync(cli.policyFile, WITHOUT_NEWS_READERS);
    cli.child.kill('SIGHUP');
    await cli.waitForLog((l) => l.event === 'policy.reloaded' && l.trigger === 'sighup', 'policy.reloaded');
    const revoked = await cli.waitForLog(
      (l) => l.action === 'authz.subscription_revoked' && l.clientId === 'reader',
      'authz.subscription_revoked',
    );
    expect(revoked.topic).toBe('news/#');
    await desk.client.publishAsync('news/after', 'a', { qos: 1 });
    await desk.client.publishAsync('open/marker', 'm', { qos: 1 });
    await reader.received.waitForTopic('open/marker');
    expect(reader.received.on('news/after')).toEqual([]);
  });
});
