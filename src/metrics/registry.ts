import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { AuditWriter } from '../../audit/writer.js';
import type { Broker } from '../broker.js';
import type { Guard } from '../guard/guard.js';
import type { SessionStore } from '../persistence/store.js';
import { BROKER_VERSION } from '../version.js';

export const METRIC_PREFIX = 'bulwark_';

/** What the registry reads at scrape time. Nothing here is touched per message: every value is read when asked. */
export interface MetricsSources {
  broker: Broker;
  store: SessionStore | undefined;
  /** The broker's audit sink, whatever it is: `writable` is what the CONNECT and admin paths fail closed on. */
  audit: { readonly writable: boolean };
  /** The file writer, when the broker opened one (`audit.enabled`). */
  auditWriter: AuditWriter | undefined;
  guard: Guard | undefined;
  /** Authentication backends by name, and whether each is answering (its breaker closed). */
  authnBackends?: () => Iterable<readonly [string, boolean]>;
  /** SQL policy sources by id, and whether each is answering. */
  authzSources?: () => Iterable<readonly [string, boolean]>;
}

type Read = () => number;

let processMetrics: Registry | undefined;

/**
 * prom-client's process and Node.js metrics, registered once per process: each `collectDefaultMetrics` call starts
 * an event loop delay monitor and a GC observer that nothing stops, so a broker restarted in the same process
 * (tests, embedding) must not add another.
 */
function processRegistry(): Registry {
  if (processMetrics === undefined) {
    processMetrics = new Registry();
    collectDefaultMetrics({ register: processMetrics, prefix: METRIC_PREFIX });
  }
  return processMetrics;
}

/**
 * The broker's Prometheus registry (docs/metrics.md lists every metric). Counters are the broker's own plain
 * numbers, copied in by each metric's `collect` when a scrape asks: the message and connect paths never call
 * prom-client.
 */
