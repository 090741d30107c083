import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { configSchema, type BrokerConfig } from '../../../src/config/schema.js';
import type { Guard } from '../../../src/guard/guard.js';
import { BulwarkServer } from '../../../src/server.js';
import { byAction, field, readAuditRecords, type AuditRecord } from '../../helpers/audit-e2e.js';
import { runCli } from '../../helpers/cli.js';
import { mintTestPki, type TestPki } from '../../helpers/certs.js';
import { jsonLogSink } from '../../helpers/json-log-sink.js';

const BURST = 5;
const WINDOW_MS = 60_000;
const T0 = Date.parse('2026-11-25T10:00:00.000Z');

interface FloodBroker {
  server: BulwarkServer;
  config: BrokerConfig;
  port: number;
  dataDir: string;
  clock: { now: number };
  logs: Record<string, unknown>[];
}

const dirs: string[] = [];
let pki: TestPki;

beforeAll(async () => {
  pki = await mintTestPki();
});
afterAll(() => pki?.cleanup());
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A real broker writing a real audit log, its refusal limiter on a clock the test moves. */
async function startFloodBroker(listener: Record<string, unknown>): Promise<FloodBroker> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-refusal-flood-'));
  dirs.push(dataDir);
  const { sink, logs } = jsonLogSink();
  const config = configSchema.parse({
    data_dir: dataDir,
    sys_interval_seconds: 0,
    persistence: { durability: 'none' },
    authentication: { anonymous: true },
    // Loopback is exempt from flapping: the refusals under test are the block list's, not a flapping ban's.
    guard: { exempt_networks: ['127.0.0.0/8', '::1/128'] },
    audit: { checkpoint_interval: 0, refusals: { burst: BURST, window: WINDOW_MS } },
    listeners: [{ name: 'flood', host: '127.0.0.1', port: 0, ...listener }],
  });
  const clock = { now: T0 };
  const server = new BulwarkServer({
    config,
    log: pino({ level: 'info' }, sink),
    authorizer: { check: () => ({ allowed: true, reason: 'test allows everything' }), onChange() {}, invalidate() {} },
    refusalClock: () => clock.now,
  });
  await server.start();
  return { server, config, port: server.listeners[0]!.address!.port, dataDir, clock, logs };
}

/** Runs `attempt` `count` times, `parallel` at a time. */
async function repeat(count: number, parallel: number, attempt: () => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      await attempt();
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

/** Resolves when the broker has closed the socket (it records the refusal before, or as, it closes). */
function closed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    socket.on('error', () => undefined);
    socket.once('close', () => resolve());
  });
}

/** A TLS handshake with no client certificate on a listener that requires one: refused after the handshake. */
function handshakeWithoutCertificate(port: number): Promise<void> {
  const socket = tls.connect({ port, host: '127.0.0.1', ca: readFileSync(pki.caFile), servername: 'localhost' });
  return closed(socket);
}

/** Bytes that are no TLS ClientHello: the handshake fails at its first record. */
function garbageHandshake(port: number): Promise<void> {
  const socket = net.connect(port, '127.0.0.1', () => socket.write(Buffer.from('GET / HTTP/1.1\r\n\r\n')));
  return closed(socket);
}

async function stopAndRead(broker: FloodBroker): Promise<AuditRecord[]> {
  await broker.server.stop();
  return readAuditRecords(join(broker.dataDir, 'audit'));
}

/** Connects once with mqtt.js: the CONNACK reason code of a refusal, 0 when accepted (then disconnected). */
async function connackCode(port: number, options: mqtt.IClientOptions): Promise<number> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { ...options, reconnectPeriod: 0 });
  const code = await new Promise<number>((resolve) => {
    client.once('error', (e) => resolve((e as Error & { code?: number }).code ?? -1));
    client.once('connect', () => resolve(0));
  });
  client.end(true);
  return code;
}

function summariesOf(records: AuditRecord[], action: string): AuditRecord[] {
  return byAction(records, 'audit.refusals_suppressed').filter((r) => field(r, 'audit.action') === action);
}

function suppressedTotal(summaries: AuditRecord[]): number {
  return summaries.reduce((n, r) => n + (field(r, 'audit.suppressed') as number), 0);
}

