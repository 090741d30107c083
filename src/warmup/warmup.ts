import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configSchema, MAX_WARMUP_CONNECTS, type BrokerConfig } from '../config/schema.js';
import { compactHeap } from '../compact-heap.js';
import { discardingLogger } from '../log.js';
import { BulwarkServer } from '../server.js';
import type { Packet } from 'mqtt-packet';
import { parseFrames, type PacketSink } from '../connection/codec.js';
import { connectInRounds, connectPacket } from './loopback-clients.js';

/** Clients a round keeps connected at once: the client and the server side each take a file descriptor. */
const HELD_PER_ROUND = 500;
/** A warm-up still running then stops: it only ever makes the first storm faster, and must not delay a start long. */
const DEADLINE_MS = 10_000;
const POLICY_FILE = 'warmup.policy.yaml';
/**
 * Only the last rule admits the warm-up's clients, and only by its second address: a running policy seldom decides a
 * CONNECT with the first rule and the first entry it looks at, and code V8 compiled from a warm-up that never moved
 * past them was thrown away and compiled again in the first storm (docs/performance.md, "Session 26").
 */
const POLICY = `version: 1
rules:
  - name: warmup-refused-user
    deny: connect
    subjects:
      users: [warmup-refused]
    why: Never matches (the warm-up's clients are anonymous); a deny list to walk first, as most policies have.
  - name: warmup-operators
    allow: connect
    subjects:
      groups: [warmup-operators]
    why: Never matches either; the allow list's first rule is not the one that decides.
  - name: warmup-connect
    allow: connect
    subjects:
      anonymous: true
      addresses: ['::1/128', 127.0.0.0/8]
    why: The start-up warm-up's own clients, on a broker of its own that is gone before the listeners open.
  - name: warmup-topics
    allow: [publish, subscribe]
    subjects:
      users: [warmup-nobody]
    topics: ['warmup/#']
    why: >-
      Nobody can be this user here (the chain admits anonymous clients only), so a warm-up client may only connect;
      the cases walk the topic checks with it, as a running policy's cases do at every start.
`;

/**
 * Every start runs the policy's cases, and the running broker's walk the evaluator's topic branch, which the
 * warm-up's connects never reach: without cases of its own, the warm-up left code that the running broker's cases
 * deoptimized just before the listeners opened, and the first storm compiled it again.
 */
const CASES_FILE = 'warmup.cases.yaml';
const CASES = `version: 1
cases:
  - name: a warm-up client connects
    identity: { address: 127.0.0.1 }
    connect: true
    expect: allow
    rule: warmup-connect
  - name: the refused user is refused
    identity: { user: warmup-refused, address: 127.0.0.1 }
    connect: true
    expect: deny
    rule: warmup-refused-user
  - name: a remote client is refused
    identity: { address: 192.0.2.10 }
    connect: true
    expect: deny
    rule: default-deny
  - name: a publish under warmup/
    identity: { user: warmup-nobody, address: 127.0.0.1 }
    publish: warmup/a/b
    qos: 1
    expect: allow
    rule: warmup-topics
  - name: a subscription under warmup/
    identity: { user: warmup-nobody, address: '::1' }
    subscribe: 'warmup/#'
    expect: allow
    rule: warmup-topics
  - name: a warm-up client may not publish
    identity: { address: 127.0.0.1 }
    publish: warmup/a/b
    expect: deny
    rule: default-deny
`;

/**
 * One decoded CONNECT of each protocol version the warm-up's clients send, kept for the life of the process. V8
 * throws away code compiled for an object shape once a full collection finds no live object of that shape, and
 * mqtt-packet builds an MQTT 5 CONNECT field by field, into shapes that no object had left after the warm-up's
 * compacting collection: the decoder, the CONNECT checks and the session's opening were compiled again during the
 * first storm (docs/performance.md, "Session 25"). No credentials: the warm-up's clients send none.
 */
const connectShapes: Packet[] = [];

/** The CONNECTs kept for their shapes (see `connectShapes`): empty until a warm-up has run. */
export function keptConnectShapes(): readonly Packet[] {
  return connectShapes;
}

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
 * the store, audit log and block list, no audit mirror, an anonymous chain and a small policy of its own (`POLICY`)
 * instead of the configured backends, no $SYS. The real audit log, guard, sessions and metrics never see a warm-up
 * client.
 *
 * Two brokers take turns, because code V8 compiles while it sees only one instance may treat that instance's
 * objects as constants, and is thrown away when the real broker's objects arrive. Halfway, one of them stops and a
 * third takes its place: a broker's stop changes what V8 had assumed about its objects (a field that held only one
 * kind of value holds another), and V8 throws away the code that relied on it, the connect path's included. Stopped
 * at the end only, that happened after the last connect, and the first storm compiled the code again; stopped
 * halfway, the second half compiles it with those assumptions already widened, and the stops at the end change
 * nothing more. Rounds hold their clients, as a reconnect wave does; that grows the heap, and one compacting
 * collection at the end gives the memory back, so the idle broker's memory, and what each later connection adds to
 * it, are what they would be without a warm-up. V8 also discards compiled code whose object shapes have no live
 * object left at a full collection: the connect path builds whole object literals, whose shapes V8 keeps, and
 * `connectShapes` keeps the shapes mqtt-packet builds field by field.
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
    // Before the clients, not after: the decoder meets this sink's shape while the warm-up still trains it. Decoded
    // after the last client, it deoptimized the decoder ("wrong map") and the first storm compiled it again.
    if (connectShapes.length === 0) keepConnectShapes();
    const root = mkdtempSync(join(tmpdir(), 'bulwark-warmup-'));
    dir = root;
    writeFileSync(join(root, POLICY_FILE), POLICY);
    writeFileSync(join(root, CASES_FILE), CASES);
    const startServer = async (name: string): Promise<BulwarkServer> => {
      mkdirSync(join(root, name));
      const server = new BulwarkServer({
        config: warmupConfig(config, join(root, name)),
        log: discardingLogger(config.log_level),
        baseDir: root,
      });
      servers.push(server);
      await server.start();
      return server;
    };
    let pair = [await startServer('a'), await startServer('b')];
    const firstHalf = Math.ceil(connects / 2);
    for (const [half, share] of [firstHalf, connects - firstHalf].entries()) {
      if (share === 0 || performance.now() >= started + DEADLINE_MS) break;
      if (half === 1) {
        await pair[0]!.stop();
        pair = [pair[1]!, await startServer('c')];
      }
      const ports = pair.map((server) => server.listeners[0]!.address!.port);
      const rounds = await connectInRounds(ports, share, HELD_PER_ROUND, started + DEADLINE_MS);
      result.attempted += rounds.attempted;
      result.accepted += rounds.accepted;
    }
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

/** Decodes the warm-up clients' CONNECTs as a connection does (the first packet always with the 3.1.1 parser). */
function keepConnectShapes(): void {
  const sink: PacketSink = {
    onPacket: (packet) => connectShapes.push(packet),
    onParseError: () => undefined,
    onProtocolError: () => undefined,
  };
  for (const version of [4, 5] as const) parseFrames(4, connectPacket(0, version), sink);
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
