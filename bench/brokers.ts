import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';

/** `external`: a broker the bench did not start and never stops (`--against external:PORT`). */
export type BrokerKind = 'bulwark' | 'mosquitto' | 'aedes' | 'external';

export interface BrokerHandle {
  kind: BrokerKind;
  /** Undefined for an external broker whose process is not known: no CPU or memory readings then. */
  pid: number | undefined;
  port: number;
  dir: string;
  stop(): Promise<void>;
  /** The last lines the broker wrote, for failure messages. */
  output(): string;
}

export type StartOutcome = { ok: true; broker: BrokerHandle } | { ok: false; reason: string };

export interface Placement {
  /** `taskset -c` core list for the broker, or undefined to leave scheduling to the kernel. */
  cpu: string | undefined;
  /** Scheduling priority (`nice -n`), so that other load on a shared machine distorts the run less. */
  nice?: number | undefined;
}

export interface BulwarkStart {
  repoRoot: string;
  dir: string;
  port: number;
  /** Merged over the bench's base configuration. */
  config: Record<string, unknown>;
  placement: Placement;
  /** Write a V8 CPU profile of the broker into this directory (`node --cpu-prof`). */
  cpuProfileDir?: string;
  /** Extra `node` options (`--trace-gc`, heap sizing flags). */
  nodeOptions?: string[];
  /** Append the broker's stdout and stderr to this file. */
  outputFile?: string;
  /** Whether anonymous clients are admitted (default true: local bench clients carry no credentials). */
  anonymous?: boolean;
  /** Where that flag lives: the chain (`authentication.anonymous`) or, in older builds, the listener. */
  anonymousStyle?: AnonymousStyle;
}

export type AnonymousStyle = 'chain' | 'listener';

/** The configuration every Bulwark run starts from: one loopback listener, anonymous clients, quiet logs. */
export function bulwarkBaseConfig(
  dir: string,
  port: number,
  anonymous = true,
  style: AnonymousStyle = 'chain',
): Record<string, unknown> {
  const listener = { name: 'bench', transport: 'tcp', host: '127.0.0.1', port };
  return {
    data_dir: join(dir, 'data'),
    log_level: 'warn',
    listeners: [style === 'listener' ? { ...listener, anonymous } : listener],
    ...(style === 'chain' ? { authentication: { anonymous } } : {}),
    limits: { receive_maximum: 64, max_inflight: 64, max_queued_messages: 10_000 },
    // The reconnect storm is flapping by design (the same client ids and usernames, hundreds of times a second),
    // and thousands of connects come from one loopback address: detection would ban them, and Mosquitto has none.
    // The bench measures authentication and connection cost, so detection is off; the block list still applies.
    guard: { exempt_networks: ['127.0.0.0/8'], flapping: { enabled: false } },
  };
}

/**
 * The `node` options the broker ships with: the shebang of `dist/src/cli/main.js` and `npm start` use the same (a
 * test keeps the three equal), so the bench measures the broker as operators run it.
 */
export const BULWARK_NODE_OPTIONS: readonly string[] = ['--max-semi-space-size=2', '--no-memory-reducer'];