describe('a flood of refused connections', () => {
  it('hundreds of failed TLS handshakes from one address write burst records and one exact summary per window', async () => {
    const broker = await startFloodBroker({
      transport: 'tls',
      tls: {
        cert_file: pki.server.certFile,
        key_file: pki.server.keyFile,
        ca_file: pki.caFile,
        require_certificate: true,
      },
    });
    // Window 1: 150 refused certificates (refused by the broker after the handshake) and 150 broken handshakes.
    await repeat(150, 10, () => handshakeWithoutCertificate(broker.port));
    await repeat(150, 10, () => garbageHandshake(broker.port));
    // Window 2 starts with the next refusal after the first one ended: its summary is written then.
    broker.clock.now = T0 + WINDOW_MS;
    await repeat(BURST + 7, 4, () => handshakeWithoutCertificate(broker.port));
    const logLines = broker.logs.filter(
      (l) => l['msg'] === 'TLS client refused' || l['msg'] === 'TLS handshake failed',
    );
    const records = await stopAndRead(broker);

    const refused = byAction(records, 'tls.handshake_refused');
    const missing = refused.filter((r) => field(r, 'event.code') === 'missing');
    const broken = refused.filter((r) => field(r, 'event.code') !== 'missing');
    // Per key and window, at most the burst is recorded one by one.
    expect(missing).toHaveLength(2 * BURST);
    expect(broken).toHaveLength(BURST);
    for (const r of refused) {
      expect(field(r, 'client.ip')).toBe('127.0.0.1');
      expect(field(r, 'mqtt.listener')).toBe('flood');
    }
    const summaries = summariesOf(records, 'tls.handshake_refused');
    // Window 1: two keys (certificate missing, broken handshake), each one summary; window 2: one at shutdown.
    expect(
      summaries.map((r) => [field(r, 'event.code'), field(r, 'audit.reason'), field(r, 'audit.suppressed')]),
    ).toEqual(
      expect.arrayContaining([
        ['missing', 'window_end', 150 - BURST],
        [field(broken[0]!, 'event.code'), expect.any(String), 150 - BURST],
        ['missing', 'shutdown', 7],
      ]),
    );
    expect(summaries).toHaveLength(3);
    for (const s of summaries) {
      expect(field(s, 'audit.recorded')).toBe(BURST);
      expect(field(s, 'client.ip')).toBe('127.0.0.1');
      expect(field(s, 'mqtt.listener')).toBe('flood');
      expect(field(s, 'actor')).toBe('broker');
    }
    const first = summaries.find((s) => field(s, 'audit.reason') === 'window_end')!;
    expect(field(first, 'audit.window_start')).toBe('2026-11-25T10:00:00.000Z');
    expect(field(first, 'audit.window_end')).toBe('2026-11-25T10:01:00.000Z');
    // Counts add up: every refusal is a record of its own or counted in exactly one summary.
    expect(refused.length + suppressedTotal(summaries)).toBe(150 + 150 + BURST + 7);
    // The log lines are bounded the same way: one per refusal recorded, none for the ones counted.
    expect(logLines).toHaveLength(refused.length);
    expect(
      broker.logs.filter(
        (l) => l['msg'] === 'repeated refusals: the rest of the interval was counted, not recorded one by one',
      ),
    ).toHaveLength(3);
    // The summaries are written before the shutdown checkpoint, which signs them.
    const checkpoint = byAction(records, 'audit.checkpoint').at(-1)!;
    expect(field(checkpoint, 'audit.reason')).toBe('shutdown');
    for (const s of summaries) expect(s['seq'] as number).toBeLessThan(checkpoint['seq'] as number);

    // The log with its summaries still verifies, signed by the broker's key.
    const verified = await runCli([
      'audit',
      'verify',
      join(broker.dataDir, 'audit'),
      '--public-key',
      join(broker.dataDir, 'audit-signing.pub'),
    ]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/^OK /);
  });

  it('a banned client id connecting again and again with mqtt.js writes burst records and one exact summary', async () => {
    const broker = await startFloodBroker({ transport: 'tcp' });
    const guard = broker.server.broker.guard as Guard;
    guard.ban({ kind: 'client_id', value: 'stolen-7', reason: 'stolen device', until: null }, 'test');
    const attempts = 120;
    const codes: number[] = [];
    await repeat(attempts, 8, async () => {
      codes.push(await connackCode(broker.port, { clientId: 'stolen-7', protocolVersion: 5 }));
    });
    // Every attempt was refused as banned (CONNACK 0x8A), recorded or not.
    expect(codes).toHaveLength(attempts);
    expect(new Set(codes)).toEqual(new Set([0x8a]));
    const records = await stopAndRead(broker);
    const blocked = byAction(records, 'guard.blocked');
    expect(blocked).toHaveLength(BURST);
    for (const r of blocked) {
      expect(field(r, 'mqtt.client_id')).toBe('stolen-7');
      expect(field(r, 'mqtt.listener')).toBe('flood');
      expect(field(r, 'event.code')).toBe('banned');
    }
    const summaries = summariesOf(records, 'guard.blocked');
    expect(summaries).toHaveLength(1);
    expect(field(summaries[0]!, 'audit.suppressed')).toBe(attempts - BURST);
    expect(field(summaries[0]!, 'audit.recorded')).toBe(BURST);
    expect(field(summaries[0]!, 'audit.reason')).toBe('shutdown');
    expect(field(summaries[0]!, 'event.code')).toBe('banned');
    expect(field(summaries[0]!, 'client.ip')).toBe('127.0.0.1');
    expect(blocked.length + suppressedTotal(summaries)).toBe(attempts);
    // Other records are not limited: the ban itself is there.
    expect(byAction(records, 'guard.banned')).toHaveLength(1);
  });

  it('a CONNECT the broker refuses before authentication, sent again and again, writes burst records and one summary', async () => {
    const broker = await startFloodBroker({ transport: 'tcp' });
    const attempts = 60;
    const codes: number[] = [];
    await repeat(attempts, 8, async () => {
      // An authentication method no step of the chain offers: the broker refuses it before any authenticator runs.
      const options = { clientId: 'prober', protocolVersion: 5 as const };
      codes.push(
        await connackCode(broker.port, { ...options, properties: { authenticationMethod: 'NO-SUCH-METHOD' } }),
      );
    });
    expect(codes).toEqual(new Array<number>(attempts).fill(0x8c));
    // An ordinary client's authentication decision is never bounded.
    const ok = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, { clientId: 'ordinary', reconnectPeriod: 0 });
    await ok.endAsync();
    const records = await stopAndRead(broker);
    const denied = byAction(records, 'authn.denied');
    expect(denied).toHaveLength(BURST);
    for (const r of denied) expect(field(r, 'event.code')).toBe('badAuthenticationMethod');
    const summaries = summariesOf(records, 'authn.denied');
    expect(summaries).toHaveLength(1);
    expect(field(summaries[0]!, 'event.code')).toBe('badAuthenticationMethod');
    expect(denied.length + suppressedTotal(summaries)).toBe(attempts);
    expect(byAction(records, 'authn.allowed').map((r) => field(r, 'mqtt.client_id'))).toEqual(['ordinary']);
    expect(broker.logs.filter((l) => l.msg === 'connection refused')).toHaveLength(BURST);
  });

  it('takes a new burst from a configuration reload at once, and the counts of the window in progress still add up', async () => {
    const broker = await startFloodBroker({ transport: 'tcp' });
    const guard = broker.server.broker.guard as Guard;
    guard.ban({ kind: 'client_id', value: 'stolen-8', reason: 'stolen device', until: null }, 'test');
    const attempt = async (): Promise<void> => {
      expect(await connackCode(broker.port, { clientId: 'stolen-8', protocolVersion: 5 })).toBe(0x8a);
    };
    for (let i = 0; i < 3; i++) await attempt();
    // Under attack, the operator lowers the burst to 1 and sends SIGHUP: no restart, no dropped clients.
    const next = structuredClone(broker.config);
    next.audit.refusals.burst = 1;
    expect(broker.server.reloadConfig(next).applied).toEqual(['audit.refusals']);
    for (let i = 0; i < 4; i++) await attempt();
    const records = await stopAndRead(broker);
    // The three recorded before the reload stay; every later one in the same window is counted, not recorded.
    expect(byAction(records, 'guard.blocked')).toHaveLength(3);
    const summaries = summariesOf(records, 'guard.blocked');
    expect(summaries.map((r) => [field(r, 'audit.recorded'), field(r, 'audit.suppressed')])).toEqual([[3, 4]]);
  });
});
