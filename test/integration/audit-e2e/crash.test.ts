import { appendFileSync, readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import {
  auditFiles,
  byAction,
  field,
  readAuditRecords,
  startYamlBroker,
  type YamlBroker,
} from '../../helpers/audit-e2e.js';
import { runCli } from '../../helpers/cli.js';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';

const POLICY = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about topic rules; every client may connect.

  - name: load-open
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['load/#']
`;

/** Publishes QoS 0 as fast as the socket drains until `stop()`; every PUBLISH is an audited allowed decision. */
function flood(c: Connected, topic: string): { stop(): void; done: Promise<number> } {
  let running = true;
  const done = (async () => {
    let sent = 0;
    while (running && c.client.connected) {
      for (let i = 0; i < 200; i++) c.client.publish(topic, `m${sent++}`, { qos: 0 });
      await new Promise((r) => setImmediate(r));
    }
    return sent;
  })();
  return { stop: () => (running = false), done };
}

describe('the audit log after kill -9 during heavy logging', () => {
  // Each test makes its own directory; all are removed at the end (one variable kept only the last).
  const dirs: TempDir[] = [];
  let broker: YamlBroker | undefined;

  afterAll(async () => {
    await broker?.kill9();
    for (const dir of dirs) dir.cleanup();
  });

  async function setup(): Promise<{ config: string; dataDir: string; auditDir: string }> {
    const dir = tempDir('bulwark-audit-crash-');
    dirs.push(dir);
    const dataDir = dir.file('data');
    const policyFile = dir.write('open.policy.yaml', POLICY);
    const config = dir.write(
      'bulwark.yaml',
      [
        `data_dir: ${JSON.stringify(dataDir)}`,
        'sys_interval_seconds: 0',
        'log_level: warn',
        'persistence: { durability: none }',
        'authentication: { anonymous: true }',
        'listeners:',
        '  - { name: main, transport: tcp, host: 127.0.0.1, port: 0 }',
        'authorization:',
        `  policy_files: [${JSON.stringify(policyFile)}]`,
        '  watch: false',
        'audit:',
        '  record_publish_allowed: all',
        '',
      ].join('\n'),
    );
    return { config, dataDir, auditDir: `${dataDir}/audit` };
  }

  /** Starts the broker, floods it from four clients, and kills it with SIGKILL mid-flood. Returns the file it wrote. */
  async function crashUnderLoad(config: string, auditDir: string): Promise<string> {
    broker = await startYamlBroker(config);
    const url = `mqtt://127.0.0.1:${broker.ports['main']}`;
    const clients = await Promise.all(
      [1, 2, 3, 4].map((n) => connectClient(url, { clientId: `loader-${n}`, protocolVersion: 5 })),
    );
    const floods = clients.map((c, n) => flood(c, `load/${n}`));
    const [file] = await waitForFiles(auditDir, 1);
    // Kill while the writer is busy: well into the flood, not before it.
    const deadline = Date.now() + 30_000;
    // 768 KiB is well over the 1,000 records the checks below expect (about 500 bytes a record).
    while (statSync(file!).size < 768 * 1024 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    await broker.kill9();
    floods.forEach((f) => f.stop());
    await Promise.all(floods.map((f) => f.done));
    await endAll(...clients.map((c) => c.client));
    broker = undefined;
    return file!;
  }

  it('verifies intact after a restart, with any torn tail sealed by the next run', async () => {
    const { config, dataDir, auditDir } = await setup();
    const firstFile = await crashUnderLoad(config, auditDir);
    await checkRestart(config, dataDir, auditDir, firstFile);
  }, 90_000);

  it('seals a torn last line (a batch cut off mid-write) at the next start without rewriting the file', async () => {
    const { config, dataDir, auditDir } = await setup();
    const firstFile = await crashUnderLoad(config, auditDir);
    // What a power loss or a write cut short leaves: the start of a record with no newline. The kill itself may
    // already have left part of a line (a batch written in more than one call): the seal covers both.
    const written = readFileSync(firstFile);
    const tornByKill = written.length - (written.lastIndexOf(0x0a) + 1);
    const lines = written
      .subarray(0, written.length - tornByKill)
      .toString('utf8')
      .split('\n');
    appendFileSync(firstFile, lines.at(-2)!.slice(0, 57));
    const sealedBytes = await checkRestart(config, dataDir, auditDir, firstFile);
    expect(sealedBytes).toBe(tornByKill + 57);
  }, 90_000);
});

