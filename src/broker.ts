import type { ByteStream } from './connection/byte-stream.js';
import type { ChainResult, ConnectAttempt, Identity, TlsPeerInfo } from '../authn/types.js';
import type { AuditSink } from '../audit/events.js';
import { authnDecisionEvent } from '../authn/decision-event.js';
import type { AccessRequest, AuthzDecision, Authorizer } from '../authz/types.js';
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
import type { SessionStore } from './persistence/store.js';

export interface BrokerOptions {
  config: BrokerConfig;
  log: Logger;
  authorizer: Authorizer;
  audit: AuditSink;
  guard?: ConnectGuard;
  store?: SessionStore;
}

const NEVER_EXPIRES = 0xffff_ffff;
const PASS: GuardVerdict = { kind: 'pass' };

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
  readonly sessions = new Map<string, Session>();
  readonly connections = new Set<Connection>();
  readonly tree = new SubscriptionTree();
  readonly retained: RetainedStore;
  readonly store: SessionStore | undefined;
  /** True while the store is being replayed: state changes are not journaled again. */
  private restoring = false;
  readonly log: Logger;
  readonly audit: AuditSink;
  authorizer: Authorizer;
  guard: ConnectGuard | undefined;
  private readonly sessionEvents: SessionEvents;
  private stopping = false;

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
  private readonly onRouteMatch = (s: Subscription): void => this.collectTarget(s);
  private readonly onRouteGroup = (g: SharedGroup): void => {
    this.routeGroups[this.routeGroupCount++] = g;
  };

  constructor(readonly options: BrokerOptions) {
    this.limits = options.config.limits;
    this.log = options.log;
    this.audit = options.audit;
    this.authorizer = options.authorizer;
    this.guard = options.guard;
    const store = options.store?.enabled ? options.store : undefined;
    this.store = store;
    this.retained = new RetainedStore(
      store
        ? (topic, message) => {
            // $SYS values are republished on every interval; journaling them would only grow the store.
            if (!this.restoring && !topic.startsWith('$SYS/')) store.retainedChanged(topic, message);
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
      // resumed session cancels a delayed will below.
      this.detachConnection(session, true);
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
      } else {
        will.timer = setTimeout(() => {
          if (session.will !== will) return;
          session.will = undefined;
          this.publishWill(session, will);
          if (session.journal && !session.connected) this.store?.sessionSaved(session, session.offlineSince);
        }, remaining * 1000);
        will.timer.unref();
      }
    }
    if (session.expiryInterval !== NEVER_EXPIRES) {
      const remainingMs = Math.max(0, session.expiryInterval * 1000 - (now - offlineSince));
      session.expiresAt = now + remainingMs;
      session.expiryTimer = setTimeout(() => this.endSession(session), Math.min(remainingMs, 2_147_000_000));
      session.expiryTimer.unref();
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
    this.stats.clientsMaximum = Math.max(this.stats.clientsMaximum, this.stats.clientsConnected);
    session.resume(connection, Date.now());
  }

  onConnectionClosed(connection: Connection): void {
    this.connections.delete(connection);
    if (connection.identity) this.authorizer.invalidate(connection.clientId);
    const session = connection.session;
    const wasConnected = session !== undefined && connection.identity !== undefined;
    if (wasConnected) {
      this.stats.clientsConnected--;
      this.recordDisconnect(connection);
    }
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
    if (session.expiryInterval !== NEVER_EXPIRES) {
      session.expiresAt = Date.now() + session.expiryInterval * 1000;
      session.expiryTimer = setTimeout(
        () => this.endSession(session),
        Math.min(session.expiryInterval * 1000, 2_147_000_000),
      );
      session.expiryTimer.unref();
    }
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
    for (const subscription of session.subscriptions.values()) this.tree.remove(subscription);
    this.redistributeShared(session);
    session.subscriptions.clear();
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
    will.timer = setTimeout(() => {
      if (session.will !== will) return;
      session.will = undefined;
      this.publishWill(session, will);
    }, delay * 1000);
    will.timer.unref();
  }

  private publishWill(session: Session, will: PendingWill): void {
    const message =
      will.expirySeconds !== undefined
        ? { ...will.message, expiresAt: Date.now() + will.expirySeconds * 1000 }
        : will.message;
    const who = will.authorizedFor;
    if (!who) {
      // Restored from the store: it was authorized at CONNECT and no identity survives a restart.
      this.log.info({ clientId: session.clientId, topic: message.topic }, 'publishing will message');
      this.publish(message);
      return;
    }
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
    const send = (decision: AuthzDecision): void => {
      if (!decision.allowed) {
        this.audit.record({
          event: { action: 'authz.will_denied', outcome: 'failure', reason: decision.reason, code: 'notAuthorized' },
          user: who.identity.username !== undefined ? { name: who.identity.username } : undefined,
          client: { ip: who.peerAddress },
          mqtt: { client_id: session.clientId, listener: who.listener, topic: message.topic, qos: message.qos },
          authz: authzFields(decision),
        });
        this.log.info(
          { clientId: session.clientId, topic: message.topic, reason: decision.reason },
          'will not published: no longer allowed',
        );
        return;
      }
      this.log.info({ clientId: session.clientId, topic: message.topic }, 'publishing will message');
      this.publish(message);
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

  /**
   * A resumed session is checked against the current policy with the new connection's identity before anything is
   * sent: subscriptions no longer allowed are removed (the policy may have changed while it was offline, or
   * another identity now uses the client id); with `check_receive_on_delivery`, queued messages are checked too.
   */
  async recheckResumedSession(connection: Connection, session: Session): Promise<void> {
    const subscriptions = [...session.subscriptions.values()];
    const decisions = await Promise.all(
      subscriptions.map((s) => this.authorizeSubscribe(connection, s.filter, s.qos, s.shareGroup)),
    );
    let revoked = false;
    decisions.forEach((decision, i) => {
      const subscription = subscriptions[i]!;
      if (decision.allowed || session.subscriptions.get(subscription.key) !== subscription) return;
      this.removeSubscription(subscription);
      this.recordAuthz('authz.subscription_revoked', connection, subscription.key, subscription.qos, decision);
      revoked = true;
    });
    const pending = [...session.queue, ...[...session.inflight.values()].filter((o) => o.state === 'publish')];
    if (revoked) {
      // Messages that only a revoked subscription brought are not delivered either.
      const remaining = [...session.subscriptions.values()];
      for (const out of pending) {
        if (!remaining.some((s) => topicMatches(s.filter, out.message.topic))) session.discard(out);
      }
    }
    if (!this.checkReceive) return;
    const receive = await Promise.all(
      pending.map((o) =>
        this.authorize(connection.identity!, connection, 'receive', o.message.topic, o.qos, o.retain, o.shareGroup),
      ),
    );
    receive.forEach((decision, i) => {
      if (decision.allowed) return;
      const out = pending[i]!;
      session.discard(out);
      this.recordAuthz('authz.receive_denied', connection, out.message.topic, out.qos, decision);
    });
  }

  /** Messages that came through shared subscriptions go to another member of the group. */
  private redistributeShared(session: Session): void {
    for (const subscription of session.subscriptions.values()) {
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
        member.session.deliver(
          this.outboundFor(member, out.message, Math.min(out.message.qos, member.qos) as QoS, undefined),
        );
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
        else this.recordAuthz('authz.retained_denied', connection, message.topic, qos, d);
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
    const record = topicDecisionEvent(connection, 'authz.publish_allowed', topic, qos, decision);
    record.mqtt.retain = retain;
    if (this.auditPayloads) record.mqtt.payload = payload.toString('base64');
    this.audit.record(record);
  }

  recordSubscribeAllowed(connection: Connection, filter: string, qos: number, decision: AuthzDecision): void {
    this.audit.record(topicDecisionEvent(connection, 'authz.subscribe_allowed', filter, qos, decision));
  }

  /** Whether live deliveries pass `receive` rules too (config `check_receive_on_delivery`). */
  checkReceive = false;

  private deliverIfReceivable(subscription: Subscription, out: Outbound): void {
    const connection = subscription.session.connection as Connection | undefined;
    const identity = connection?.identity;
    if (!connection || !identity) {
      subscription.session.deliver(out);
      return;
    }
    const decision = this.authorize(
      identity,
      connection,
      'receive',
      out.message.topic,
      out.qos,
      out.retain,
      subscription.shareGroup,
    );
    const deliver = (d: AuthzDecision): void => {
      if (d.allowed) subscription.session.deliver(out);
      else this.recordAuthz('authz.receive_denied', connection, out.message.topic, out.qos, d);
    };
    if (decision instanceof Promise) decision.then(deliver, () => undefined);
    else deliver(decision);
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
    if (connection.state !== 'connected' || !session || !connection.identity) return;
    for (const subscription of [...session.subscriptions.values()]) {
      const decision = this.authorizeSubscribe(
        connection,
        subscription.filter,
        subscription.qos,
        subscription.shareGroup,
      );
      const apply = (d: AuthzDecision): void => {
        if (d.allowed || session.subscriptions.get(subscription.key) !== subscription) return;
        this.removeSubscription(subscription);
        this.recordAuthz('authz.subscription_revoked', connection, subscription.key, subscription.qos, d);
      };
      if (decision instanceof Promise) decision.then(apply, () => undefined);
      else apply(decision);
    }
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
    const request: AccessRequest = {
      identity,
      listener: connection.listener.name,
      peerAddress: connection.peer.address,
      action,
      topic,
      qos,
      retain,
      sharedGroup,
    };
    try {
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

  recordAuthentication(connection: Connection, attempt: ConnectAttempt, result: ChainResult): void {
    if (result.kind === 'continue') return;
    this.audit.record(authnDecisionEvent(attempt, result));
    // One of these per connect: at `warn` (as the benchmark runs) not even the log object is built.
    const logging = this.log.isLevelEnabled('info');
    if (result.kind === 'allow') {
      if (logging)
        this.log.info(
          {
            clientId: connection.clientId,
            username: attempt.username,
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
        username: attempt.username,
        peer: connection.peerLabel,
        reason: result.reason,
        detail: result.detail,
      },
      'connection refused',
    );
  }

  recordReauthentication(connection: Connection, result: ChainResult): void {
    if (result.kind === 'continue' || !connection.attempt) return;
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

  private recordAuthz(
    action: string,
    connection: Connection,
    topic: string,
    qos: number,
    decision: AuthzDecision,
  ): void {
    this.audit.record(topicDecisionEvent(connection, action, topic, qos, decision));
    this.log.info(
      { clientId: connection.clientId, action, topic, rule: decision.rule?.location, reason: decision.reason },
      'authorization denied',
    );
  }

  recordPublishDenied(
    connection: Connection,
    topic: string,
    qos: number,
    _retain: boolean,
    decision: AuthzDecision,
  ): void {
    this.stats.publishDenied++;
    this.recordAuthz('authz.publish_denied', connection, topic, qos, decision);
  }

  recordSubscribeDenied(connection: Connection, filter: string, qos: number, decision: AuthzDecision): void {
    this.stats.subscribeDenied++;
    this.recordAuthz('authz.subscribe_denied', connection, filter, qos, decision);
  }

  recordWillDenied(connection: Connection, topic: string, decision: AuthzDecision): void {
    this.recordAuthz('authz.will_denied', connection, topic, 0, decision);
  }

  /** A CONNECT refused because the policy does not allow the authenticated identity to connect. */
  recordConnectDenied(connection: Connection, decision: AuthzDecision): void {
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
    const record = connectionEvent(connection, {
      action,
      outcome: 'failure',
      reason: decision.reason,
      code: 'notAuthorized',
    });
    if (reasonCode !== undefined) record.mqtt.reason_code = reasonCode;
    const authz = authzFields(decision);
    authz.action = 'connect';
    record.authz = authz;
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
}
