import { allowsAnonymous, AuthenticationChains } from './authentication.js';
import type { ConnectAuthenticator } from '../authn/types.js';
import { MemoryAuditSink, type AuditSink } from '../audit/events.js';
import { createAllowedDecisionFilter } from '../audit/sampler.js';
import { auditWriterOptions, openAuditWriter, type AuditWriter } from '../audit/writer.js';
import { AdminServer, type AdminResult } from './admin/server.js';
import { registerBanCommands } from './admin/ban-commands.js';
import { SwitchableAuditSink } from './audit-sink.js';
import { matchesClient } from './guard/blocklist.js';
import { Guard } from './guard/guard.js';
import type { AuthzDecision, Authorizer } from '../authz/types.js';
import { createAuthorization, type AuthorizationSubsystem } from '../authz/create.js';
import { formatDiagnostic } from '../authz/model.js';
import { policyEventToAudit } from '../authz/policy-manager.js';
import { Broker } from './broker.js';
import type { BrokerConfig } from './config/schema.js';
import { applyLiveKeys, planConfigReload, type ConfigReloadPlan } from './config/reload.js';
import { BROKER_VERSION } from './version.js';
import { listenerName, type ListenerRuntime, type ListeningServer } from './listener.js';
import { createLogger, type Logger } from './log.js';
import { compactHeap, LARGE_POLICY_RULES } from './compact-heap.js';
import type { ConnectGuard } from './seams.js';
import { SysTopics } from './sys/sys-topics.js';
import { createTcpServer, listen } from './transport/tcp.js';
import { createWebSocketServer } from './transport/websocket.js';
import { SecureListener } from './transport/secure-listener.js';
import { createProxiedServer } from './transport/proxied.js';
import { SessionStore, type LoadedJournal } from './persistence/store.js';
import { readBearerToken } from './metrics/bearer-token.js';
import { MetricsEndpoint } from './metrics/endpoint.js';
import { createMetricsRegistry } from './metrics/registry.js';
import { restoreState, type RestoreSummary } from './persistence/restore.js';

export interface ServerOptions {
  config: BrokerConfig;
  log?: Logger;
  audit?: AuditSink;
  authorizer?: Authorizer;
  guard?: ConnectGuard;
  /** Relative paths in the configuration resolve against this directory (the config file's folder). */
  baseDir?: string;
  /** Salvage what is readable from a damaged store instead of refusing to start. */
  repair?: boolean;
  /** Overrides the chain built from configuration, per listener name (tests, embedding). */
  authenticators?: ReadonlyMap<string, ConnectAuthenticator>;
  /** SHA-256 (hex) of the configuration file's content, for `broker.started` (the one `config.changed` compares). */
  configHash?: string;
  /** Clock of the audit refusal limiter (epoch ms): tests move it instead of sleeping through a window. */
  refusalClock?: () => number;
  /**
   * Internal: the bound on TLS handshakes in progress per `tls`/`wss` listener (default `MAX_PENDING_HANDSHAKES`,
   * 1024). Not a setting; tests lower it to reach the bound with a few sockets.
   */
  maxPendingTlsHandshakes?: number;
}

/**
 * The running broker: configuration turned into listeners, chains, policy and audit, and their lifecycle.
 * Start order: audit first (so everything after is recorded), then policy, then listeners; stop in reverse.
 */
export class BulwarkServer {
  readonly broker: Broker;
  readonly listeners: ListenerRuntime[] = [];
  readonly log: Logger;
  readonly sys: SysTopics;
  readonly store: SessionStore | undefined;
  private authorization: AuthorizationSubsystem | undefined;
  /** By listener name. */
  private readonly secureListeners = new Map<string, SecureListener>();
  private readonly chains: AuthenticationChains;
  private started = false;
  private startedAt = 0;
  private maintenanceTimer: NodeJS.Timeout | undefined;
  private connectionTimer: NodeJS.Timeout | undefined;
  private readonly audit = new SwitchableAuditSink();
  private auditWriter: AuditWriter | undefined;
  private guard: Guard | undefined;
  private admin: AdminServer | undefined;
  private metrics: MetricsEndpoint | undefined;
  /** The configuration as changed by `reloadConfig` (undefined until the first reload). */
  private runningConfig: BrokerConfig | undefined;