export async function startBulwark(o: BulwarkStart): Promise<StartOutcome> {
  mkdirSync(o.dir, { recursive: true });
  const base = bulwarkBaseConfig(o.dir, o.port, o.anonymous ?? true, o.anonymousStyle ?? 'chain');
  const config = deepMerge(base, o.config);
  const file = join(o.dir, 'bulwark.yaml');
  writeFileSync(file, stringify(config));
  const node = [
    process.execPath,
    ...BULWARK_NODE_OPTIONS,
    ...(o.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', o.cpuProfileDir] : []),
    ...(o.nodeOptions ?? []),
    join(o.repoRoot, 'dist/src/cli/main.js'),
    'start',
    '-c',
    file,
  ];
  return launch('bulwark', node, o.port, o.dir, o.placement, o.outputFile);
}

export interface MosquittoStart {
  dir: string;
  port: number;
  placement: Placement;
  passwordFile?: string;
}

/**
 * Debian's Mosquitto 2.0.11. `max_inflight_messages 0` because 2.0.11 with the default window acknowledges and
 * then drops some queued QoS 1/2 messages (fixed upstream in 2.0.13); persistence off like Bulwark's bench runs.
 */
export async function startMosquitto(o: MosquittoStart): Promise<StartOutcome> {
  mkdirSync(o.dir, { recursive: true });
  const lines = [
    `listener ${o.port} 127.0.0.1`,
    o.passwordFile ? `allow_anonymous false` : `allow_anonymous true`,
    ...(o.passwordFile ? [`password_file ${o.passwordFile}`] : []),
    'persistence false',
    'max_inflight_messages 0',
    'max_queued_messages 10000',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'connection_messages false',
    'set_tcp_nodelay true',
  ];
  const file = join(o.dir, 'mosquitto.conf');
  writeFileSync(file, lines.join('\n') + '\n');
  return launch('mosquitto', ['mosquitto', '-c', file], o.port, o.dir, o.placement);
}

export interface AedesStart {
  repoRoot: string;
  dir: string;
  port: number;
  placement: Placement;
  /** A Mosquitto password file (`$7$`, PBKDF2-SHA512): clients must log in; otherwise anonymous clients. */
  passwordFile?: string;
}

/**
 * aedes (a dev dependency, bench only) in its own `node` process, `dist/bench/aedes-broker.js`: plain TCP on
 * 127.0.0.1 with TCP_NODELAY, in-memory persistence, anonymous clients unless a password file is given. Plain
 * `node` without Bulwark's heap options: aedes is measured as it ships.
 */
export async function startAedes(o: AedesStart): Promise<StartOutcome> {
  mkdirSync(o.dir, { recursive: true });
  const argv = [
    process.execPath,
    join(o.repoRoot, 'dist/bench/aedes-broker.js'),
    String(o.port),
    ...(o.passwordFile ? ['--password-file', o.passwordFile] : []),
  ];
  return launch('aedes', argv, o.port, o.dir, o.placement);
}

/** The installed aedes version, or undefined when it is not installed (`npm ci` installs it as a dev dependency). */
export function aedesVersion(): string | undefined {
  try {
    // The package exports only its entry point, so its package.json is found next to it.
    const entry = createRequire(import.meta.url).resolve('aedes');
    const pkg = JSON.parse(readFileSync(join(dirname(entry), 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return undefined;
  }
}

async function launch(
  kind: BrokerKind,
  argv: string[],
  port: number,
  dir: string,
  placement: Placement,
  outputFile?: string,
): Promise<StartOutcome> {
  const pinned = withPlacement(argv, placement);
  // Raise the soft descriptor limit to the hard one (idle-connection scenarios); `exec` keeps the pid.
  const child = spawn('sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'sh', ...pinned], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString()).slice(-4000);
    if (outputFile) appendFileSync(outputFile, chunk);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let hasExited = false;
  void exited.then(() => (hasExited = true));

  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (hasExited) return { ok: false, reason: `${kind} exited at start: ${lastLine(tail)}` };
    if (await canConnect(port)) {
      const pid = child.pid as number;
      return {
        ok: true,
        broker: { kind, pid, port, dir, stop: () => stopChild(child, exited), output: () => tail },
      };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await stopChild(child, exited);
  return { ok: false, reason: `${kind} did not listen on ${port} within 15 s: ${lastLine(tail)}` };
}

/** `nice -n N taskset -c CPU argv...`, each part only when asked for. */
export function withPlacement(argv: string[], placement: Placement): string[] {
  const pinned = placement.cpu !== undefined ? ['taskset', '-c', placement.cpu, ...argv] : argv;
  return placement.nice !== undefined ? ['nice', '-n', String(placement.nice), ...pinned] : pinned;
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return lines.slice(-3).join(' | ') || '(no output)';
}

/** Whether something accepts a TCP connection on 127.0.0.1:`port`. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000));
  if ((await Promise.race([exited, timeout])) === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Objects merge key by key; arrays and scalars from `over` replace those of `base`. */
export function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isRecord(b) && isRecord(v) ? deepMerge(b, v) : v;
  }
  return out;
}
