import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { aedesVersion, type BrokerKind } from './brokers.js';
import { benchCredentials } from './fixtures.js';
import { inspectExternal, type ExternalBroker } from './external-broker.js';
import { buildNativeLoadgen } from './native-loadgen.js';
import { parseBenchOptions, USAGE, type BenchOptions } from './options.js';
import { brokerOrder } from './harness.js';
import { loadAverage, openFileLimit } from './proc.js';
import { renderTable, summarize, type RoundRecord } from './report.js';
import type { BenchContext, Measurement, Scenario } from './scenario.js';
import { scenarios as allScenarios } from './scenarios/index.js';

/**
 * `npm run bench`: Bulwark (and, when asked, Mosquitto and aedes) run the same scenarios in turn, interleaved over
 * several rounds; medians and Bulwark/Mosquitto and Bulwark/aedes ratios go to the terminal and to
 * bench/results/<timestamp>.json.
 */

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const server = net.createServer();
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => res(port));
    });
  });
}

function commandWorks(cmd: string, args: string[]): { ok: boolean; output: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { ok: r.error === undefined, output: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** `nice` if this user may raise priority to `level` (root, CAP_SYS_NICE), checked by trying it. */
function permittedNice(level: number): number | undefined {
  const r = spawnSync('nice', ['-n', String(level), 'sh', '-c', 'cut -d" " -f19 /proc/self/stat'], {
    encoding: 'utf8',
  });
  return r.status === 0 && Number(r.stdout.trim()) === level ? level : undefined;
}

function describeMeasurement(m: Measurement): string {
  if (m.skipped) return `skipped: ${m.skipped}`;
  if (m.error) return `error: ${m.error}`;
  const values = Object.entries(m.metrics).map(([k, v]) => `${k}=${v < 100 ? v.toFixed(3) : Math.round(v)}`);
  const cpu = m.brokerCpu !== undefined ? ` broker-cpu=${Math.round(m.brokerCpu * 100)}%` : '';
  const lg = m.loadgenCpu !== undefined ? ` loadgen-cpu=${Math.round(m.loadgenCpu * 100)}%` : '';
  return `${values.join(' ')} lost=${m.lost}${m.duplicates ? ` dup=${m.duplicates}` : ''}${cpu}${lg}`;
}

async function main(options: BenchOptions): Promise<number> {
  if (!existsSync(join(repoRoot, 'dist/src/cli/main.js'))) {
    console.error('bench: dist/src/cli/main.js is missing: run `npm run build` first (npm run bench does)');
    return 1;
  }
  const selected: Scenario[] =
    options.scenarios.length === 0 ? [...allScenarios] : allScenarios.filter((s) => options.scenarios.includes(s.name));
  const unknown = options.scenarios.filter((n) => !allScenarios.some((s) => s.name === n));
  if (unknown.length > 0) {
    console.error(
      `bench: unknown scenario ${unknown.join(', ')}; known: ${allScenarios.map((s) => s.name).join(', ')}`,
    );
    return 2;
  }
  const brokers: BrokerKind[] = ['bulwark'];
  const notes: string[] = [];
  let mosquittoVersion: string | undefined;
  let aedes: string | undefined;
  if (options.against.some((a) => a.kind === 'mosquitto')) {
    const probe = commandWorks('mosquitto', ['-h']);
    const m = /mosquitto version (\S+)/.exec(probe.output);
    if (probe.ok && m) {
      mosquittoVersion = m[1];
      brokers.push('mosquitto');
    } else notes.push('mosquitto: not installed; skipped');
  }
  if (options.against.some((a) => a.kind === 'aedes')) {
    aedes = aedesVersion();
    if (aedes === undefined) notes.push('aedes: not installed (npm ci installs it as a dev dependency); skipped');
    else brokers.push('aedes');
  }

  const cores = os.availableParallelism();
  const taskset = commandWorks('taskset', ['--version']).ok;
  const pinned = taskset && cores >= 2;
  const externalPort = options.against.find((a) => a.kind === 'external')?.port;
  let external: ExternalBroker | undefined;
  if (externalPort !== undefined) {
    const found = await inspectExternal(
      options.externalName,
      externalPort,
      options.externalPid,
      pinned ? '1' : undefined,
    );
    // Unlike a missing Mosquitto, a broker that was asked for by its port and is not there is a mistake to report.
    if (!found.ok) {
      console.error(`bench: ${found.reason}`);
      return 1;
    }
    external = found.broker;
    brokers.push('external');
    notes.push(...external.notes);
  }
  const names: Partial<Record<BrokerKind, string>> = external ? { external: external.name } : {};
  const name = (b: BrokerKind): string => names[b] ?? b;
  const described = (b: BrokerKind): string =>
    b === 'external' && external
      ? `${external.name} (127.0.0.1:${external.port}, ${external.pid === undefined ? 'process unknown' : `pid ${external.pid} ${external.command ?? ''}`.trim()})`
      : b;
  if (!pinned)
    notes.push(
      `not pinned to cores (${taskset ? `${cores} core(s)` : 'taskset not found'}): broker and load generator share the CPU`,
    );
  const fdLimit = openFileLimit();
  const nice = options.priority ? permittedNice(-10) : undefined;
  if (options.priority && nice === undefined) notes.push('priority not raised (nice -10 not permitted)');
  const workDir = mkdtempSync(join(os.tmpdir(), 'bulwark-bench-'));
  // Mosquitto started as root drops to its own user before it reads its password file.
  chmodSync(workDir, 0o755);
  const native = options.nodeLoadgen
    ? ({ ok: false, reason: '--node-loadgen' } as const)
    : buildNativeLoadgen(repoRoot, workDir);
  const loadgenKind = native.ok ? 'native (C)' : `node (${native.reason})`;
  if (!native.ok && !options.nodeLoadgen)
    notes.push(
      `connect and latency scenarios use the Node load generator: ${native.reason}; connect rates may be its ceiling, and latencies include its 1 ms timer`,
    );
  let counter = 0;
  const durations = options.quick
    ? { warmupMs: 300, durationMs: options.durationMs, drainMs: 2000 }
    : { warmupMs: 1000, durationMs: options.durationMs, drainMs: 3000 };
  if (options.cpuProfileDir) mkdirSync(options.cpuProfileDir, { recursive: true });
  if (options.brokerOutputDir) mkdirSync(options.brokerOutputDir, { recursive: true });
  if (options.latencySamplesDir) mkdirSync(options.latencySamplesDir, { recursive: true });
  const ctx: BenchContext = {
    repoRoot,
    brokers,
    workDir,
    brokerCpu: pinned ? '0' : undefined,
    loadgenCpu: pinned ? '1' : undefined,
    // A polling load generator on a shared core would take the broker's time: it polls only when pinned apart.
    latencyWait: pinned ? options.latencyWait : 'sleep',
    latencySamplesDir: options.latencySamplesDir ? resolve(options.latencySamplesDir) : undefined,
    nice,
    durations,
    quick: options.quick,
    big: options.big,
    credentials: benchCredentials(8),
    cpuProfileDir: options.cpuProfileDir ? resolve(options.cpuProfileDir) : undefined,
    nativeLoadgen: native.ok ? native.binary : undefined,
    nodeOptions: options.nodeOptions,
    brokerOutputDir: options.brokerOutputDir ? resolve(options.brokerOutputDir) : undefined,
    nextDir: (label) => join(workDir, `${String(++counter).padStart(3, '0')}-${label}`),
    nextPort: freePort,
    mosquittoPort: options.against.find((a) => a.kind === 'mosquitto')?.port,
    aedesPort: options.against.find((a) => a.kind === 'aedes')?.port,
    external,
    memo: new Map(),
    log: (line) => console.error(line),
  };
  for (const n of notes) console.error(`bench: ${n}`);
  console.error(
    `bench: ${selected.length} scenario(s) × ${brokers.map(described).join(', ')} × ${options.rounds} round(s), ${durations.durationMs / 1000} s windows; ` +
      `${pinned ? 'broker on core 0, load generator on core 1' : 'unpinned'}${nice !== undefined ? `, nice ${nice}` : ''}; open-file limit ${fdLimit?.soft ?? '?'}/${fdLimit?.hard ?? '?'}; connect and latency load generator ${loadgenKind}`,
  );

  const loadBefore = loadAverage();
  if (loadBefore !== undefined && loadBefore > cores * 0.5)
    console.error(
      `bench: load average ${loadBefore} on ${cores} cores: other processes compete for the CPU, numbers will be low and noisy`,
    );
  const started = new Date();
  const records: RoundRecord[] = [];
  try {
    for (let round = 1; round <= options.rounds; round++) {
      for (const scenario of selected) {
        for (const broker of brokerOrder(brokers, round)) {
          if (!scenario.brokers.includes(broker)) continue;
          let measurement: Measurement;
          try {
            measurement = await scenario.run(broker, ctx);
          } catch (error) {
            measurement = { metrics: {}, lost: 0, duplicates: 0, notes: [], error: (error as Error).message };
          }
          records.push({ round, scenario: scenario.name, broker, measurement });
          console.error(
            `[round ${round}/${options.rounds}] ${scenario.name} ${name(broker)}: ${describeMeasurement(measurement)}`,
          );
        }
      }
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }

  const summaries = summarize(selected, brokers, records, names);
  console.log(renderTable(summaries, brokers, selected, names));
  const loadAfter = loadAverage();
  notes.push(`load average ${loadBefore ?? '?'} before, ${loadAfter ?? '?'} after (${cores} cores)`);
  for (const n of notes) console.log(`note: ${n}`);

  const git = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' });
  const out = options.out ?? join(repoRoot, 'bench/results', `${started.toISOString().replace(/[:.]/g, '-')}.json`);
  mkdirSync(dirname(out), { recursive: true });
  const report = {
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    commit: git.status === 0 ? git.stdout.trim() : undefined,
    machine: {
      cores,
      cpu: os.cpus()[0]?.model,
      memoryBytes: os.totalmem(),
      kernel: os.release(),
      node: process.version,
      mosquitto: mosquittoVersion,
      aedes,
      external: external && {
        name: external.name,
        port: external.port,
        pid: external.pid,
        command: external.command,
        pidFrom: external.pidFrom,
      },
      openFileLimit: fdLimit,
      loadgen: loadgenKind,
      loadAverage: { before: loadBefore, after: loadAfter },
      pinned: pinned ? { broker: ctx.brokerCpu, loadgen: ctx.loadgenCpu } : undefined,
      nice,
    },
    options: { ...options, durations },
    notes,
    summaries,
    records,
  };
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
  console.log(`results: ${out}`);
  return 0;
}

let options: BenchOptions;
try {
  options = parseBenchOptions(process.argv.slice(2));
} catch (error) {
  const message = (error as Error).message;
  console.error(message === USAGE ? message : `bench: ${message}\n${USAGE}`);
  process.exit(message === USAGE ? 0 : 2);
}
main(options).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`bench: ${(error as Error).stack ?? String(error)}`);
    process.exit(1);
  },
);
