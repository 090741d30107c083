import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canConnect } from '../../../bench/brokers.js';
import { freePort } from '../../helpers/free-port.js';

const repoRoot = resolve(import.meta.dirname, '../../..');

interface ExternalReport {
  machine: { external?: { name: string; port: number; pid?: number; command?: string; pidFrom?: string } };
  notes: string[];
  summaries: {
    name: string;
    metrics: { key: string; medians: { bulwark?: number; external?: number }; ratioExternal?: number }[];
    lost: { external?: number };
    duplicates: { external?: number };
    brokerCpu: { external?: number };
    notes: string[];
  }[];
  records: { scenario: string; broker: string; measurement: { error?: string; skipped?: string } }[];
}

/** Runs the compiled bench; resolves with its exit code and output whatever the code. */
function bench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(repoRoot, 'dist/bench/run.js'), '--quick', ...args],
      { cwd: repoRoot, timeout: 110_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A Mosquitto someone started by hand, as an operator would start EMQX or HiveMQ beside the bench. */
async function startMosquitto(dir: string, port: number, anonymous: boolean): Promise<ChildProcess> {
  const conf = join(dir, `mosquitto-${port}.conf`);
  writeFileSync(
    conf,
    [`listener ${port} 127.0.0.1`, `allow_anonymous ${anonymous}`, 'max_inflight_messages 0', 'persistence false'].join(
      '\n',
    ) + '\n',
  );
  const child = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (await canConnect(port)) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill();
  throw new Error(`mosquitto did not listen on ${port}`);
}

/**
 * `--against external:PORT`: the bench measures a broker it did not start (EMQX, HiveMQ) beside Bulwark. A Mosquitto
 * started by the test stands in for it; the bench must find its process, leave it running, and say what it could
 * not measure. Timings are not asserted.
 */
describe('bench against an external broker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-external-'));
  let broker: ChildProcess;
  let port: number;

  beforeAll(async () => {
    chmodSync(dir, 0o755); // Mosquitto started as root reads as its own user
    port = await freePort();
    broker = await startMosquitto(dir, port, true);
  });
  afterAll(() => {
    broker?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it('measures the running broker beside Bulwark, reads its process, skips what needs the bench’s users, and leaves it running', async () => {
    const out = join(dir, 'external.json');
    const scenarios = ['fanin-qos1', 'idle-connections', 'connect-auth'].flatMap((s) => ['--scenario', s]);
    const run = await bench(['--against', `external:${port}`, '--external-name', 'mosq', ...scenarios, '--out', out]);
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(readFileSync(out, 'utf8')) as ExternalReport;
    // Found as the process that holds the listening socket.
    expect(report.machine.external).toEqual({
      name: 'mosq',
      port,
      pid: broker.pid,
      command: 'mosquitto',
      pidFrom: 'listening socket',
    });
    expect(report.records.filter((r) => r.broker === 'external').map((r) => [r.scenario, r.measurement.error])).toEqual(
      [
        ['fanin-qos1', undefined],
        ['idle-connections', undefined],
        ['connect-auth', undefined],
      ],
    );
    const summary = (name: string) => report.summaries.find((s) => s.name === name)!;
    const median = (name: string, key: string) => summary(name).metrics.find((m) => m.key === key)?.medians.external;

    const fanin = summary('fanin-qos1');
    expect(median('fanin-qos1', 'rate')).toBeGreaterThan(0);
    expect(fanin.metrics[0]?.ratioExternal).toBeGreaterThan(0);
    expect([fanin.lost.external, fanin.duplicates.external]).toEqual([0, 0]);
    // Its CPU is read through the process found: without it this would be absent.
    expect(fanin.brokerCpu.external).toBeGreaterThan(0);

    // Both bursts connect every client; the first is not "after a start" for a broker the bench did not start.
    expect(median('idle-connections', 'connections')).toBe(500);
    expect(median('idle-connections', 'connectRateWarm')).toBeGreaterThan(0);
    expect(median('idle-connections', 'connectRate')).toBeUndefined();
    expect(median('idle-connections', 'rssSettledPerConnectionKiB')).toEqual(expect.any(Number));
    expect(summary('idle-connections').notes).toContain(
      'mosq: first burst: not after a start (the bench does not start this broker)',
    );

    // The storm's users exist only in password files the bench writes for brokers it starts.
    const storm = report.records.find((r) => r.broker === 'external' && r.scenario === 'connect-auth');
    expect(storm?.measurement.skipped).toMatch(/users and passwords exist only on brokers the bench starts/);
    expect(report.notes).toContainEqual(
      expect.stringMatching(/^mosq was started by someone else: the bench does not restart it/),
    );

    // The table heads the broker's column with its name; the bench never stopped it.
    expect(run.stdout).toMatch(/mosq \(median\).*vs mosq/);
    expect(broker.exitCode).toBeNull();
    expect(await canConnect(port)).toBe(true);
  }, 120_000);

  it('says where its CPU may collide with the load generator’s, and reads the process it is given', async () => {
    // Mosquitto here may run on any core; the bench pins its load generator to core 1 where there are two.
    const out = join(dir, 'pid.json');
    const run = await bench([
      '--against',
      `external:${port}`,
      '--external-pid',
      String(broker.pid),
      '--scenario',
      'fanin-qos0',
      '--out',
      out,
    ]);
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(readFileSync(out, 'utf8')) as ExternalReport & { machine: { pinned?: unknown } };
    expect(report.machine.external?.pidFrom).toBe('option');
    expect(report.machine.external?.pid).toBe(broker.pid);
    const collision = report.notes.filter((n) => n.includes('where the load generator is pinned'));
    expect(collision).toEqual(
      report.machine.pinned
        ? [
            `external (pid ${broker.pid}, mosquitto) may run on core 1, where the load generator is pinned; for a side-by-side comparison pin it elsewhere (taskset -a -p -c 0 ${broker.pid})`,
          ]
        : [],
    );
  }, 120_000);

  it('refuses to start a run when nothing answers MQTT at the port, or only refuses anonymous clients', async () => {
    const out = join(dir, 'refused.json');
    const unused = await freePort();
    const nothing = await bench(['--against', `external:${unused}`, '--out', out]);
    expect([nothing.code, nothing.stderr.trim()]).toEqual([
      1,
      `bench: external on 127.0.0.1:${unused}: nothing accepts connections there`,
    ]);

    // Something that accepts and hangs up at once: a port number typed wrong, say.
    const hangUp = net.createServer((s) => s.destroy());
    hangUp.listen(0, '127.0.0.1');
    await once(hangUp, 'listening');
    const hangUpPort = (hangUp.address() as net.AddressInfo).port;
    const closed = await bench(['--against', `external:${hangUpPort}`, '--out', out]);
    hangUp.close();
    expect(closed.code).toBe(1);
    expect(closed.stderr).toContain(
      `bench: external on 127.0.0.1:${hangUpPort}: no CONNACK to an MQTT 3.1.1 CONNECT (the connection was closed)`,
    );

    const strictPort = await freePort();
    const strict = await startMosquitto(dir, strictPort, false);
    try {
      const refused = await bench(['--against', `external:${strictPort}`, '--out', out]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(
        `bench: external on 127.0.0.1:${strictPort}: refused an anonymous CONNECT (return code 5)`,
      );
    } finally {
      strict.kill();
    }
    expect(existsSync(out)).toBe(false);
  }, 60_000);
});
