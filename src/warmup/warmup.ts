import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configSchema, MAX_WARMUP_CONNECTS, type BrokerConfig } from '../config/schema.js';
import { compactHeap } from '../compact-heap.js';
import { discardingLogger } from '../log.js';
import { BulwarkServer } from '../server.js';
import { connectInRounds } from './loopback-clients.js';

/** Clients a round keeps connected at once: the client and the server side each take a file descriptor. */
const HELD_PER_ROUND = 500;
/** A warm-up still running then stops: it only ever makes the first storm faster, and must not delay a start long. */
const DEADLINE_MS = 10_000;
const POLICY_FILE = 'warmup.policy.yaml';
const POLICY = `version: 1
rules:
  - name: warmup-connect
    allow: connect
    subjects:
      anonymous: true
      addresses: [127.0.0.0/8]
    why: The start-up warm-up's own clients, on a broker of its own that is gone before the listeners open.
`;

export interface WarmupResult {
  /** Clients whose CONNACK accepted them. */
  accepted: number;
  /** Clients tried: fewer than asked when the deadline passed. */
  attempted: number;
  ms: number;
  /** Why the warm-up stopped early, when it did. */
  error?: string;
}

/**
 * Connects `connects` MQTT clients over loopback TCP to throwaway brokers built from the same code, before the real
 * broker opens its listeners: V8 compiles a function only after it has run many times, and without this the
 * reconnect storm after every restart pays for compiling the connect path (docs/performance.md, "Start-up
 * warm-up"). The throwaway brokers share no state with the real one: their own directory (deleted afterwards) for
 * the store, audit log and block list, no audit mirror, an anonymous chain and a one-rule policy instead of the
 * configured backends, no $SYS. The real audit log, guard, sessions and metrics never see a warm-up client.
 *
 * Two brokers take turns, because code V8 compiles while it sees only one instance may treat that instance's
 * objects as constants, and is thrown away when the real broker's objects arrive. Rounds hold their clients, as a
 * reconnect wave does; that grows the heap, and one compacting collection at the end gives the memory back, so the
 * idle broker's memory, and what each later connection adds to it, are what they would be without a warm-up. It
 * costs some of the gain: V8 discards compiled code whose object shapes have no live object left at a full
 * collection (connections, packets, connect steps), and the first connects recompile it, from type feedback that
 * is already complete.
 */
export async function warmUpConnectPath(config: BrokerConfig, connects: number): Promise<WarmupResult> {
  const started = performance.now();
  const result: WarmupResult = { accepted: 0, attempted: 0, ms: 0 };
  if (connects <= 0) return result;
  let dir: string | undefined;
  // A process that exits mid-warm-up (a stop signal during the start) still leaves no directory behind.
  const removeDir = (): void => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', removeDir);
  const servers: BulwarkServer[] = [];
  // Whatever fails here (no writable temporary directory, a port, a file) costs the warm-up, never the start.
  try {
    dir = mkdtempSync(join(tmpdir(), 'bulwark-warmup-'));
    writeFileSync(join(dir, POLICY_FILE), POLICY);
    for (const name of ['a', 'b']) {
      mkdirSync(join(dir, name));
      const server = new BulwarkServer({
        config: warmupConfig(config, join(dir, name)),
        log: discardingLogger(config.log_level),
        baseDir: dir,
      });
      servers.push(server);
      await server.start();
    }
    const ports = servers.map((server) => server.listeners[0]!.address!.port);
    Object.assign(result, await connectInRounds(ports, connects, HELD_PER_ROUND, started + DEADLINE_MS));
  } catch (error) {
    result.error = (error as Error).message;
  } finally {
    for (const server of servers) await server.stop().catch(() => undefined);
    process.off('exit', removeDir);
    try {
      removeDir();
    } catch (error) {
      result.error ??= `temporary directory ${dir} not removed: ${(error as Error).message}`;
    }
  }
  if (result.attempted > 0) compactHeap();
  result.ms = Math.round(performance.now() - started);
  return result;
}

/**
 * The running configuration where it shapes the connect path (limits, guard, audit, persistence, log level), with
 * everything that would reach outside the throwaway broker replaced.
 */
function warmupConfig(config: BrokerConfig, dir: string): BrokerConfig {
  const tcp = config.listeners.find((l) => l.transport === 'tcp' && !l.proxy_protocol?.enabled);
  const own = configSchema.parse({
    data_dir: dir,
    log_level: config.log_level,
    listeners: [
      {
        name: 'warmup',
        transport: 'tcp',
        host: '127.0.0.1',
        port: 0,
        ...(tcp?.socket_layer ? { socket_layer: tcp.socket_layer } : {}),
      },
    ],
    authentication: { anonymous: true },
    authorization: { policy_files: [POLICY_FILE], watch: false },
    sys_interval_seconds: 0,
  });
  const { directory: _directory, signing_key_file: _key, mirror: _mirror, ...audit } = config.audit;
  const flapping = config.guard.flapping;
  return {
    ...own,
    limits: config.limits,
    persistence: config.persistence,
    audit,
    guard: {
      ...config.guard,
      blocklist: { ...config.guard.blocklist, file: own.guard.blocklist.file },
      // Every warm-up client comes from 127.0.0.1: counted as in production, never enough to ban the address.
      flapping: {
        ...flapping,
        address: { ...flapping.address, max_attempts: MAX_WARMUP_CONNECTS },
        network: { ...flapping.network, max_attempts: MAX_WARMUP_CONNECTS },
      },
    },
  };
}