  /** What relative paths in the configuration resolve against: the configuration file's folder. */
  private get baseDir(): string {
    return this.options.baseDir ?? process.cwd();
  }

  constructor(readonly options: ServerOptions) {
    const config = options.config;
    this.log = options.log ?? createLogger(config.log_level);
    if (options.audit) this.audit.attach(options.audit);
    const persistence = config.persistence;
    let loaded: LoadedJournal | undefined;
    if (persistence.durability !== 'none') {
      this.store = new SessionStore({
        dataDir: config.data_dir,
        durability: persistence.durability,
        flushIntervalMs: persistence.flush_interval_ms,
        maxBatchDelayMs: persistence.max_batch_delay_ms,
        compactMinBytes: persistence.compact_min_bytes,
        repair: options.repair ?? false,
        log: this.log,
      });
      loaded = this.store.load();
      this.store.open(loaded.files);
    }
    this.broker = new Broker({
      store: this.store,
      config,
      log: this.log,
      authorizer: options.authorizer ?? refuseUntilStarted,
      audit: this.audit,
      guard: options.guard,
      refusalClock: options.refusalClock,
    });
    this.chains = new AuthenticationChains(config, this.broker.audit, this.log, this.baseDir);
    for (const listenerConfig of config.listeners) {
      const name = listenerName(listenerConfig);
      this.listeners.push({
        name,
        config: listenerConfig,
        authenticator: options.authenticators?.get(name) ?? this.chains.chainFor(listenerConfig),
        server: undefined,
        address: undefined,
      });
    }
    this.sys = new SysTopics(this.broker, config.sys_interval_seconds);
    if (this.store) {
      const store = this.store;
      this.sys.add('$SYS/broker/store/bytes', () => String(store.fileBytes));
      this.sys.add('$SYS/broker/store/sessions', () => String(this.broker.persistedSessionCount()));
      this.sys.add('$SYS/broker/store/durability', () => store.durability);
    }
    if (loaded) this.restoreFrom(loaded);
  }

  private restoreFrom(loaded: LoadedJournal): void {
    let summary: RestoreSummary | undefined;
    this.broker.restore(() => {
      summary = restoreState(this.broker, loaded.records, Date.now());
    });
    this.log.info(
      { ...summary, files: loaded.files, tornTailBytes: loaded.tornTailBytes, droppedBytes: loaded.droppedBytes },
      `store restored: ${summary!.sessions} sessions, ${summary!.queuedMessages + summary!.inflightMessages} messages, ${summary!.retained} retained`,
    );
    if (loaded.droppedBytes > 0)
      this.log.warn({ droppedBytes: loaded.droppedBytes }, 'store repaired: unreadable records were dropped');
    if (summary!.missingMessages > 0)
      this.log.warn(
        { missingMessages: summary!.missingMessages },
        'store: queued messages whose body the journal does not hold were not restored',
      );
    if (loaded.tornTailBytes > 0)
      this.log.warn(
        { tornTailBytes: loaded.tornTailBytes },
        'store had a torn last record (crash mid-write); it was discarded',
      );
  }

