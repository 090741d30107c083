import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jsonLogSink } from './json-log-sink.js';
import { pino } from 'pino';
import type { ConnectAuthenticator } from '../../authn/types.js';
import { MemoryAuditSink, type AuditEvent } from '../../audit/events.js';
import type { Authorizer } from '../../authz/types.js';
import { configSchema } from '../../src/config/schema.js';
import type { ConnectGuard } from '../../src/seams.js';
import { BulwarkServer } from '../../src/server.js';
import { until } from './until.js';

export interface TestBroker {
  server: BulwarkServer;
  port: number;
  url: string;
  audit: MemoryAuditSink;
  /** Every structured log line the broker wrote, parsed. */
  logs: Record<string, unknown>[];
  stop(): Promise<void>;
  /** Waits until an audit event with this action appears (and matches `where`). */
  waitForAudit(action: string, where?: (e: AuditEvent) => boolean): Promise<AuditEvent>;
  waitForLog(where: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

export interface TestBrokerOptions {
  /** Configuration as a YAML file would give it (input form: defaults apply). */
  config?: Record<string, unknown> & { limits?: Record<string, unknown> };
  listener?: Record<string, unknown>;
  authorizer?: Authorizer;
  authenticator?: ConnectAuthenticator;
  guard?: ConnectGuard;
  /** `ServerOptions.maxPendingTlsHandshakes`: the TLS handshake bound, lowered to test it with a few sockets. */
  maxPendingTlsHandshakes?: number;
}

/** Starts a real broker on a free loopback port with in-memory audit capture. */
export async function startBroker(options: TestBrokerOptions = {}): Promise<TestBroker> {
  const { sink, logs } = jsonLogSink();
  const { limits, ...rest } = options.config ?? {};
  const config = configSchema.parse({
    sys_interval_seconds: 0,
    // In-memory unless a test is about persistence: fast, and nothing left on disk.
    persistence: { durability: 'none' },
    authentication: { anonymous: true },
    // Each broker gets its own data directory (block list, admin socket); loopback is not counted as flapping.
    data_dir: mkdtempSync(join(tmpdir(), 'bulwark-test-data-')),
    guard: { exempt_networks: ['127.0.0.0/8', '::1/128'] },
    ...rest,
    limits: { ...(limits ?? {}) },
    listeners: [{ name: 'test', transport: 'tcp', host: '127.0.0.1', port: 0, ...(options.listener ?? {}) }],
  });
  const audit = new MemoryAuditSink();
  const server = new BulwarkServer({
    config,
    log: pino({ level: 'debug' }, sink),
    audit,
    authorizer: options.authorizer,
    guard: options.guard,
    authenticators: options.authenticator ? new Map([['test', options.authenticator]]) : undefined,
    maxPendingTlsHandshakes: options.maxPendingTlsHandshakes,
  });
  await server.start();
  const port = server.listeners[0]!.address!.port;
  return {
    server,
    port,
    url: `mqtt://127.0.0.1:${port}`,
    audit,
    logs,
    stop: () => server.stop(),
    waitForAudit: (action, where) =>
      until(() => audit.events.find((e) => e.event.action === action && (!where || where(e))), `audit ${action}`),
    waitForLog: (where) => until(() => logs.find(where), 'log line'),
  };
}
