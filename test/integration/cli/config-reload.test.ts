import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../../audit/record.js';
import { auditRecordSchema } from '../../../audit/record-schema.js';
import { startCliBroker } from '../../helpers/cli.js';
import { connectClient, endAll } from '../../helpers/mqtt-clients.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';
import { until } from '../../helpers/until.js';

const POLICY = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about configuration reload.
  - name: everything
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['#']
`;

function configText(dir: TempDir, policyFile: string, extra: string[] = [], logLevel = 'info'): string {
  return [
    `data_dir: ${JSON.stringify(dir.file('data'))}`,
    `log_level: ${logLevel}`,
    'sys_interval_seconds: 0',
    'persistence: { durability: none }',
    'authentication: { anonymous: true }',
    'listeners:',
    '  - { name: main, transport: tcp, host: 127.0.0.1, port: 0 }',
    'authorization:',
    `  policy_files: [${JSON.stringify(policyFile)}]`,
    '  watch: false',
    ...extra,
    '',
  ].join('\n');
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

describe('configuration reload on SIGHUP (bulwark start -c)', () => {
  let dir: TempDir | undefined;
  let running: ChildProcess | undefined;
  afterEach(async () => {
    if (running && running.exitCode === null) {
      const exited = new Promise((r) => running!.once('exit', r));
      running.kill('SIGTERM');
      await exited;
    }
    running = undefined;
    dir?.cleanup();
    dir = undefined;
  });

  async function start(): Promise<{
    configFile: string;
    policyFile: string;
    url: string;
    logs: () => Record<string, unknown>[];
    output: () => string;
    records: (action: string) => AuditRecord[];
  }> {
    dir = tempDir('bulwark-config-reload-');
    const policyFile = dir.write('site.policy.yaml', POLICY);
    const configFile = dir.write('bulwark.yaml', configText(dir, policyFile));
    const { child, output } = await startCliBroker(['-c', configFile]);
    running = child;
    const port = /tcp:\/\/127\.0\.0\.1:(\d+)/.exec(output())?.[1];
    expect(port).toBeDefined();
    const auditDir = dir.file('data/audit');
    return {
      configFile,
      policyFile,
      url: `mqtt://127.0.0.1:${port}`,
      output,
      logs: () =>
        output()
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>),
      records: (action) =>
        readdirSync(auditDir)
          .filter((n) => n.endsWith('.jsonl'))
          .sort()
          .flatMap((n) => readFileSync(join(auditDir, n), 'utf8').split('\n'))
          .filter((l) => l.endsWith('}'))
          .map((l) => JSON.parse(l) as AuditRecord)
          .filter((r) => r.event.action === action),
    };
  }

  it('applies log_level at once, reports a limits change as needing a restart, and records both hashes', async () => {
    const b = await start();
    const before = readFileSync(b.configFile, 'utf8');
    const after = configText(dir!, b.policyFile, ['limits: { max_packet_size: 4096 }'], 'warn');
    writeFileSync(b.configFile, after);
    running!.kill('SIGHUP');

    const record = await until(() => b.records('config.changed')[0], 'config.changed', 10_000);
    expect(auditRecordSchema.safeParse(record).error).toBeUndefined();
    expect(record).toMatchObject({
      event: { action: 'config.changed', outcome: 'success' },
      actor: 'signal:SIGHUP',
      policy: { file: b.configFile, old_hash: sha256(before), new_hash: sha256(after) },
      config: {
        changed: ['limits.max_packet_size', 'log_level'],
        applied: ['log_level'],
        restart_required: ['limits.max_packet_size'],
      },
    });

    const warning = await until(
      () => b.logs().find((l) => String(l.msg).startsWith('configuration changed, but these settings')),
      'the restart warning',
      10_000,
    );
    expect(warning).toMatchObject({ level: 40, restart_required: ['limits.max_packet_size'] });
    // log_level: warn took effect before the reload logged its summary at info level, so that line is absent.
    expect(b.logs().some((l) => String(l.msg).startsWith('configuration reloaded'))).toBe(false);
    // The policy is reloaded on SIGHUP as before.
    await until(() => (b.records('policy.reloaded').length > 0 ? true : undefined), 'policy.reloaded', 10_000);
  });

  it('an invalid file is refused with its position, recorded as a failure, and the broker keeps serving', async () => {
    const b = await start();
    const before = readFileSync(b.configFile, 'utf8');
    const broken = before.replace('log_level: info', 'log_level: loud');
    writeFileSync(b.configFile, broken);
    running!.kill('SIGHUP');

    const line = broken.split('\n').findIndex((l) => l.startsWith('log_level')) + 1;
    const position = `${b.configFile}:${line}:12`;
    const logged = await until(
      () => b.logs().find((l) => String(l.msg).startsWith('configuration reload refused')),
      'the refusal log line',
      10_000,
    );
    expect(logged.level).toBe(50);
    expect(String(logged.msg)).toContain(`${position}: log_level:`);

    const record = await until(() => b.records('config.changed')[0], 'config.changed', 10_000);
    expect(auditRecordSchema.safeParse(record).error).toBeUndefined();
    expect(record).toMatchObject({
      event: { action: 'config.changed', outcome: 'failure' },
      actor: 'signal:SIGHUP',
      policy: { file: b.configFile, old_hash: sha256(before), new_hash: sha256(broken) },
    });
    expect(record?.policy?.error).toContain(`${position}: log_level:`);
    expect(record?.config).toBeUndefined();

    expect(running!.exitCode).toBeNull();
    const c = await connectClient(b.url, { clientId: 'after-refusal', protocolVersion: 5 });
    expect(c.connack.reasonCode ?? 0).toBe(0);
    await endAll(c.client);

    // Fixing the file later is compared with what was last loaded, not with the refused content.
    writeFileSync(b.configFile, before.replace('log_level: info', 'log_level: debug'));
    running!.kill('SIGHUP');
    const second = await until(() => b.records('config.changed')[1], 'the second config.changed', 10_000);
    expect(second).toMatchObject({
      event: { outcome: 'success' },
      policy: { old_hash: sha256(before) },
      config: { changed: ['log_level'], applied: ['log_level'], restart_required: [] },
    });
  });
});