  async start(): Promise<void> {
    const config = this.options.config;
    const dataDir = config.data_dir;
    // Read first: a missing or unsafe token file stops the start before anything is opened.
    const metricsToken =
      config.metrics.enabled && config.metrics.bearer_token_file !== undefined
        ? readBearerToken(config.metrics.bearer_token_file, this.baseDir)
        : undefined;
    if (!this.options.audit) {
      if (config.audit.enabled) {
        this.auditWriter = await openAuditWriter(auditWriterOptions(config.audit, dataDir, { logger: this.log }));
        this.audit.attach(this.auditWriter);
        const writer = this.auditWriter;
        this.sys.add('$SYS/broker/audit/written', () => String(writer.stats().written));
        this.sys.add('$SYS/broker/audit/dropped', () => String(writer.stats().dropped));
        this.sys.add('$SYS/broker/audit/failures', () => String(writer.stats().failures));
        this.sys.add('$SYS/broker/audit/writable', () => String(writer.writable));
        if (config.audit.mirror) {
          // The mirror's health beside the file log's: a reviewer relying on the database must see its drops.
          for (const key of ['queued', 'written', 'dropped', 'failures', 'refused'] as const)
            this.sys.add(`$SYS/broker/audit/mirror/${key}`, () => String(writer.stats().mirror?.[key] ?? 0));
        }
      } else {
        this.log.warn('audit log disabled by configuration: security decisions are only in the structured log');
        this.audit.attach(new MemoryAuditSink(1000));
      }
    }
    this.broker.allowedAudit = createAllowedDecisionFilter(config.audit);
    this.broker.auditPayloads = config.audit.include_payload;
    if (!this.options.guard) {
      this.guard = await Guard.open({
        config: config.guard,
        dataDir,
        onEvent: (event) => this.audit.record(event),
        // Each refused CONNECT is a refusal a client can repeat for free: bounded like a failed handshake.
        onRefusal: (event) => void this.broker.recordRefusal(event),
        log: this.log,
      });
      this.guard.start();
      this.broker.guard = this.guard;
      this.guard.onBanAdded((entry) =>
        this.broker.disconnectBanned((client) => matchesClient(entry, client), entry.reason),
      );
    }
    if (!this.options.authorizer) {
      const audit = this.audit;
      this.authorization = createAuthorization(config.authorization, {
        baseDir: this.baseDir,
        logger: this.log,
        onPolicyEvent: (event) => audit.record(policyEventToAudit(event)),
        onSourceAvailability: (event) => audit.record(event),
      });
      this.authorization.manager.onChange((next) => this.compactAfterLargePolicy(next.rules.length));
      await this.authorization.start();
      this.broker.authorizer = this.authorization.authorizer;
      this.authorization.authorizer.onChange(() => this.broker.reevaluateAuthorization());
    }
    // Before the listeners open and the store is compacted: restored wills already due meet the loaded policy.
    this.broker.authorizationReady();
    this.broker.checkReceive = config.check_receive_on_delivery;
    await this.chains.start();
    // Just before the MQTT listeners: a metrics port in use fails the start before any client can connect.
    if (config.metrics.enabled) {
      this.metrics = await MetricsEndpoint.start({
        host: config.metrics.host,
        port: config.metrics.port,
        path: config.metrics.path,
        token: metricsToken,
        // Bounded as the other refusals anyone can repeat at no cost: a guessing loop cannot fill the audit log.
        onRefused: (peer, code) => {
          const recorded = this.broker.recordRefusal({
            event: {
              action: 'metrics.scrape_refused',
              outcome: 'failure',
              reason:
                code === 'missing_token'
                  ? 'scrape without a bearer token'
                  : 'scrape with a bearer token that does not match',
              code,
            },
            client: { ip: peer.address, port: peer.port },
          });
          if (recorded) this.log.warn({ peer: peer.address, code }, 'metrics scrape refused');
        },
        registry: createMetricsRegistry({
          broker: this.broker,
          store: this.store,
          audit: this.audit,
          auditWriter: this.auditWriter,
          guard: this.guard,
          authnBackends: () =>
            [...this.chains.verification.breakerStates()].map(([backend, state]) => [backend, state === 'closed']),
          authzSources: () => (this.authorization?.sqlSources ?? []).map((s) => [s.id, s.available]),
        }),
        log: this.log,
      });
    }
    try {
      for (const listener of this.listeners) {
        const server = await this.createServer(listener);
        listener.server = server;
        listener.address = await listen(server, listener.config.host, listener.config.port);
      }
      if (this.store) await this.store.compact(this.broker);
      await this.startAdmin(dataDir);
    } catch (error) {
      // stop() does nothing for a broker that never started: neither the endpoint nor a listener may outlive the
      // failed start (an embedding that goes on would serve metrics, and accept clients no timer ever times out).
      await this.closeAfterFailedStart();
      throw error;
    }
    this.sys.start();
    this.maintenanceTimer = setInterval(() => {
      this.broker.retained.sweep(Date.now());
      this.store?.maybeCompact(this.broker);
    }, 10_000);
    this.maintenanceTimer.unref();
    // One timer for every connection's connect timeout and keep alive.
    this.connectionTimer = setInterval(() => {
      const now = Date.now();
      for (const connection of this.broker.connections) connection.checkTimers(now);
    }, 250);
    this.connectionTimer.unref();
    this.started = true;
    this.startedAt = Date.now();
    // What a reviewer needs to tell runs apart: which build, where it listened, and from which configuration.
    const labels: Record<string, string> = {
      listeners: this.listeners.map((l) => `${l.name}:${l.address?.port ?? l.config.port}`).join(','),
      version: BROKER_VERSION,
    };
    if (this.options.configHash) labels['config_hash'] = this.options.configHash;
    this.broker.audit.record({
      event: {
        action: 'broker.started',
        outcome: 'success',
        reason: `listening on ${this.listeners.length} listeners`,
      },
      actor: 'broker',
      labels,
    });
  }

