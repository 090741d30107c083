import type net from 'node:net';
import { AuthenticationChain } from '../authn/chain.js';
import type { ConnectAuthenticator } from '../authn/types.js';
import { MemoryAuditSink, type AuditSink } from '../audit/events.js';
import type { AuthzDecision, Authorizer } from '../authz/types.js';
import { Broker } from './broker.js';
import type { BrokerConfig, ListenerConfig } from './config/schema.js';
import { listenerName, type ListenerRuntime } from './listener.js';
import { createLogger, type Logger } from './log.js';
import type { ConnectGuard } from './seams.js';
import { SysTopics } from './sys/sys-topics.js';
import { createTcpServer, listen } from './transport/tcp.js';

export interface ServerOptions {
  config: BrokerConfig;
  log?: Logger;
  audit?: AuditSink;
  authorizer?: Authorizer;
  guard?: ConnectGuard;
  /** Overrides the chain built from configuration, per listener name (tests, embedding). */
  authenticators?: ReadonlyMap<string, ConnectAuthenticator>;
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
  private started = false;

  constructor(readonly options: ServerOptions) {
    const config = options.config;
    this.log = options.log ?? createLogger(config.log_level);
    this.broker = new Broker({
      config,
      log: this.log,
      authorizer: options.authorizer ?? interimAuthorizer,
      audit: options.audit ?? new MemoryAuditSink(),
      guard: options.guard,
    });
    for (const listenerConfig of config.listeners) {
      const name = listenerName(listenerConfig);
      this.listeners.push({
        name,
        config: listenerConfig,
        authenticator: options.authenticators?.get(name) ?? buildChain(listenerConfig),
        server: undefined,
        address: undefined,
      });
    }
    this.sys = new SysTopics(this.broker, config.sys_interval_seconds);
  }

  async start(): Promise<void> {
    for (const listener of this.listeners) {
      const server = this.createServer(listener);
      listener.server = server;
      listener.address = await listen(server, listener.config.host, listener.config.port);
    }
    this.sys.start();
    this.started = true;
    this.broker.audit.record({ event: { action: 'broker.started', outcome: 'success' }, actor: 'broker' });
  }

  private createServer(listener: ListenerRuntime): net.Server {
    switch (listener.config.transport) {
      case 'tcp':
        return createTcpServer(this.broker, listener);
      default:
        throw new Error(`transport ${listener.config.transport} is not available yet`);
    }
  }

  /** Stop accepting, tell v5 clients 0x8B, close every connection, then release resources. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.sys.stop();
    const closing = this.listeners.map(
      (l) => new Promise<void>((resolve) => (l.server ? l.server.close(() => resolve()) : resolve())),
    );
    await this.broker.closeAllConnections();
    await Promise.all(closing);
    this.broker.audit.record({ event: { action: 'broker.stopped', outcome: 'success' }, actor: 'broker' });
  }

  /** A one-line summary of where the broker listens and what protects each listener. */
  describe(): string[] {
    return this.listeners.map((l) => {
      const a = l.address;
      return `${l.name}: ${l.config.transport}://${a?.host ?? l.config.host}:${a?.port ?? l.config.port} anonymous=${l.config.anonymous ? 'allowed' : 'refused'}`;
    });
  }
}

function buildChain(listener: ListenerConfig): ConnectAuthenticator {
  return new AuthenticationChain({ steps: [], anonymous: listener.anonymous });
}

/** TODO(#7): replaced by the policy evaluator; allows everything except publishing to `$` topics. */
const interimAuthorizer: Authorizer = {
  check(request): AuthzDecision {
    if (request.action === 'publish' && request.topic.startsWith('$'))
      return { allowed: false, reason: '$ topics are reserved for the broker' };
    return { allowed: true, reason: 'interim allow' };
  },
  onChange() {},
  invalidate() {},
};
