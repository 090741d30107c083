import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const repoRoot = resolve(import.meta.dirname, '../../..');

interface SmokeReport {
  summaries: {
    name: string;
    metrics: { key: string; medians: { bulwark?: number; aedes?: number }; ratioAedes?: number }[];
    lost: { bulwark?: number; aedes?: number };
    duplicates: { bulwark?: number; aedes?: number };
  }[];
  records: { broker: string; measurement: { error?: string; skipped?: string; notes?: string[] } }[];
  machine: { loadgen: string; aedes?: string; pinned?: { broker: string; loadgen: string } };
}

/**
 * The benchmark itself is not timed here: this only proves `npm run bench` still works end to end (broker
 * start, pinned load generator, accounting, JSON output), so a broken bench is found by CI rather than on the
 * day someone wants numbers. It runs the compiled bench, which the test command builds first.
 */
describe('bench smoke', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs the compiled bench with `--quick` and `args`, and reads the JSON report it wrote to `name`. */
  async function quickRun(name: string, args: string[]): Promise<SmokeReport> {
    const out = join(dir, name);
    await run(process.execPath, [join(repoRoot, 'dist/bench/run.js'), '--quick', ...args, '--out', out], {
      cwd: repoRoot,
      timeout: 110_000,
    });
    return JSON.parse(readFileSync(out, 'utf8')) as SmokeReport;
  }

  it('a quick QoS 1 fan-in run writes a JSON report with positive throughput and no lost messages', async () => {
    const report = await quickRun('result.json', ['--scenario', 'fanin-qos1']);
    expect(report.records.map((r) => r.measurement.error ?? r.measurement.skipped)).toEqual([undefined]);
    const fanin = report.summaries.find((s) => s.name === 'fanin-qos1');
    const throughput = fanin?.metrics.find((m) => m.key === 'rate')?.medians.bulwark;
    expect(throughput).toBeGreaterThan(0);
    expect(fanin?.lost.bulwark).toBe(0);
    expect(fanin?.duplicates.bulwark).toBe(0);
  }, 120_000);

  it('the authorization scenario runs its three configurations side by side, taking turns in slices', async () => {
    const report = await quickRun('authz.json', ['--scenario', 'authz', '--duration', '2']);
    expect(report.records.map((r) => r.measurement.error ?? r.measurement.skipped)).toEqual([undefined]);
    const authz = report.summaries.find((s) => s.name === 'authz');
    for (const key of ['plain', 'rules10', 'rules10000', 'plainCpuUs', 'rules10CpuUs', 'rules10000CpuUs'])
      expect(authz?.metrics.find((m) => m.key === key)?.medians.bulwark, key).toBeGreaterThan(0);
    expect(authz?.lost.bulwark).toBe(0);
    // A 2 s window is two slices of 1 s; the second starts with the variant that ran second in the first.
    const order = report.records[0]?.measurement.notes?.find((n) => n.startsWith('interleaved'));
    const slices = /: (.*)$/.exec(order ?? '')?.[1]?.split(' | ');
    expect(slices).toHaveLength(2);
    const [first, second] = slices!.map((s) => s.split(' '));
    expect(new Set(first)).toEqual(new Set(['plain', 'rules10', 'rules10000']));
    expect(second).toEqual([...first!.slice(1), first![0]]);
  }, 120_000);

  it('a quick idle-connection run with the C connect load generator holds every client', async () => {
    const report = await quickRun('idle.json', ['--scenario', 'idle-connections']);
    // The machines this suite runs on have a C compiler (node-gyp needs one); without it the bench says so.
    expect(report.machine.loadgen).toBe('native (C)');
    expect(report.records.map((r) => r.measurement.error ?? r.measurement.skipped)).toEqual([undefined]);
    const idle = report.summaries.find((s) => s.name === 'idle-connections');
    expect(idle?.metrics.find((m) => m.key === 'connections')?.medians.bulwark).toBe(500);
    expect(idle?.metrics.find((m) => m.key === 'connectRate')?.medians.bulwark).toBeGreaterThan(0);
    // The second burst connects the same number of clients again, after the first has been closed.
    expect(idle?.metrics.find((m) => m.key === 'connectRateWarm')?.medians.bulwark).toBeGreaterThan(0);
    // The same warm burst against a Bulwark with its audit log off, compared with Mosquitto's second burst.
    const auditOff = idle?.metrics.find((m) => m.key === 'connectRateWarmAuditOff');
    expect(auditOff?.medians.bulwark).toBeGreaterThan(0);
    // A connect costs the broker some CPU, and less than the whole window's worth per client.
    for (const key of ['cpuPerConnectUs', 'cpuPerConnectWarmUs', 'cpuPerConnectWarmAuditOffUs']) {
      const us = idle?.metrics.find((m) => m.key === key)?.medians.bulwark;
      expect({ key, positive: (us ?? 0) > 0, belowOneSecond: (us ?? Infinity) < 1e6 }).toEqual({
        key,
        positive: true,
        belowOneSecond: true,
      });
    }
    // Quick runs settle for 1 s only, so the settled figure is not meaningful here; it must still be measured.
    expect(idle?.metrics.find((m) => m.key === 'rssSettledPerConnectionKiB')?.medians.bulwark).toEqual(
      expect.any(Number),
    );
    expect(idle?.lost.bulwark).toBe(0);
  }, 120_000);

  it('a quick latency run with the C load generator sends on schedule and measures every message of its window', async () => {
    const samplesDir = join(dir, 'latency-samples');
    const report = await quickRun('latency.json', ['--scenario', 'latency-qos1', '--latency-samples', samplesDir]);
    expect(report.machine.loadgen).toBe('native (C)');
    expect(report.records.map((r) => r.measurement.error ?? r.measurement.skipped)).toEqual([undefined]);
    const latency = report.summaries.find((s) => s.name === 'latency-qos1');
    const median = (key: string) => latency?.metrics.find((m) => m.key === key)?.medians.bulwark ?? NaN;
    expect(median('p50Ms')).toBeGreaterThan(0);
    expect(median('p99Ms')).toBeGreaterThanOrEqual(median('p50Ms'));
    expect(median('maxMs')).toBeGreaterThanOrEqual(median('p99Ms'));
    expect(latency?.lost.bulwark).toBe(0);
    // 5,000 msg/s over the quick run's 1 s window, each sent at its own time rather than in millisecond bursts, at a
    // pseudo-random point of its 0.2 ms slot: the gaps between sends vary (on a fixed grid both would be 0.200).
    const notes = report.records[0]?.measurement.notes ?? [];
    const note = notes.find((n) => n.includes('samples')) ?? '';
    const shape =
      /^5000 samples; sent p99 \d+\.\d{3} ms after schedule; (\d+\.\d{3})–(\d+\.\d{3}) ms between scheduled sends; load generator (polled|slept)$/;
    expect(note).toMatch(shape);
    // Pinned to a core of its own, it polls, and its busy core is not reported as saturation; sharing one, it sleeps.
    expect(shape.exec(note)![3]).toBe(report.machine.pinned ? 'polled' : 'slept');
    if (report.machine.pinned) expect(notes.filter((n) => n.includes('saturated'))).toEqual([]);
    const [, shortest, longest] = shape.exec(note)!.slice(0, 3).map(Number);
    expect(shortest).toBeGreaterThanOrEqual(0.1);
    expect(shortest).toBeLessThan(0.12);
    expect(longest).toBeGreaterThan(0.28);
    expect(longest).toBeLessThan(0.3);
    // Every sample of the window is kept, and the reported p99 is the nearest-rank p99 of those samples.
    const samples = readFileSync(join(samplesDir, 'bulwark-1.txt'), 'utf8').trim().split('\n').map(Number);
    expect(samples).toHaveLength(5000);
    const sorted = [...samples].sort((a, b) => a - b);
    // In the order the deliveries arrived, not sorted.
    expect(samples).not.toEqual(sorted);
    expect(sorted[0]).toBeGreaterThan(0);
    expect(sorted[Math.floor((99 * sorted.length + 99) / 100) - 1]).toBeCloseTo(median('p99Ms'), 6);
  }, 120_000);

  it('the paired latency run measures Bulwark and aedes in one window, taking turns, each with its own samples', async () => {
    const samplesDir = join(dir, 'paired-samples');
    const report = await quickRun('paired.json', [
      '--scenario',
      'latency-qos1-paired',
      '--against',
      'aedes',
      '--latency-samples',
      samplesDir,
    ]);
    expect(report.records.map((r) => [r.broker, r.measurement.error ?? r.measurement.skipped])).toEqual([
      ['bulwark', undefined],
      ['aedes', undefined],
    ]);
    const paired = report.summaries.find((s) => s.name === 'latency-qos1-paired');
    const metric = (key: string) => paired?.metrics.find((m) => m.key === key);
    for (const broker of ['bulwark', 'aedes'] as const) {
      const p50 = metric('p50Ms')?.medians[broker] ?? NaN;
      const p99 = metric('p99Ms')?.medians[broker] ?? NaN;
      expect({ broker, p50Positive: p50 > 0, p99AtLeastP50: p99 >= p50 }).toEqual({
        broker,
        p50Positive: true,
        p99AtLeastP50: true,
      });
      expect(paired?.lost[broker]).toBe(0);
      // The window is twice the quick run's 1 s, dealt out in turns of 2 ms: each broker gets 1 s of the schedule,
      // 5,000 messages, of which those that follow another broker's turn are left out of the samples.
      const record = report.records.find((r) => r.broker === broker);
      const note = record?.measurement.notes?.find((n) => n.includes('first messages of a turn')) ?? '';
      const counts = /^(\d+) samples \(and (\d+) first messages of a turn, not sampled\)/.exec(note);
      const [sampled, skipped] = [Number(counts?.[1]), Number(counts?.[2])];
      expect(sampled + skipped).toBe(5000);
      // Turns of 2 ms hold about ten messages, and every other turn follows the other broker's.
      expect(skipped).toBeGreaterThan(150);
      expect(skipped).toBeLessThan(350);
      const samples = readFileSync(join(samplesDir, `paired-${broker}-1.txt`), 'utf8')
        .trim()
        .split('\n')
        .map(Number);
      expect(samples).toHaveLength(sampled);
      const sorted = [...samples].sort((a, b) => a - b);
      expect(sorted[Math.floor((99 * sorted.length + 99) / 100) - 1]).toBeCloseTo(p99, 6);
    }
    expect(metric('p99Ms')?.ratioAedes).toBeGreaterThan(0);
    // Both records come from one load generator run, which says how the schedule was dealt.
    for (const record of report.records) expect(record.measurement.notes).toContain('turns of 2 ms, bulwark aedes');
  }, 120_000);

  it('the paired latency run without a broker to compare with is skipped with the reason', async () => {
    const report = await quickRun('paired-alone.json', ['--scenario', 'latency-qos1-paired']);
    expect(report.records.map((r) => r.measurement.skipped)).toEqual([
      'needs a broker to compare with (--against mosquitto, aedes or external)',
    ]);
  }, 120_000);

  it('a quick reconnect storm measures the warm-up storm, the ramp and the storm after them, with no connect refused', async () => {
    const report = await quickRun('storm.json', ['--scenario', 'connect-auth']);
    expect(report.records.map((r) => r.measurement.error ?? r.measurement.skipped)).toEqual([undefined]);
    const storm = report.summaries.find((s) => s.name === 'connect-auth');
    const median = (key: string) => storm?.metrics.find((m) => m.key === key)?.medians.bulwark;
    expect(median('cachedFirst')).toBeGreaterThan(0);
    expect(median('cachedRamp')).toBeGreaterThan(0);
    expect(median('cached')).toBeGreaterThan(0);
    expect(median('cachedCpuUs')).toBeGreaterThan(0);
    expect(median('uncached')).toBeGreaterThan(0);
    // Refused or failed connects in either storm count as lost: every bench user has the right password.
    expect(storm?.lost.bulwark).toBe(0);
  }, 120_000);

  it('a quick QoS 2 fan-in run against aedes reports aedes beside Bulwark with the Bulwark/aedes ratio', async () => {
    const report = await quickRun('aedes.json', ['--scenario', 'fanin-qos2', '--against', 'aedes']);
    expect(report.machine.aedes).toBe('1.2.0');
    expect(report.records.map((r) => [r.broker, r.measurement.error ?? r.measurement.skipped])).toEqual([
      ['bulwark', undefined],
      ['aedes', undefined],
    ]);
    const fanin = report.summaries.find((s) => s.name === 'fanin-qos2');
    const rate = fanin?.metrics.find((m) => m.key === 'rate');
    expect(rate?.medians.aedes).toBeGreaterThan(0);
    expect(rate?.ratioAedes).toBeGreaterThan(0);
    expect(fanin?.lost.aedes).toBe(0);
    expect(fanin?.duplicates.aedes).toBe(0);
  }, 120_000);
});
