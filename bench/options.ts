import { parseArgs } from 'node:util';
import type { BrokerKind } from './brokers.js';
import type { LatencyWait } from './loadgen/jobs.js';

export interface BenchOptions {
  /**
   * Brokers run beside Bulwark, each at most once: Mosquitto and aedes on the loopback port asked for (else a free
   * one per start); `external` is a broker someone else started, already listening on 127.0.0.1 at `port`.
   */
  against: { kind: Exclude<BrokerKind, 'bulwark'>; port?: number }[];
  /** What the external broker is called in the table and the JSON (`--external-name`, default `external`). */
  externalName: string;
  /** The external broker's process, for its CPU and memory (`--external-pid`); else found by its listening port. */
  externalPid: number | undefined;
  quick: boolean;
  big: boolean;
  scenarios: string[];
  rounds: number;
  durationMs: number;
  cpuProfileDir: string | undefined;
  /** Extra `node` options for every Bulwark process (e.g. `--trace-gc`, `--max-semi-space-size=4`). */
  nodeOptions: string[];
  /** Directory for each Bulwark process's stdout and stderr (otherwise only the last lines are kept, for errors). */
  brokerOutputDir: string | undefined;
  /** Run the connect and latency scenarios with the Node load generator instead of the C one. */
  nodeLoadgen: boolean;
  /** How the latency scenario's C load generator waits (it polls only when pinned to a core of its own). */
  latencyWait: LatencyWait;
  /** Where each latency run's samples are kept (the C load generator only), when asked. */
  latencySamplesDir: string | undefined;
  /** Raise the priority of brokers and load generator (nice -10) where permitted; --no-priority turns it off. */
  priority: boolean;
  out: string | undefined;
}

export const USAGE = `usage: node dist/bench/run.js [options]
  --against mosquitto[:PORT]   also run Mosquitto (Debian's package) on a loopback port (repeatable)
  --against aedes[:PORT]       also run aedes (a dev dependency) on a loopback port (repeatable)
  --against external:PORT      also measure a broker already running on 127.0.0.1:PORT (EMQX, HiveMQ, ...)
  --external-name NAME         what to call that broker in the table and the JSON (default external)
  --external-pid PID           its process, for CPU and memory (default: the process listening on PORT)
  --scenario NAME              run only this scenario (repeatable)
  --rounds N                   interleaved rounds, medians reported (default 3; --quick: 1)
  --duration S                 measurement window per run in seconds (default 5; --quick: 1)
  --quick                      short runs and 500 idle connections: a smoke test in seconds
  --big                        50,000 idle connections instead of 10,000
  --node-loadgen               connect and latency scenarios use the Node load generator, not the C one built per run
  --latency-wait poll|sleep    how the C load generator waits in the latency scenario (default poll, when pinned)
  --latency-samples DIR        keep every latency of each latency run in DIR (one file per run, C load generator)
  --no-priority                do not raise the priority (nice -10) of brokers and load generator
  --cpu-prof DIR               write a V8 CPU profile of every Bulwark process into DIR
  --node-option FLAG           pass FLAG to every Bulwark process's node (repeatable), e.g. --trace-gc
  --broker-output DIR          keep every Bulwark process's stdout and stderr in DIR (one file per start)
  --out FILE                   JSON results file (default bench/results/<timestamp>.json)`;

/** Parses argv; throws an Error with a one-line message on bad input. */
export function parseBenchOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      against: { type: 'string', multiple: true },
      'external-name': { type: 'string' },
      'external-pid': { type: 'string' },
      scenario: { type: 'string', multiple: true },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      quick: { type: 'boolean', default: false },
      big: { type: 'boolean', default: false },
      'cpu-prof': { type: 'string' },
      'node-option': { type: 'string', multiple: true },
      'broker-output': { type: 'string' },
      'no-priority': { type: 'boolean', default: false },
      'node-loadgen': { type: 'boolean', default: false },
      'latency-wait': { type: 'string' },
      'latency-samples': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) throw new Error(USAGE);
  const against: BenchOptions['against'] = [];
  for (const a of values.against ?? []) {
    const colon = a.indexOf(':');
    const name = colon < 0 ? a : a.slice(0, colon);
    const portText = colon < 0 ? undefined : a.slice(colon + 1);
    if (name !== 'mosquitto' && name !== 'aedes' && name !== 'external')
      throw new Error(`--against ${a}: unknown broker (mosquitto, aedes, or external:PORT for one already running)`);
    const port = portText === undefined ? undefined : Number(portText);
    if (port !== undefined && (!/^\d+$/.test(portText ?? '') || port < 1 || port > 65535))
      throw new Error(`--against ${a}: not a port number`);
    // The bench does not start an external broker, so it cannot pick a port for it.
    if (name === 'external' && port === undefined)
      throw new Error(`--against ${a}: the port the running broker listens on is needed (external:PORT)`);
    const earlier = against.find((x) => x.kind === name);
    if (earlier) {
      // Repeating a broker adds nothing; repeating it with a different port is a contradiction.
      if (port !== undefined && earlier.port !== undefined && port !== earlier.port)
        throw new Error(`--against ${a}: ${name} already given port ${earlier.port}`);
      if (port !== undefined) earlier.port = port;
      continue;
    }
    against.push({ kind: name, ...(port !== undefined ? { port } : {}) });
  }
  const ports = against.flatMap((x) => (x.port !== undefined ? [x.port] : []));
  if (new Set(ports).size < ports.length) throw new Error('--against: two brokers cannot share a port');
  const external = against.some((x) => x.kind === 'external');
  const externalName = values['external-name'] ?? 'external';
  if (values['external-name'] !== undefined && !external)
    throw new Error('--external-name: names the broker of --against external:PORT, which was not given');
  // The name becomes a table column and a JSON value beside the built-in brokers', so it may not pass for one.
  if (
    !/^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/.test(externalName) ||
    ['bulwark', 'mosquitto', 'aedes'].includes(externalName)
  )
    throw new Error(
      `--external-name ${externalName}: 1 to 32 letters, digits, '.', '_' or '-', and not bulwark, mosquitto or aedes`,
    );
  const pidText = values['external-pid'];
  if (pidText !== undefined && !external)
    throw new Error('--external-pid: names the process of --against external:PORT, which was not given');
  if (pidText !== undefined && (!/^\d+$/.test(pidText) || Number(pidText) < 1))
    throw new Error(`--external-pid ${pidText}: not a process id`);
  const quick = values.quick ?? false;
  const rounds = values.rounds === undefined ? (quick ? 1 : 3) : Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100) throw new Error(`--rounds ${values.rounds}: 1 to 100`);
  const seconds = values.duration === undefined ? (quick ? 1 : 5) : Number(values.duration);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 600)
    throw new Error(`--duration ${values.duration}: seconds, 0 to 600`);
  const latencyWait = values['latency-wait'] ?? 'poll';
  if (latencyWait !== 'poll' && latencyWait !== 'sleep')
    throw new Error(`--latency-wait ${latencyWait}: poll or sleep`);
  return {
    against,
    externalName,
    externalPid: pidText === undefined ? undefined : Number(pidText),
    quick,
    big: values.big ?? false,
    scenarios: values.scenario ?? [],
    rounds,
    durationMs: Math.round(seconds * 1000),
    cpuProfileDir: values['cpu-prof'],
    nodeOptions: values['node-option'] ?? [],
    brokerOutputDir: values['broker-output'],
    priority: !(values['no-priority'] ?? false),
    nodeLoadgen: values['node-loadgen'] ?? false,
    latencyWait,
    latencySamplesDir: values['latency-samples'],
    out: values.out,
  };
}