/** Restarts, stops cleanly and checks the log; returns the torn byte count that was sealed (0 if none). */
async function checkRestart(config: string, dataDir: string, auditDir: string, firstFile: string): Promise<number> {
  const crashedBytes = readFileSync(firstFile);
  const lastNewline = crashedBytes.lastIndexOf(0x0a);
  const tornLength = crashedBytes.length - (lastNewline + 1);
  const beforeRestart = readAuditRecords(auditDir);
  expect(byAction(beforeRestart, 'authz.publish_allowed').length).toBeGreaterThan(1000);

  // Before the restart the log is not intact: it ends without a shutdown checkpoint, maybe with a torn line.
  const crashed = await runCli(['audit', 'verify', auditDir]);
  expect(crashed.code).toBe(1);
  // `unsigned` when the crash came before the first interval checkpoint: nothing at all is signed yet.
  expect(crashed.stdout).toMatch(/^BROKEN (truncated|unsigned): /);

  const restarted = await startYamlBroker(config);
  // A client served first: the broker is past start-up (see the SIGTERM-at-ready test in stop.test.ts).
  const probe = await connectClient(`mqtt://127.0.0.1:${restarted.ports['main']}`, { clientId: 'probe' });
  await endAll(probe.client);
  const code = await restarted.stop();
  expect(code, `${restarted.child.signalCode} ${restarted.output()}`).toBe(0);

  const verified = await runCli(['audit', 'verify', auditDir, '--public-key', `${dataDir}/audit-signing.pub`]);
  expect(verified.stdout, verified.stderr).toMatch(/^OK 2 files, \d+ records/);
  expect(verified.code).toBe(0);

  const files = auditFiles(auditDir);
  expect(files).toHaveLength(2);
  // The crashed file is never rewritten.
  expect(readFileSync(files[0]!).equals(crashedBytes)).toBe(true);
  const after = readAuditRecords(auditDir);
  const lastBefore = beforeRestart.at(-1)!;
  const firstOfRestart = after[beforeRestart.length]!;
  expect(firstOfRestart['seq']).toBe((lastBefore['seq'] as number) + 1);
  expect(firstOfRestart['prev_hash']).toBe(lastBefore['hash']);
  const sealed = byAction(after, 'audit.torn_tail_sealed');
  if (tornLength > 0) {
    expect(verified.stdout).toContain('1 torn tails sealed');
    expect(sealed).toHaveLength(1);
    expect(field(firstOfRestart, 'event.action')).toBe('audit.torn_tail_sealed');
    expect(field(sealed[0]!, 'audit.file')).toBe(basename(files[0]!));
    expect(field(sealed[0]!, 'audit.offset')).toBe(lastNewline + 1);
    expect(field(sealed[0]!, 'audit.length')).toBe(tornLength);
    expect(field(sealed[0]!, 'audit.sha256')).toBe(
      createHash('sha256')
        .update(crashedBytes.subarray(lastNewline + 1))
        .digest('hex'),
    );
  } else {
    // The kill landed between two writes: nothing torn, so nothing to seal.
    expect(sealed).toHaveLength(0);
    expect(verified.stdout).toContain('1 files ended without a checkpoint');
  }
  expect(field(after.at(-1)!, 'audit.reason')).toBe('shutdown');
  return tornLength;
}

async function waitForFiles(auditDir: string, count: number): Promise<string[]> {
  for (let i = 0; i < 500; i++) {
    const files = auditFiles(auditDir);
    if (files.length >= count) return files;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no audit file appeared in ${auditDir}`);
}
