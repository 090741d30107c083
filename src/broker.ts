import type { ByteStream } from './connection/byte-stream.js';
import {
  recordableUsername,
  type ChainResult,
  type ConnectAttempt,
  type Identity,
  type TlsPeerInfo,
} from '../authn/types.js';
import type { AuditActionName, AuditEvent, AuditSink } from '../audit/events.js';
import { RefusalLimiter } from '../audit/refusal-limiter.js';
import { authnDecisionEvent, proxyReportedTlsFields } from '../authn/decision-event.js';
import type { AccessRequest, AuthzDecision, Authorizer, TopicAction } from '../authz/types.js';
import { authzFields, connectionEvent, topicDecisionEvent } from './connection-events.js';
import type { BrokerConfig, Limits } from './config/schema.js';
import { Connection } from './connection/connection.js';
import type { ListenerRuntime } from './listener.js';
import type { Logger } from './log.js';
import { ReasonCode, v3ConnackCode, type ReasonName } from './protocol/reason-codes.js';
import { isExpired, type Message, type QoS } from './routing/message.js';
import { topicMatches } from './protocol/topic.js';
import { RetainedStore } from './routing/retained-store.js';
import type { Subscription } from './routing/subscription.js';
import { SubscriptionTree, type SharedGroup } from './routing/subscription-tree.js';
import {
  attemptedGuardClient,
  guardClientOf,
  verifiedGuardClient,
  type ConnectGuard,
  type GuardClient,
  type GuardVerdict,
} from './seams.js';
import type { Outbound } from './session/outbound.js';
import { Session, type PendingWill, type SessionEvents, type SessionLimits } from './session/session.js';
import { BrokerStats } from './sys/stats.js';
import { ConnectOutcomes } from './sys/connect-outcomes.js';
import { isSysTopic, SYS_PUBLISH_REFUSED } from './sys/read-only.js';
import { setTimeoutAt } from './timeout-at.js';
import type { SessionStore } from './persistence/store.js';

export interface BrokerOptions {
  config: BrokerConfig;
  log: Logger;
  authorizer: Authorizer;
  audit: AuditSink;
  guard?: ConnectGuard;
  store?: SessionStore;
  /** Clock of the refusal limiter (epoch ms); injected so tests scale time instead of sleeping. */
  refusalClock?: () => number;
}

const NEVER_EXPIRES = 0xffff_ffff;
const PASS: GuardVerdict = { kind: 'pass' };

/**
 * A will restored from a store written before wills kept the identity they were authorized for: the current policy
 * cannot be asked about it, so it is withheld (docs/persistence.md).
 */
const RESTORED_WILL_WITHOUT_IDENTITY: AuthzDecision = Object.freeze({
  allowed: false,
  rule: Object.freeze({ source: 'broker', name: 'restored-will-without-identity' }),
  reason:
    'will restored from a store that did not keep the identity it was authorized for; it cannot be checked against the current policy (fail closed)',
});

/** Overlapping subscriptions of one session for one message: delivered once ([MQTT-3.3.4-2], [MQTT-3.3.4-3]). */
interface MergedDelivery {
  qos: QoS;
  retainAsPublished: boolean;
  subscriptionIds: number[];
}

/** Queue-overflow log lines per session at most this often. */
const QUEUE_OVERFLOW_LOG_INTERVAL_MS = 10_000;

/**
 * The broker's shared state and the operations handlers call: sessions, routing, retained messages, wills,
 * and the seams to authorization, abuse protection and the audit log.
 */
export class Broker {
  readonly limits: Limits;
  private sessionLimits: SessionLimits | undefined;
  /** When each session's queue overflow was last logged, and the drops since then. */
  private readonly overflowLogged = new WeakMap<Session, { at: number; unlogged: number }>();
  readonly stats = new BrokerStats();
  /** Every CONNECT decision by outcome, reason and deciding step (docs/metrics.md). */
  readonly connectOutcomes = new ConnectOutcomes();
  readonly sessions = new Map<string, Session>();
  readonly connections = new Set<Connection>();
  readonly tree = new SubscriptionTree();
  readonly retained: RetainedStore;
  readonly store: SessionStore | undefined;
  /** True while the store is being replayed: state changes are not journaled again. */
  private restoring = false;
  readonly log: Logger;
  readonly audit: AuditSink;
  /** Bounds the records (and log lines) of repeated refusals before authentication: see `recordRefusal`. */
  readonly refusals: RefusalLimiter;
  authorizer: Authorizer;
  guard: ConnectGuard | undefined;
  private readonly sessionEvents: SessionEvents;
  private stopping = false;
  /** Wills due before `authorizationReady()`; undefined once the policy is loaded. */
  private willsAwaitingPolicy: { session: Session; will: PendingWill }[] | undefined = [];

  // Routing scratch state, reused for every publish so routing allocates only what it delivers.
  private routeStamp = 0;
  private routeMessage: Message | undefined;
  // The two lists keep their arrays between messages and count their entries: `length = 0` would give back the
  // backing store, and the next message's first push would allocate one again (~150 bytes per message).
  private readonly routeTargets: (Subscription | undefined)[] = [];
  private routeTargetCount = 0;
  private readonly routeMerges = new Map<Session, MergedDelivery>();
  private readonly routeGroups: (SharedGroup | undefined)[] = [];
  private routeGroupCount = 0;
  /**
   * The one request object every decision-cache lookup is asked with (`Authorizer.cached` keeps nothing of it); a
   * request of its own is built only on a miss. Building one for every PUBLISH and delivery was ~90 bytes of
   * garbage per message. It holds the last asker's identity until the next lookup replaces it.
   */
  private cacheProbe: AccessRequest | undefined;
  private readonly onRouteMatch = (s: Subscription): void => this.collectTarget(s);
  private readonly onRouteGroup = (g: SharedGroup): void => {
    this.routeGroups[this.routeGroupCount++] = g;
  };