  private async closeAfterFailedStart(): Promise<void> {
    // close() stops accepting at once; its callback, which waits for sockets still open (one mid-handshake, whose
    // deadline timer never started), is not awaited: the start's error must reach the caller without delay.
    for (const listener of this.listeners) if (listener.server && listener.address) listener.server.close();
    await this.broker.closeAllConnections();
    await this.metrics?.close();
    this.metrics = undefined;
  }

  /** Where the metrics endpoint listens, once started with `metrics.enabled`; else undefined. */
  get metricsAddress(): { host: string; port: number } | undefined {
    return this.metrics?.address;
  }

  /** The TLS side of a started `tls` or `wss` listener (its handshakes in progress, its context); else undefined. */
  secureListener(name: string): SecureListener | undefined {
    return this.secureListeners.get(name);
  }

  private async createServer(listener: ListenerRuntime): Promise<ListeningServer> {
    const c = listener.config;
    const broker = this.broker;
    let secure: SecureListener | undefined;
    // The schema refuses tls on tcp/ws; checking the transport here keeps a plaintext listener from loading keys.
    if (c.tls && (c.transport === 'tls' || c.transport === 'wss')) {
      secure = await SecureListener.create(
        { tls: c.tls, psk: c.psk, ocsp: c.ocsp_stapling },
        listener.name,
        this.baseDir,
        (event) => broker.audit.record(event),
        this.options.maxPendingTlsHandshakes,
      );
      this.secureListeners.set(listener.name, secure);
    }
    const proxy = c.proxy_protocol?.enabled ? c.proxy_protocol : undefined;
    switch (c.transport) {
      case 'tcp':
        return proxy ? createProxiedServer(broker, listener, proxy, undefined) : createTcpServer(broker, listener);
      case 'tls': {
        const tlsServer = secure!.createTlsServer(broker, listener);
        return proxy ? createProxiedServer(broker, listener, proxy, tlsServer) : tlsServer;
      }
      case 'ws':
        return createWebSocketServer(broker, listener, {
          path: c.websocket_path,
          maxPayload: broker.limits.max_packet_size,
        });
      case 'wss':
        return secure!.createWssServer(broker, listener, c.websocket_path);
    }
  }

  /** After a large policy is swapped in: see `compactHeap` for why, and the log line says what it cost. */
  private compactAfterLargePolicy(rules: number): void {
    if (rules < LARGE_POLICY_RULES) return;
    const started = performance.now();
    if (!compactHeap()) return;
    this.log.info(
      {
        rules,
        ms: Math.round(performance.now() - started),
        heapUsedMiB: Math.round(process.memoryUsage().heapUsed / 1048576),
      },
      'heap compacted after loading a large policy',
    );
  }