export function createMetricsRegistry(sources: MetricsSources): Registry {
  const registry = new Registry();
  const counter = (name: string, help: string, read: Read): void => {
    new Counter({
      name: METRIC_PREFIX + name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  };
  const gauge = (name: string, help: string, read: Read): void => {
    new Gauge({
      name: METRIC_PREFIX + name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  };

  const build = new Gauge({
    name: `${METRIC_PREFIX}build_info`,
    help: 'Always 1; the labels name the running build.',
    labelNames: ['version', 'node_version'] as const,
    registers: [registry],
  });
  build.set({ version: BROKER_VERSION, node_version: process.version }, 1);

  const { broker } = sources;
  const s = broker.stats;
  gauge('clients_connected', 'Clients connected now.', () => s.clientsConnected);
  gauge('clients_maximum', 'Most clients connected at once since start.', () => s.clientsMaximum);
  gauge('sessions', 'Sessions the broker holds, connected or not.', () => broker.sessions.size);
  counter('connections_total', 'Network connections accepted.', () => s.connectionsTotal);
  counter('messages_received_total', 'PUBLISH packets received from clients.', () => s.messagesReceived);
  counter('messages_sent_total', 'PUBLISH packets sent to clients.', () => s.messagesSent);
  counter(
    'messages_dropped_total',
    'Messages dropped because a session queue was full (limits.queue_overflow).',
    () => s.messagesDropped,
  );
  counter(
    'messages_discarded_total',
    'Messages not delivered for another reason: expired, larger than the client accepts, taken out of a queue.',
    () => s.messagesDiscarded,
  );
  counter('received_bytes_total', 'Bytes read from client connections.', () => s.bytesReceived);
  counter('sent_bytes_total', 'Bytes written to client connections.', () => s.bytesSent);
  gauge('subscriptions', 'Subscriptions held, across all sessions.', () => broker.tree.size);
  gauge('retained_messages', 'Retained messages stored.', () => broker.retained.size);
  counter('protocol_errors_total', 'Connections closed for breaking the MQTT protocol.', () => s.protocolErrors);
  counter(
    'slow_clients_disconnected_total',
    'Clients disconnected because their unsent output passed limits.max_output_buffer_bytes.',
    () => s.slowClientsDisconnected,
  );
  counter(
    'connects_refused_total',
    'CONNECTs refused by validation, the authentication chain or the policy ($SYS security/connect_refused); guard refusals are in connects_denied_total only.',
    () => s.connectRefused,
  );
  registerConnectOutcomes(registry, broker);
  registerAuthorizationDenials(registry, broker);
  counter(
    'connections_revoked_total',
    'Connected clients disconnected because a changed policy no longer lets them connect.',
    () => s.connectionsRevoked,
  );

  if (sources.guard) registerGuard(registry, sources.guard, counter, gauge);
  registerBackendAvailability(registry, sources);
  registerAudit(sources, counter, gauge);
  const store = sources.store;
  if (store) {
    gauge('store_bytes', 'Size of the session store journal on disk.', () => store.fileBytes);
    gauge('store_sessions', 'Sessions kept in the store (persistent sessions).', () => broker.persistedSessionCount());
  }
  return Registry.merge([processRegistry(), registry]);
}

/**
 * 1 while a backend answers, 0 while its circuit breaker fails requests fast: what an alert on an outage of the
 * directory, a user table or an ACL table watches. Labels are configured names (bounded).
 */
function registerBackendAvailability(registry: Registry, sources: MetricsSources): void {
  const { authnBackends, authzSources } = sources;
  if (authnBackends)
    availabilityGauge(
      registry,
      'authn_backend_up',
      'Authentication backends (SQL databases, LDAP directories) by name: 1 answering, 0 failing fast after consecutive failures (authn.backend_unavailable).',
      'backend',
      authnBackends,
    );
  if (authzSources)
    availabilityGauge(
      registry,
      'authz_source_up',
      'SQL policy sources by id: 1 answering, 0 failing fast after consecutive failures (authz.source_unavailable; on_error applies).',
      'source',
      authzSources,
    );
}

function availabilityGauge<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  label: L,
  read: () => Iterable<readonly [string, boolean]>,
): void {
  new Gauge<L>({
    name: METRIC_PREFIX + name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset();
      for (const [value, up] of read()) this.set({ [label]: value } as Record<L, string>, up ? 1 : 0);
    },
  });
}

function registerConnectOutcomes(registry: Registry, broker: Broker): void {
  const outcomes = broker.connectOutcomes;
  copiedCounter(
    registry,
    'connects_allowed_total',
    'CONNECTs accepted, by the authenticator step id that authenticated the client (`anonymous` when none had to).',
    ['authenticator'],
    () => [...outcomes.allowedCounts()].map(([authenticator, count]) => [{ authenticator }, count] as const),
  );
  copiedCounter(
    registry,
    'connects_denied_total',
    'CONNECTs refused, by MQTT 5 reason name and the authenticator step that refused (empty: a broker step refused).',
    ['reason', 'authenticator'],
    () =>
      [...outcomes.deniedCounts()].map((d) => [{ reason: d.reason, authenticator: d.authenticator }, d.count] as const),
  );
}

function registerAuthorizationDenials(registry: Registry, broker: Broker): void {
  const s = broker.stats;
  const byAction: ReadonlyArray<readonly [string, Read]> = [
    ['publish', () => s.publishDenied],
    ['subscribe', () => s.subscribeDenied],
    ['receive', () => s.receiveDenied],
    ['connect', () => s.connectDenied],
    ['will', () => s.willDenied],
  ];
  copiedCounter(
    registry,
    'authorization_denials_total',
    'Requests the authorization policy denied, by action.',
    ['action'],
    () => byAction.map(([action, read]) => [{ action }, read()] as const),
  );
}

function registerGuard(
  registry: Registry,
  guard: Guard,
  counter: (name: string, help: string, read: Read) => void,
  gauge: (name: string, help: string, read: Read) => void,
): void {
  const c = guard.counters;
  const byKind: ReadonlyArray<readonly [string, Read]> = [
    ['blocked', () => c.blocked],
    ['flapping', () => c.flapping],
    ['throttled', () => c.throttled],
  ];
  copiedCounter(
    registry,
    'guard_refusals_total',
    'CONNECTs the guard refused: block list, flapping detected on this attempt, brute-force throttle.',
    ['kind'],
    () => byKind.map(([kind, read]) => [{ kind }, read()] as const),
  );
  counter('guard_flapping_bans_total', 'Block-list bans added by flapping detection.', () => c.flappingBans);
  counter(
    'guard_throttle_lockouts_total',
    'Brute-force throttle lockouts started by failed authentications.',
    () => c.throttleLockouts,
  );
  gauge('guard_blocklist_entries', 'Entries in the block list now.', () => guard.blocklist.size);
}

function registerAudit(
  sources: MetricsSources,
  counter: (name: string, help: string, read: Read) => void,
  gauge: (name: string, help: string, read: Read) => void,
): void {
  const { audit, auditWriter: writer, broker } = sources;
  gauge(
    'audit_writable',
    '1 while the audit log accepts records; 0 means security decisions fail closed (CONNECT refused, admin commands refused).',
    () => (audit.writable ? 1 : 0),
  );
  counter(
    'audit_refusals_suppressed_total',
    'Repeated refusals before authentication counted into summary records instead of recorded one by one (audit.refusals).',
    () => broker.refusals.suppressedTotal,
  );
  if (!writer) return;
  gauge('audit_failing', '1 while the last audit write or sync attempt failed.', () =>
    writer.stats().failing ? 1 : 0,
  );
  counter('audit_records_written_total', 'Audit records written to disk.', () => writer.stats().written);
  counter(
    'audit_records_dropped_total',
    'Audit events lost: the queue was full, or the writer closed while failing.',
    () => writer.stats().dropped,
  );
  counter('audit_write_failures_total', 'Failed audit write or sync attempts.', () => writer.stats().failures);
  gauge('audit_queue_depth', 'Audit events waiting to be written.', () => writer.queueDepth);
  counter('audit_checkpoints_total', 'Signed checkpoints written to the audit log.', () => writer.stats().checkpoints);
  if (writer.stats().mirror === undefined) return;
  const mirror = (read: (m: NonNullable<ReturnType<AuditWriter['stats']>['mirror']>) => number): Read => {
    return () => {
      const m = writer.stats().mirror;
      return m === undefined ? 0 : read(m);
    };
  };
  gauge(
    'audit_mirror_queue_depth',
    'Audit records waiting for the database mirror.',
    mirror((m) => m.queued),
  );
  counter(
    'audit_mirror_records_written_total',
    'Audit records the database mirror accepted.',
    mirror((m) => m.written),
  );
  counter(
    'audit_mirror_records_dropped_total',
    'Audit records never mirrored (queue full, or stopped while the database was unreachable).',
    mirror((m) => m.dropped),
  );
  counter(
    'audit_mirror_write_failures_total',
    'Failed mirror INSERTs (each retried).',
    mirror((m) => m.failures),
  );
  counter(
    'audit_mirror_records_refused_total',
    'Audit records the database refused for their content; they are in the file log only.',
    mirror((m) => m.refused),
  );
}

/** A labelled counter whose values are the broker's own numbers, copied in at each scrape. */
function copiedCounter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => Iterable<readonly [Record<L, string>, number]>,
): void {
  new Counter<L>({
    name: METRIC_PREFIX + name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.inc(labels, value);
    },
  });
}