  constructor(readonly options: BrokerOptions) {
    this.limits = options.config.limits;
    this.log = options.log;
    this.audit = options.audit;
    const refusals = options.config.audit.refusals;
    this.refusals = new RefusalLimiter({
      burst: refusals.burst,
      windowMs: refusals.window,
      maxKeys: refusals.max_keys,
      now: options.refusalClock,
      onSummary: (summary) => {
        this.audit.record(summary);
        const a = summary.audit!;
        this.log.warn(
          {
            action: a.action,
            peer: summary.client?.ip,
            listener: summary.mqtt?.listener,
            code: summary.event.code,
            suppressed: a.suppressed,
            recorded: a.recorded,
            from: a.window_start,
            to: a.window_end,
          },
          'repeated refusals: the rest of the interval was counted, not recorded one by one',
        );
      },
    });
    this.authorizer = options.authorizer;
    this.guard = options.guard;
    const store = options.store?.enabled ? options.store : undefined;
    this.store = store;
    this.retained = new RetainedStore(
      store
        ? (topic, message) => {
            // $SYS values are republished on every interval; journaling them would only grow the store.
            if (!this.restoring && !isSysTopic(topic)) store.retainedChanged(topic, message);
          }
        : undefined,
    );
    this.sessionEvents = {
      onQueueOverflow: (session) => {
        this.stats.messagesDropped++;
        // A subscriber that cannot keep up drops thousands of messages a second: one line per drop would flood the
        // log (and the disk under it). The first drop is logged at once, then at most one line per interval per
        // session, each saying how many drops it stands for; `$SYS/broker/messages/dropped` counts every one.
        const now = Date.now();
        const last = this.overflowLogged.get(session);
        if (last && now - last.at < QUEUE_OVERFLOW_LOG_INTERVAL_MS) {
          last.unlogged++;
          return;
        }
        this.log.warn(
          {
            clientId: session.clientId,
            limit: this.limits.max_queued_messages,
            policy: this.limits.queue_overflow,
            dropped: 1 + (last?.unlogged ?? 0),
          },
          'session queue full: message dropped',
        );
        this.overflowLogged.set(session, { at: now, unlogged: 0 });
      },
      onDiscarded: () => {
        this.stats.messagesDiscarded++;
      },
    };
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  // --- connections -------------------------------------------------------------------------------------

  accept(
    socket: ByteStream,
    listener: ListenerRuntime,
    peer: { address: string; port: number },
    tls: TlsPeerInfo | undefined,
  ): Connection | undefined {
    if (this.stopping) {
      socket.destroy();
      return undefined;
    }
    const connection = new Connection(this, socket, listener, peer, tls);
    this.connections.add(connection);
    this.stats.connectionsTotal++;
    return connection;
  }

  guardCheckConnect(
    connection: Connection,
    attempt: ConnectAttempt,
  ): { kind: 'pass' } | { kind: 'refuse'; reason: ReasonName; detail: string } {
    if (!this.audit.writable) {
      // Fail closed: a security decision that cannot be recorded is not made.
      return { kind: 'refuse', reason: 'serverUnavailable', detail: 'audit log unavailable' };
    }
    if (!this.guard) return PASS;
    return this.guard.checkConnect(guardClientOf(attempt));
  }

  /**
   * An enhanced exchange named a user the CONNECT did not (SCRAM's `n=` without a CONNECT User Name): a banned or
   * locked-out name is refused now, before its proof is verified, as a CONNECT naming it would have been.
   */
  guardCheckAttemptedUsername(connection: Connection, username: string): GuardVerdict {
    const guard = this.guard;
    if (!guard?.checkUsername || !connection.attempt) return PASS;
    return guard.checkUsername(attemptedGuardClient(connection.attempt, username));
  }

  /**
   * Tells the guard how authentication (or a re-authentication) ended. A backend failure is not a wrong password,
   * so it is not counted; a failure is counted against the name that was tried, a success against the identity.
   * The guard may still refuse an allowed client: its login tripped client-id or username flapping, or its
   * identity (its user name, a JWT subject) is on the block list.
   */
  guardAfterAuthentication(connection: Connection, result: Exclude<ChainResult, { kind: 'continue' }>): GuardVerdict {
    const guard = this.guard;
    const attempt = connection.attempt;
    if (!guard || !attempt) return PASS;
    if (result.kind === 'deny') {
      if (result.reason !== 'serverUnavailable')
        guard.recordAuthResult(attemptedGuardClient(attempt, result.attemptedUsername), false);
      return PASS;
    }
    const client = verifiedGuardClient(attempt, result.identity);
    const verdict = guard.recordAuthResult(client, true);
    if (verdict && verdict.kind === 'refuse') return verdict;
    // The CONNECT's User Name was checked before authentication; look again only when the identity says more.
    const revealed =
      client.jwtSubject !== undefined || (client.username !== undefined && client.username !== attempt.username);
    if (revealed && guard.checkBlocklist) return guard.checkBlocklist(client);
    return PASS;
  }

  /** [MQTT-3.1.4-3] takeover: the old connection is told 0x8E and closed; clean start discards the old session. */
  openSession(
    connection: Connection,
    cleanStart: boolean,
    expiryInterval: number,
  ): { session: Session; present: boolean } {
    const clientId = connection.clientId;
    let session = this.sessions.get(clientId);
    if (session?.connection) {
      const old = session.connection;
      this.log.info({ clientId, peer: connection.peerLabel }, 'session taken over by a new connection');
      old.close('sessionTakenOver', 'another connection used this client identifier');
      // [MQTT-3.1.4-3] the old connection's will is handled as for any abnormal end; its delay still applies, and a
      // resumed session cancels a delayed will below. An old connection that already sent DISCONNECT 0x00 and is
      // only waiting for its socket to close discarded its will then ([MQTT-3.14.4-3]).
      this.detachConnection(session, !old.disconnectedCleanly);
      // A session with expiry 0 ended with its connection: start from nothing.
      session = this.sessions.get(clientId);
    }
    if (session) this.cancelExpiry(session);
    if (session && cleanStart) {
      this.endSession(session);
      session = undefined;
    }
    let present = false;
    if (session) {
      present = true;
      if (session.will?.timer) clearTimeout(session.will.timer);
      session.will = undefined;
      session.protocolVersion = connection.protocolVersion;
    } else {
      session = this.createSession(clientId, connection.protocolVersion, expiryInterval);
    }
    session.expiryInterval = expiryInterval;
    session.connection = connection;
    session.offlineSince = undefined;
    connection.session = session;
    this.setJournal(session);
    return { session, present };
  }

  createSession(clientId: string, protocolVersion: 3 | 4 | 5, expiryInterval: number): Session {
    const session = new Session(
      clientId,
      protocolVersion,
      expiryInterval,
      // One object for every session: the limits are broker-wide, and an idle session should cost no more than it must.
      (this.sessionLimits ??= {
        maxQueuedMessages: this.limits.max_queued_messages,
        queueOverflow: this.limits.queue_overflow,
        queueQos0: this.limits.queue_qos0_messages,
      }),
      this.sessionEvents,
    );
    this.sessions.set(clientId, session);
    if (this.store && expiryInterval > 0) session.journal = this.store;
    return session;
  }

  /** A persistent session (expiry > 0) is journaled; a session that stops being persistent is forgotten. */
  private setJournal(session: Session): void {
    const store = this.store;
    if (!store) return;
    if (session.expiryInterval > 0) {
      if (!session.journal) {
        session.journal = store;
        for (const out of [...session.inflight.values(), ...session.queue])
          if (out.qos > 0) store.added(session.clientId, out);
        for (const id of session.inboundQos2) store.inboundQos2Received(session.clientId, id);
      }
      store.sessionSaved(session, undefined);
    } else if (session.journal) {
      store.sessionEnded(session.clientId);
      session.journal = undefined;
    }
  }

  /** Start-up: a restored session waits offline for its client, its expiry and will timers counting on. */
  resumeOffline(session: Session, offlineSince: number, now: number): void {
    if (session.will) {
      const will = session.will;
      const remaining = Math.max(0, will.delaySeconds - (now - offlineSince) / 1000);
      if (remaining === 0) {
        session.will = undefined;
        this.publishWill(session, will);
        // The session's record still holds the will until a compaction succeeds: one that fails (a disk too full
        // for a new generation) or a crash before it would have every later start publish it again.
        if (session.journal) this.store?.sessionSaved(session, offlineSince);
      } else this.armWill(session, will, now + remaining * 1000);
    }
    if (session.expiryInterval !== NEVER_EXPIRES) {
      this.armExpiry(session, now + Math.max(0, session.expiryInterval * 1000 - (now - offlineSince)));
    }
  }

  /** Replays the store into memory; returns what was restored. */
  restore(apply: () => void): void {
    this.restoring = true;
    try {
      apply();
    } finally {
      this.restoring = false;
    }
  }

  /** After CONNACK: redeliver what is in flight, drain the queue. */
  onSessionOpened(connection: Connection, session: Session): void {
    this.stats.clientsConnected++;
    connection.countedAsConnected = true;
    this.stats.clientsMaximum = Math.max(this.stats.clientsMaximum, this.stats.clientsConnected);
    session.resume(connection, Date.now());
  }

  onConnectionClosed(connection: Connection): void {
    this.connections.delete(connection);
    if (connection.identity) this.authorizer.invalidate(connection.clientId);
    const session = connection.session;
    const wasConnected = session !== undefined && connection.identity !== undefined;
    // Only what was counted is taken off: a connect that failed between its session and its CONNACK (an internal
    // error) took `$SYS/broker/clients/connected` below zero, one each time.
    if (connection.countedAsConnected) this.stats.clientsConnected--;
    if (wasConnected) this.recordDisconnect(connection);
    if (!session || session.connection !== connection) return;
    this.detachConnection(session, !connection.disconnectedCleanly);
  }

  /** The connection left: wills, shared-subscription redelivery and the session's expiry. */
  private detachConnection(session: Session, publishWill: boolean): void {
    session.detach();
    this.redistributeShared(session);
    if (!publishWill && session.will) session.will = undefined;
    if (session.will) this.scheduleWill(session);
    if (session.journal && session.expiryInterval > 0) this.store?.sessionSaved(session, session.offlineSince);
    if (this.stopping) return;
    if (session.expiryInterval === 0) {
      this.endSession(session);
      return;
    }
    if (session.expiryInterval !== NEVER_EXPIRES) this.armExpiry(session, Date.now() + session.expiryInterval * 1000);
  }

  /** Ends the session at `expiresAt`, however far off (`setTimeoutAt`). */
  private armExpiry(session: Session, expiresAt: number): void {
    session.expiresAt = expiresAt;
    setTimeoutAt(
      expiresAt,
      () => this.endSession(session),
      (timer) => (session.expiryTimer = timer),
    );
  }

  /**
   * Publishes the will at `dueAt`, however far off, unless the session has dropped it by then. The offline session
   * is then saved without it: the record written when the client went away still holds the will, and a broker
   * that crashed before its next compaction would publish it again after the restart.
   */
  private armWill(session: Session, will: PendingWill, dueAt: number): void {
    setTimeoutAt(
      dueAt,
      () => {
        if (session.will !== will) return;
        session.will = undefined;
        this.publishWill(session, will);
        if (session.journal && !session.connected) this.store?.sessionSaved(session, session.offlineSince);
      },
      (timer) => (will.timer = timer),
    );
  }

  private cancelExpiry(session: Session): void {
    if (session.expiryTimer) clearTimeout(session.expiryTimer);
    session.expiryTimer = undefined;
    session.expiresAt = undefined;
  }

  /** The session is gone: subscriptions removed; [MQTT-3.1.3-9] a will still waiting for its delay is sent now. */
  endSession(session: Session): void {
    this.cancelExpiry(session);
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
    if (session.journal) {
      this.store?.sessionEnded(session.clientId);
      session.journal = undefined;
    }
    const subscriptions = session.subscriptionsIfAny;
    if (subscriptions !== undefined) {
      for (const subscription of subscriptions.values()) this.tree.remove(subscription);
      this.redistributeShared(session);
      subscriptions.clear();
    }
    const will = session.will;
    if (will) {
      if (will.timer) clearTimeout(will.timer);
      session.will = undefined;
      this.publishWill(session, will);
    }
  }

  private scheduleWill(session: Session): void {
    const will = session.will!;
    const delay = Math.min(will.delaySeconds, session.expiryInterval);
    if (delay === 0) {
      session.will = undefined;
      this.publishWill(session, will);
      return;
    }
    this.armWill(session, will, Date.now() + delay * 1000);
  }

  /**
   * Every will is checked against the policy in force when it is published, with the identity it was authorized
   * for at CONNECT (kept in the store across restarts): the policy may have changed during the will delay or while
   * the broker was down.
   */
  private publishWill(session: Session, will: PendingWill): void {
    if (this.willsAwaitingPolicy) {
      // Restored wills can fall due while the store is replayed, before any policy is loaded.
      this.willsAwaitingPolicy.push({ session, will });
      return;
    }
    const message =
      will.expirySeconds !== undefined
        ? { ...will.message, expiresAt: Date.now() + will.expirySeconds * 1000 }
        : will.message;
    const who = will.authorizedFor;
    const send = (decision: AuthzDecision): void => {
      if (!decision.allowed) {
        this.recordWillWithheld(session.clientId, message, who, decision);
        return;
      }
      this.log.info({ clientId: session.clientId, topic: message.topic }, 'publishing will message');
      this.publish(message);
    };
    // Fail closed: without the identity there is nothing to check the current policy with.
    if (!who) return send(RESTORED_WILL_WITHOUT_IDENTITY);
    // Only a will restored from an older store can be on $SYS: CONNECT refuses one now.
    if (isSysTopic(message.topic)) return send(SYS_PUBLISH_REFUSED);
    const request: AccessRequest = {
      identity: who.identity,
      listener: who.listener,
      peerAddress: who.peerAddress,
      action: 'publish',
      topic: message.topic,
      qos: message.qos,
      retain: message.retain,
      sharedGroup: undefined,
    };
    let decision: AuthzDecision | Promise<AuthzDecision>;
    try {
      decision = this.authorizer.check(request);
    } catch {
      decision = { allowed: false, reason: 'authorization source failed (fail closed)' };
    }
    if (decision instanceof Promise)
      decision.then(send, () => send({ allowed: false, reason: 'authorization source failed (fail closed)' }));
    else send(decision);
  }

  private recordWillWithheld(
    clientId: string,
    message: Message,
    who: PendingWill['authorizedFor'],
    decision: AuthzDecision,
  ): void {
    this.stats.willDenied++;
    this.audit.record({
      event: { action: 'authz.will_denied', outcome: 'failure', reason: decision.reason, code: 'notAuthorized' },
      user: who?.identity.username !== undefined ? { name: who.identity.username } : undefined,
      client: who ? { ip: who.peerAddress } : undefined,
      mqtt: {
        client_id: clientId,
        listener: who?.listener,
        qos: message.qos,
        retain: message.retain,
        topic: message.topic,
        username: who?.claimedUsername,
      },
      authz: authzFields('publish', decision),
    });
    this.log.info(
      { clientId, topic: message.topic, rule: decision.rule?.name, reason: decision.reason },
      'will not published: not allowed by the current policy',
    );
  }

  /**
   * The policy is loaded (`BulwarkServer.start`): wills that fell due while the store was replayed are checked and
   * published now, and later ones at once.
   */
  authorizationReady(): void {
    const held = this.willsAwaitingPolicy;
    this.willsAwaitingPolicy = undefined;
    for (const { session, will } of held ?? []) this.publishWill(session, will);
  }

  /**
   * A resumed session is checked against the current policy with the new connection's identity before anything is
   * sent: subscriptions no longer allowed are removed (the policy may have changed while it was offline, or
   * another identity now uses the client id), and so is what is waiting for the client (`recheckWaiting`).
   */
  async recheckResumedSession(connection: Connection, session: Session): Promise<void> {
    const subscriptions = [...session.subscriptions.values()];
    const decisions = await Promise.all(
      subscriptions.map((s) => this.authorizeSubscribe(connection, s.filter, s.qos, s.shareGroup)),
    );
    const revoked = this.revokeRefused(connection, subscriptions, decisions);
    // Sent before the session was left, unacknowledged: they go out again on this connection, so they are checked.
    const resent = [...session.inflight.values()].filter((o) => o.state === 'publish');
    await this.recheckWaiting(connection, session, [...session.queue, ...resent], revoked);
  }

  /** Removes the subscriptions whose decision refused them (`authz.subscription_revoked`); true if any was. */
  private revokeRefused(
    connection: Connection,
    subscriptions: readonly Subscription[],
    decisions: readonly AuthzDecision[],
  ): boolean {
    const session = connection.session;
    let revoked = false;
    decisions.forEach((decision, i) => {
      const subscription = subscriptions[i]!;
      if (decision.allowed || !session || session.subscriptions.get(subscription.key) !== subscription) return;
      this.removeSubscription(subscription);
      this.recordAuthz(
        'authz.subscription_revoked',
        'subscribe',
        connection,
        subscription.key,
        subscription.qos,
        undefined,
        decision,
      );
      revoked = true;
    });
    return revoked;
  }

  /**
   * After the subscriptions were checked again (a resume, a policy change, a re-authentication), so is what waits
   * for the client: a message that only a revoked subscription brought is dropped, and with
   * `check_receive_on_delivery` each one left must pass its own `receive` check (`authz.receive_denied`) with the
   * identity the connection has now. Without this, a tightened policy would still deliver what was queued before it.
   */
  private recheckWaiting(
    connection: Connection,
    session: Session,
    waiting: readonly Outbound[],
    revoked: boolean,
  ): Promise<void> | void {
    if (revoked) {
      const remaining = [...session.subscriptions.values()];
      const orphans = waiting.filter((out) => !remaining.some((s) => topicMatches(s.filter, out.message.topic)));
      if (orphans.length > 0) {
        session.discard(orphans);
        const dropped = new Set(orphans);
        waiting = waiting.filter((out) => !dropped.has(out));
      }
    }
    const identity = connection.identity;
    if (!this.checkReceive || waiting.length === 0 || !identity) return;
    const decisions = waiting.map((o) =>
      this.authorize(identity, connection, 'receive', o.message.topic, o.qos, o.retain, o.shareGroup),
    );
    const apply = (settled: readonly AuthzDecision[]): void => {
      const refused = waiting.filter((_, i) => !settled[i]!.allowed);
      if (refused.length === 0) return;
      const dropped = new Set(session.discard(refused));
      waiting.forEach((out, i) => {
        if (dropped.has(out)) this.recordReceiveDenied(connection, out.message.topic, out.qos, out.retain, settled[i]!);
      });
    };
    if (!decisions.some((d) => d instanceof Promise)) return apply(decisions as AuthzDecision[]);
    return Promise.all(decisions).then(apply);
  }

  /** Messages that came through shared subscriptions go to another member of the group. */
  private redistributeShared(session: Session): void {
    const subscriptions = session.subscriptionsIfAny;
    if (subscriptions === undefined) return;
    for (const subscription of subscriptions.values()) {
      if (subscription.shareGroup === undefined) continue;
      const taken = session.takeShared(subscription.shareGroup, subscription.filter);
      if (taken.length === 0) continue;
      const group = this.findGroup(subscription);
      for (const out of taken) {
        const member = group?.pick(subscription);
        if (!member || member.session === session) {
          session.deliver(out);
          continue;
        }
        const moved = this.outboundFor(member, out.message, Math.min(out.message.qos, member.qos) as QoS, undefined);
        if (this.checkReceive) this.deliverIfReceivable(member, moved);
        else member.session.deliver(moved);
      }
    }
  }

  private findGroup(subscription: Subscription): SharedGroup | undefined {
    return this.tree.sharedGroup(subscription.filter, subscription.shareGroup!);
  }

  // --- subscriptions -----------------------------------------------------------------------------------

  /** Adds or replaces ([MQTT-3.8.4-3]) a subscription; true when it is new. */
  addSubscription(subscription: Subscription): boolean {
    const session = subscription.session;
    const existing = session.subscriptions.get(subscription.key);
    if (existing) this.tree.remove(existing);
    session.subscriptions.set(subscription.key, subscription);
    this.tree.add(subscription);
    if (session.journal && !this.restoring) this.store?.sessionSaved(session, session.offlineSince);
    return existing === undefined;
  }

  removeSubscription(subscription: Subscription): void {
    const session = subscription.session;
    if (session.subscriptions.get(subscription.key) === subscription) session.subscriptions.delete(subscription.key);
    this.tree.remove(subscription);
    if (session.journal) this.store?.sessionSaved(session, session.offlineSince);
  }

  // --- routing -----------------------------------------------------------------------------------------

  /** Routes an authorized message to every matching subscription, and stores it if retained. */
  publish(message: Message): void {
    if (message.retain) this.retained.set(message);
    const stamp = ++this.routeStamp;
    const targets = this.routeTargets;
    const merges = this.routeMerges;
    const groups = this.routeGroups;
    this.routeMessage = message;
    this.tree.match(message.topic, this.onRouteMatch, this.onRouteGroup);
    this.routeMessage = undefined;
    const checkReceive = this.checkReceive;
    const targetCount = this.routeTargetCount;
    const groupCount = this.routeGroupCount;
    for (let i = 0; i < targetCount; i++) {
      const subscription = targets[i]!;
      const merged = merges.size > 0 ? merges.get(subscription.session) : undefined;
      const qos = (merged ? Math.min(message.qos, merged.qos) : Math.min(message.qos, subscription.qos)) as QoS;
      const out = this.outboundFor(subscription, message, qos, merged);
      if (checkReceive) this.deliverIfReceivable(subscription, out);
      else subscription.session.deliver(out);
    }
    for (let i = 0; i < groupCount; i++) {
      const member = groups[i]!.pick();
      if (!member) continue;
      const out = this.outboundFor(member, message, Math.min(message.qos, member.qos) as QoS, undefined);
      if (checkReceive) this.deliverIfReceivable(member, out);
      else member.session.deliver(out);
    }
    // Cleared, not truncated: the arrays keep their room, and hold no session past the message.
    for (let i = 0; i < targetCount; i++) targets[i] = undefined;
    for (let i = 0; i < groupCount; i++) groups[i] = undefined;
    this.routeTargetCount = 0;
    this.routeGroupCount = 0;
    if (merges.size > 0) merges.clear();
    void stamp;
  }

  private collectTarget(subscription: Subscription): void {
    const message = this.routeMessage!;
    const session = subscription.session;
    // [MQTT-3.8.3-3] No Local: not sent back to the publisher's own session.
    if (subscription.noLocal && session.clientId === message.publisherId) return;
    if (session.routeStamp !== this.routeStamp) {
      session.routeStamp = this.routeStamp;
      session.routeIndex = this.routeTargetCount;
      this.routeTargets[this.routeTargetCount++] = subscription;
      return;
    }
    let merged = this.routeMerges.get(session);
    if (!merged) {
      const first = this.routeTargets[session.routeIndex]!;
      merged = {
        qos: first.qos,
        retainAsPublished: first.retainAsPublished,
        subscriptionIds: first.subscriptionId !== undefined ? [first.subscriptionId] : [],
      };
      this.routeMerges.set(session, merged);
    }
    if (subscription.qos > merged.qos) merged.qos = subscription.qos;
    merged.retainAsPublished ||= subscription.retainAsPublished;
    if (subscription.subscriptionId !== undefined) merged.subscriptionIds.push(subscription.subscriptionId);
  }

  private outboundFor(
    subscription: Subscription,
    message: Message,
    qos: QoS,
    merged: MergedDelivery | undefined,
  ): Outbound {
    const retainAsPublished = merged ? merged.retainAsPublished : subscription.retainAsPublished;
    const ids = merged
      ? merged.subscriptionIds
      : subscription.subscriptionId !== undefined
        ? [subscription.subscriptionId]
        : undefined;
    return {
      message,
      qos,
      // [MQTT-3.3.1-12] without Retain As Published the RETAIN flag is cleared on normal delivery.
      retain: retainAsPublished ? message.retain : false,
      subscriptionIds: subscription.session.protocolVersion === 5 && ids && ids.length > 0 ? ids : undefined,
      shareGroup: subscription.shareGroup,
      shareFilter: subscription.shareGroup !== undefined ? subscription.filter : undefined,
      packetId: 0,
      state: 'publish',
    };
  }

  /** Retained messages for a new subscription, each checked against `receive` rules, sent with RETAIN 1. */
  deliverRetained(connection: Connection, subscription: Subscription): void {
    const now = Date.now();
    for (const message of this.retained.match(subscription.filter, now)) {
      if (isExpired(message, now)) continue;
      const qos = Math.min(message.qos, subscription.qos) as QoS;
      const out: Outbound = {
        message,
        qos,
        retain: true,
        subscriptionIds:
          connection.isV5 && subscription.subscriptionId !== undefined ? [subscription.subscriptionId] : undefined,
        shareGroup: undefined,
        shareFilter: undefined,
        packetId: 0,
        state: 'publish',
      };
      const decision = this.authorize(connection.identity!, connection, 'receive', message.topic, qos, true, undefined);
      const deliver = (d: AuthzDecision): void => {
        if (d.allowed) subscription.session.deliver(out);
        // Withheld like any other delivery the policy refuses: one action for every message a subscriber may not read.
        else this.recordReceiveDenied(connection, message.topic, qos, true, d);
      };
      if (decision instanceof Promise) decision.then(deliver, () => undefined);
      else deliver(decision);
    }
  }

  /** Which allowed decisions are recorded (audit `record_publish_allowed`, `record_subscribe_allowed`). */
  allowedAudit: { publish(): boolean; subscribe(): boolean } = { publish: () => false, subscribe: () => false };
  /** Audit `include_payload`: allowed and denied publish records carry the payload (base64). */
  auditPayloads = false;

  /** Disconnects every live client a new ban matches, on every dimension (not only the client id). */
  disconnectBanned(matches: (client: GuardClient) => boolean, reason: string): void {
    for (const connection of this.connections) {
      const identity = connection.identity;
      if (connection.state !== 'connected' || !connection.attempt || !identity) continue;
      // Matched by who the client proved to be, not by the User Name it wrote in its CONNECT.
      if (!matches(verifiedGuardClient(connection.attempt, identity))) continue;
      this.log.info({ clientId: connection.clientId, reason }, 'disconnecting client: banned');
      connection.close('administrativeAction', `banned: ${reason}`);
    }
  }

  recordPublishAllowed(
    connection: Connection,
    topic: string,
    qos: number,
    retain: boolean,
    payload: Buffer,
    decision: AuthzDecision,
  ): void {
    const record = topicDecisionEvent(connection, 'authz.publish_allowed', 'publish', topic, qos, retain, decision);
    if (this.auditPayloads) record.mqtt.payload = payload.toString('base64');
    this.audit.record(record);
  }

  recordSubscribeAllowed(connection: Connection, filter: string, qos: number, decision: AuthzDecision): void {
    this.audit.record(
      topicDecisionEvent(connection, 'authz.subscribe_allowed', 'subscribe', filter, qos, undefined, decision),
    );
  }

  /** Whether live deliveries pass `receive` rules too (config `check_receive_on_delivery`). */
  checkReceive = true;

  /** Bumped by every policy swap or source change: receive proofs worked out before it no longer count. */
  private authzGeneration = 0;

  /**
   * A delivery that may not reach its client is dropped and audited (`authz.receive_denied`). A session without a
   * connection queues it unchecked: the queue is checked with the identity that resumes the session.
   */
  private deliverIfReceivable(subscription: Subscription, out: Outbound): void {
    const session = subscription.session;
    const connection = session.connection as Connection | undefined;
    const identity = connection?.identity;
    const backlog = session.receiveBacklog;
    if (backlog !== undefined && backlog.pending >= this.limits.max_queued_messages) {
      // The backlog is bounded like the session's queue: past it the message is dropped as a full queue drops it.
      this.sessionEvents.onQueueOverflow(session, out);
      return;
    }
    if (!connection || !identity || this.receivesWholeFilter(subscription, connection, identity)) {
      if (backlog === undefined) session.deliver(out);
      else this.deliverAfterBacklog(session, backlog, out, undefined, connection);
      return;
    }
    if (backlog !== undefined) {
      const check = (): AuthzDecision | Promise<AuthzDecision> =>
        this.authorizeReceive(identity, connection, out, subscription);
      this.deliverAfterBacklog(session, backlog, out, check, connection);
      return;
    }
    // Asked directly, not through a closure like the backlog's: one for every delivery was ~80 bytes of garbage.
    const decision = this.authorizeReceive(identity, connection, out, subscription);
    if (!(decision instanceof Promise)) {
      this.deliverIfAllowed(session, out, decision, connection);
      return;
    }
    this.deliverAfterBacklog(session, this.openBacklog(session), out, () => decision, connection);
  }

  private authorizeReceive(
    identity: Identity,
    connection: Connection,
    out: Outbound,
    subscription: Subscription,
  ): AuthzDecision | Promise<AuthzDecision> {
    const message = out.message;
    return this.authorize(identity, connection, 'receive', message.topic, out.qos, out.retain, subscription.shareGroup);
  }

  private deliverIfAllowed(session: Session, out: Outbound, decision: AuthzDecision, connection: Connection): void {
    if (decision.allowed) session.deliver(out);
    else this.recordReceiveDenied(connection, out.message.topic, out.qos, out.retain, decision);
  }

  private openBacklog(session: Session): NonNullable<Session['receiveBacklog']> {
    const backlog = { pending: 0, tail: Promise.resolve() };
    session.receiveBacklog = backlog;
    return backlog;
  }

  /**
   * An asynchronous check (a SQL cache miss) must not let a later message overtake an earlier one ([MQTT-4.6.0-5]):
   * while any check of this session is waiting, every delivery to it waits its turn behind them, and its own check
   * is asked only then, so one session never has more than one query in flight (a burst of deliveries would
   * otherwise be a burst of queries, and a full source pool refuses, failing closed).
   */
  private deliverAfterBacklog(
    session: Session,
    backlog: NonNullable<Session['receiveBacklog']>,
    out: Outbound,
    check: (() => AuthzDecision | Promise<AuthzDecision>) | undefined,
    connection: Connection | undefined,
  ): void {
    backlog.pending++;
    backlog.tail = backlog.tail
      .then(() => check?.())
      .then((settled) => {
        backlog.pending--;
        if (backlog.pending === 0 && session.receiveBacklog === backlog) session.receiveBacklog = undefined;
        if (settled === undefined || connection === undefined) session.deliver(out);
        else this.deliverIfAllowed(session, out, settled, connection);
      })
      .catch((error: unknown) => {
        this.log.error({ err: error, clientId: session.clientId }, 'delivery after a receive check failed');
      });
  }

  /**
   * Whether the policy lets this identity receive every topic the subscription's filter matches, so its deliveries
   * need no check of their own (with the shipped local policy, every subscription). Worked out once per identity
   * and policy generation; a source that cannot prove it (SQL rows, JWT claims) leaves every delivery checked.
   */
  private receivesWholeFilter(subscription: Subscription, connection: Connection, identity: Identity): boolean {
    const proof = subscription.receiveProof;
    if (proof !== undefined && proof.identity === identity && proof.generation === this.authzGeneration) {
      return proof.proven;
    }
    let proven = false;
    try {
      proven =
        this.authorizer.receivesWholeFilter?.({
          identity,
          listener: connection.listener.name,
          peerAddress: connection.peer.address,
          action: 'receive',
          topic: subscription.filter,
          qos: subscription.qos,
          retain: false,
          sharedGroup: subscription.shareGroup,
        }) === true;
    } catch (error) {
      this.log.error({ err: error, clientId: connection.clientId }, 'receive proof failed: checking each delivery');
    }
    subscription.receiveProof = { identity, generation: this.authzGeneration, proven };
    return proven;
  }

  // --- authorization -----------------------------------------------------------------------------------

  /**
   * After a policy swap or source change (`Authorizer.onChange`): every connected client is asked `connect` again,
   * and one no longer allowed is disconnected (`authz.connection_revoked`, then MQTT 5 DISCONNECT 0x87; 3.1.1 has
   * no server DISCONNECT, so the network connection is closed). For clients still allowed, every live subscription
   * is checked again; those no longer allowed stop receiving at once and are removed (MQTT has no server-initiated
   * unsubscribe, so the client is not told). Synchronous answers apply before this returns; asynchronous ones
   * (SQL misses) when they arrive, provided the connection still has the identity they were asked for.
   *
   * A client whose CONNECT is being decided (authenticated, CONNACK not yet sent) was judged by the previous
   * policy: it is re-checked the same way once its CONNACK is out (`settleConnect`).
   */
  reevaluateAuthorization(): void {
    this.authzGeneration++;
    for (const connection of this.connections) {
      if (connection.state === 'authenticating' && connection.identity) this.connectRecheck.add(connection);
      else this.reevaluateConnection(connection);
    }
  }

  /** Connections that were mid-CONNECT during a policy change. */
  private readonly connectRecheck = new WeakSet<Connection>();

  /** After the CONNACK: applies a policy change that happened while this CONNECT was being decided. */
  settleConnect(connection: Connection): void {
    if (!this.connectRecheck.delete(connection)) return;
    this.reevaluateConnection(connection);
  }

  private reevaluateConnection(connection: Connection): void {
    const identity = connection.identity;
    if (connection.state !== 'connected' || !connection.session || !identity) return;
    const decision = this.authorizeConnect(connection);
    const apply = (d: AuthzDecision): void => {
      if (connection.state !== 'connected' || connection.identity !== identity) return;
      if (!d.allowed) this.revokeConnection(connection, d);
      else this.reevaluateSubscriptionsOf(connection);
    };
    if (decision instanceof Promise) decision.then(apply, () => undefined);
    else apply(decision);
  }

  /**
   * Checks every live subscription of this connection again, with its current identity: after a policy change, and
   * after a re-authentication that may have changed the identity's groups or attributes. Those no longer allowed
   * stop receiving at once and are removed (`authz.subscription_revoked`).
   */
  reevaluateSubscriptionsOf(connection: Connection): void {
    const session = connection.session;
    const identity = connection.identity;
    if (connection.state !== 'connected' || !session || !identity) return;
    const subscriptions = [...session.subscriptions.values()];
    const decisions = subscriptions.map((s) => this.authorizeSubscribe(connection, s.filter, s.qos, s.shareGroup));
    const apply = (settled: readonly AuthzDecision[]): void => {
      if (connection.state !== 'connected' || connection.identity !== identity) return;
      const revoked = this.revokeRefused(connection, subscriptions, settled);
      // In flight means already sent: only the queue can still be held back.
      void this.recheckWaiting(connection, session, [...session.queue], revoked);
    };
    if (!decisions.some((d) => d instanceof Promise)) apply(decisions as AuthzDecision[]);
    else Promise.all(decisions).then(apply, () => undefined);
  }

  /**
   * May this connection's identity be connected? Asked after authentication at CONNECT, after every policy swap
   * or source change, and after a successful re-authentication. Synchronous for file rules and cache hits.
   */
  authorizeConnect(connection: Connection): AuthzDecision | Promise<AuthzDecision> {
    return this.authorize(connection.identity!, connection, 'connect', '', 0, false, undefined);
  }

  /**
   * A connected client the policy no longer allows: recorded (`authz.connection_revoked`, naming the deciding rule),
   * then told DISCONNECT 0x87 (MQTT 5) and closed. Its will follows the usual rule for a connection the server ends:
   * it is published only if the current policy allows that publish for the identity.
   */
  revokeConnection(connection: Connection, decision: AuthzDecision): void {
    if (connection.state === 'closed') return;
    this.stats.connectionsRevoked++;
    // 3.1.1 has no server DISCONNECT, so no reason code reaches the client.
    const rule = this.recordConnectDecision(
      'authz.connection_revoked',
      connection,
      decision,
      connection.isV5 ? ReasonCode.notAuthorized : undefined,
    );
    this.log.info(
      { clientId: connection.clientId, rule, reason: decision.reason },
      'disconnecting client: connection no longer allowed by the authorization policy',
    );
    connection.close('notAuthorized', 'connection no longer allowed by the authorization policy');
  }

  authorizePublish(
    connection: Connection,
    topic: string,
    qos: QoS,
    retain: boolean,
  ): AuthzDecision | Promise<AuthzDecision> {
    // A client PUBLISH and a will at CONNECT both come here; the policy is not asked, so no rule can lift it.
    if (isSysTopic(topic)) return SYS_PUBLISH_REFUSED;
    return this.authorize(connection.identity!, connection, 'publish', topic, qos, retain, undefined);
  }

  authorizeSubscribe(
    connection: Connection,
    filter: string,
    qos: QoS,
    shareGroup: string | undefined,
  ): AuthzDecision | Promise<AuthzDecision> {
    return this.authorize(connection.identity!, connection, 'subscribe', filter, qos, false, shareGroup);
  }

  private authorize(
    identity: Identity,
    connection: Connection,
    action: AccessRequest['action'],
    topic: string,
    qos: QoS,
    retain: boolean,
    sharedGroup: string | undefined,
  ): AuthzDecision | Promise<AuthzDecision> {
    const listener = connection.listener.name;
    const peerAddress = connection.peer.address;
    try {
      if (this.authorizer.cached) {
        let probe = this.cacheProbe;
        if (probe === undefined) {
          probe = { identity, listener, peerAddress, action, topic, qos, retain, sharedGroup };
          this.cacheProbe = probe;
        } else {
          probe.identity = identity;
          probe.listener = listener;
          probe.peerAddress = peerAddress;
          probe.action = action;
          probe.topic = topic;
          probe.qos = qos;
          probe.retain = retain;
          probe.sharedGroup = sharedGroup;
        }
        const hit = this.authorizer.cached(probe);
        if (hit !== undefined) return hit;
      }
      const request: AccessRequest = { identity, listener, peerAddress, action, topic, qos, retain, sharedGroup };
      const decision = this.authorizer.check(request);
      if (decision instanceof Promise) {
        return decision.catch((error: unknown) => {
          this.log.error({ err: error, clientId: connection.clientId }, 'authorization failed: denying (fail closed)');
          return { allowed: false, reason: 'authorization source failed (fail closed)' };
        });
      }
      return decision;
    } catch (error) {
      this.log.error({ err: error, clientId: connection.clientId }, 'authorization failed: denying (fail closed)');
      return { allowed: false, reason: 'authorization source failed (fail closed)' };
    }
  }

  // --- audit -------------------------------------------------------------------------------------------

  /**
   * Records a refusal a client can repeat before proving anything (audit/refusal-limiter.ts), within the bound of
   * `audit.refusals`. True: it was recorded; log it. False: it was counted for its key's summary record, and its
   * log line is left out too, so a flood of attempts is bounded in the log as in the audit log.
   */
  recordRefusal(event: AuditEvent): boolean {
    if (!this.refusals.admit(event)) return false;
    this.audit.record(event);
    return true;
  }

  recordAuthentication(connection: Connection, attempt: ConnectAttempt, result: ChainResult): void {
    if (result.kind === 'continue') return;
    // A deny is counted where the CONNECT is refused (`refuseConnect`), which also sees the guard's refusals.
    if (result.kind === 'allow') this.connectOutcomes.allowed(result.identity.authenticator);
    this.audit.record(authnDecisionEvent(attempt, result));
    this.logAuthentication(connection, attempt, result);
  }

  /**
   * `authn.denied` for a CONNECT the broker refused before any authenticator ran (an invalid client id, a protocol
   * name that does not match its level, an unsupported authentication method): bounded by `recordRefusal`, as a
   * client can send such a CONNECT in a loop. Decisions of the authentication chain are never bounded.
   */
  recordPreAuthenticationRefusal(
    connection: Connection,
    attempt: ConnectAttempt,
    result: Extract<ChainResult, { kind: 'deny' }>,
  ): void {
    if (this.recordRefusal(authnDecisionEvent(attempt, result))) this.logAuthentication(connection, attempt, result);
    else this.stats.connectRefused++;
  }

  private logAuthentication(
    connection: Connection,
    attempt: ConnectAttempt,
    result: Exclude<ChainResult, { kind: 'continue' }>,
  ): void {
    // One of these per connect: at `warn` (as the benchmark runs) not even the log object is built.
    const logging = this.log.isLevelEnabled('info');
    if (result.kind === 'allow') {
      if (logging)
        this.log.info(
          {
            clientId: connection.clientId,
            username: recordableUsername(attempt),
            peer: connection.peerLabel,
            listener: connection.listener.name,
            by: result.identity.authenticator,
          },
          'client connected',
        );
      return;
    }
    this.stats.connectRefused++;
    if (!logging) return;
    this.log.info(
      {
        clientId: connection.clientId,
        username: recordableUsername(attempt),
        peer: connection.peerLabel,
        reason: result.reason,
        detail: result.detail,
      },
      'connection refused',
    );
  }

  recordReauthentication(connection: Connection, result: ChainResult): void {
    if (result.kind === 'continue' || !connection.attempt) return;
    // A refused re-authentication is still about the identity this connection was verified as.
    this.audit.record(authnDecisionEvent(connection.attempt, result, true, connection.identity));
  }

  private recordDisconnect(connection: Connection): void {
    this.audit.record(
      connectionEvent(connection, {
        action: 'client.disconnected',
        outcome: 'success',
        reason: connection.closeReason ?? 'connection closed',
      }),
    );
    if (!this.log.isLevelEnabled('info')) return;
    this.log.info(
      {
        clientId: connection.clientId,
        peer: connection.peerLabel,
        reason: connection.closeReason ?? 'connection closed',
      },
      'client disconnected',
    );
  }

  /** A denied topic decision; `reasonCode` is what the client was sent about it, if anything (see topicDecisionEvent). */
  private recordAuthz(
    action: AuditActionName,
    access: TopicAction,
    connection: Connection,
    topic: string,
    qos: number,
    retain: boolean | undefined,
    decision: AuthzDecision,
    reasonCode?: number,
  ): void {
    this.audit.record(topicDecisionEvent(connection, action, access, topic, qos, retain, decision, reasonCode));
    this.log.info(
      { clientId: connection.clientId, action, topic, rule: decision.rule?.location, reason: decision.reason },
      'authorization denied',
    );
  }

  recordPublishDenied(
    connection: Connection,
    topic: string,
    qos: number,
    retain: boolean,
    decision: AuthzDecision,
    reasonCode: number | undefined,
  ): void {
    this.stats.publishDenied++;
    this.recordAuthz('authz.publish_denied', 'publish', connection, topic, qos, retain, decision, reasonCode);
  }

  /** A delivery (live, queued or retained) the policy's `receive` rules withheld. */
  private recordReceiveDenied(
    connection: Connection,
    topic: string,
    qos: number,
    retain: boolean,
    decision: AuthzDecision,
  ): void {
    this.stats.receiveDenied++;
    this.recordAuthz('authz.receive_denied', 'receive', connection, topic, qos, retain, decision);
  }

  /** `returnCode`: the SUBACK code sent for the filter (0x87 on MQTT 5, 0x80 on 3.1.1). */
  recordSubscribeDenied(
    connection: Connection,
    filter: string,
    qos: number,
    decision: AuthzDecision,
    returnCode: number,
  ): void {
    this.stats.subscribeDenied++;
    this.recordAuthz('authz.subscribe_denied', 'subscribe', connection, filter, qos, undefined, decision, returnCode);
  }

  /** A will refused at CONNECT, recorded with the QoS and retain flag it was asked for (a rule may decide by them). */
  recordWillDenied(
    connection: Connection,
    will: Pick<Message, 'topic' | 'qos' | 'retain'>,
    decision: AuthzDecision,
  ): void {
    this.stats.willDenied++;
    // [MQTT-3.2.2.2] the CONNECT is refused: 0x87 Not authorized, 3.1.1 return code 5.
    const reasonCode = connection.isV5 ? ReasonCode.notAuthorized : v3ConnackCode('notAuthorized');
    this.recordAuthz(
      'authz.will_denied',
      'publish',
      connection,
      will.topic,
      will.qos,
      will.retain,
      decision,
      reasonCode,
    );
  }

  /** A CONNECT refused because the policy does not allow the authenticated identity to connect. */
  recordConnectDenied(connection: Connection, decision: AuthzDecision): void {
    this.stats.connectDenied++;
    const rule = this.recordConnectDecision(
      'authz.connect_denied',
      connection,
      decision,
      connection.isV5 ? ReasonCode.notAuthorized : v3ConnackCode('notAuthorized'),
    );
    this.log.info(
      { clientId: connection.clientId, peer: connection.peerLabel, rule, reason: decision.reason },
      'connection refused: not allowed to connect by the authorization policy',
    );
  }

  /** The audit record of a `connect` refusal, at CONNECT or later; returns the deciding rule for the log line. */
  private recordConnectDecision(
    action: 'authz.connect_denied' | 'authz.connection_revoked',
    connection: Connection,
    decision: AuthzDecision,
    reasonCode: number | undefined,
  ): string | undefined {
    const record = connectionEvent(
      connection,
      { action, outcome: 'failure', reason: decision.reason, code: 'notAuthorized' },
      reasonCode,
    );
    const authz = authzFields('connect', decision);
    record.authz = authz;
    const tls = proxyReportedTlsFields(connection.tls);
    if (tls !== undefined) record.tls = tls;
    this.audit.record(record);
    return authz.rule;
  }

  // --- shutdown ----------------------------------------------------------------------------------------

  /** Graceful stop: [MQTT-3.14] v5 clients get DISCONNECT 0x8B; wills of connected clients are not sent. */
  async closeAllConnections(): Promise<void> {
    this.stopping = true;
    const closing: Promise<void>[] = [];
    for (const connection of this.connections) {
      closing.push(
        new Promise<void>((resolve) => {
          connection.socket.once('close', () => resolve());
          if (connection.session) connection.disconnectedCleanly = true;
          connection.close('serverShuttingDown', 'server shutting down');
          setTimeout(resolve, 3000).unref();
        }),
      );
    }
    await Promise.all(closing);
  }

  /** Sessions the store keeps (persistent ones): `$SYS/broker/store/sessions` and the metrics' `store_sessions`. */
  persistedSessionCount(): number {
    let persisted = 0;
    for (const session of this.sessions.values()) if (session.journal) persisted++;
    return persisted;
  }
}