  /**
   * Stop accepting, tell v5 clients 0x8B, close every connection, then release resources. `reason` is why, for
   * `broker.stopped`: the signal (`SIGTERM`) when `bulwark start` stops on one.
   */
  async stop(reason = 'stop requested'): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.sys.stop();
    if (this.maintenanceTimer) clearInterval(this.maintenanceTimer);
    if (this.connectionTimer) clearInterval(this.connectionTimer);
    const closing = this.listeners.map(
      (l) => new Promise<void>((resolve) => (l.server ? l.server.close(() => resolve()) : resolve())),
    );
    const metricsClosed = this.metrics?.close();
    this.metrics = undefined;
    await this.broker.closeAllConnections();
    await Promise.all(closing);
    await metricsClosed;
    await this.store?.close(this.broker);
    await this.admin?.stop();
    await this.guard?.stop();
    await this.authorization?.stop();
    await this.chains.stop();
    for (const secure of this.secureListeners.values()) await secure.close();
    // Nothing can be refused any more: the counts of refusals not recorded one by one go in before the end.
    this.broker.refusals.stop();
    this.broker.audit.record({
      event: { action: 'broker.stopped', outcome: 'success', reason },
      actor: 'broker',
      labels: { uptime_s: String(Math.floor((Date.now() - this.startedAt) / 1000)) },
    });
    // Last: the shutdown checkpoint signs everything recorded before it.
    await this.auditWriter?.close();
  }

  /** The local control channel (`bulwark ban`, `policy.reload`): a Unix socket only the operator can reach. */
  private async startAdmin(dataDir: string): Promise<void> {
    if (process.platform === 'win32') return;
    const admin = new AdminServer({
      dataDir,
      onAudit: (event) => this.audit.record(event),
      auditWritable: () => this.audit.writable,
      log: this.log,
    });
    if (this.guard) registerBanCommands(admin, this.guard);
    admin.register(
      'policy.reload',
      async (_params, context): Promise<AdminResult> => {
        // The caller, so policy.reloaded names the operator as admin.command does, not just "cli".
        const result = await this.authorization?.manager.reload('cli', context.actor);
        if (result === undefined) return { ok: true, result: { kind: 'unchanged' } };
        // A refused policy is a refused command: the caller and the audit log must not read it as a success.
        if (!result.ok)
          return {
            ok: false,
            code: 'rejected',
            message: `policy refused, the running policy stays: ${result.message}`,
            errors: result.errors.map(formatDiagnostic),
          };
        return { ok: true, result };
      },
      're-read the policy files (a failure keeps the running policy)',
    );
    await admin.start();
    this.admin = admin;
  }

  /** SIGHUP: re-read the policy files; a failure keeps the running policy. */
  async reloadPolicy(trigger: 'sighup' | 'cli'): Promise<void> {
    await this.authorization?.manager.reload(trigger);
  }

  /**
   * SIGHUP with a configuration file: takes over the keys that can change live (src/config/reload.ts) from a
   * re-read, validated configuration and returns what changed, what was applied and what needs a restart, by key
   * path. Compared with what the broker runs, so a change that waits for a restart is reported on every reload
   * until then. The caller records `config.changed` and reloads the policy.
   */
  reloadConfig(next: BrokerConfig): ConfigReloadPlan {
    const running = this.runningConfig ?? this.options.config;
    const plan = planConfigReload(running, next);
    let samplingChanged = false;
    for (const key of plan.applied) {
      if (key === 'log_level') this.log.level = next.log_level;
      else if (key === 'check_receive_on_delivery') this.broker.checkReceive = next.check_receive_on_delivery;
      else if (key === 'audit.include_payload') this.broker.auditPayloads = next.audit.include_payload;
      else if (key === 'audit.refusals') {
        const r = next.audit.refusals;
        this.broker.refusals.reconfigure({ burst: r.burst, windowMs: r.window, maxKeys: r.max_keys });
      } else samplingChanged = true;
    }
    // One filter from all the sampling keys together, however many of them changed.
    if (samplingChanged) this.broker.allowedAudit = createAllowedDecisionFilter(next.audit);
    this.runningConfig = applyLiveKeys(running, next, plan.applied);
    return plan;
  }

  /** A one-line summary of where the broker listens and what protects each listener. */
  describe(): string[] {
    return this.listeners.map((l) => {
      const a = l.address;
      return `${l.name}: ${l.config.transport}://${a?.host ?? l.config.host}:${a?.port ?? l.config.port} anonymous=${allowsAnonymous(this.options.config, l.config) ? 'allowed' : 'refused'}`;
    });
  }
}

/** Until `start()` has loaded the policy nothing is allowed: the broker accepts no client before then anyway. */
const refuseUntilStarted: Authorizer = {
  check(): AuthzDecision {
    return { allowed: false, reason: 'policy not loaded yet' };
  },
  onChange() {},
  invalidate() {},
};
