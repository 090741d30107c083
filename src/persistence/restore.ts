import type { Broker } from '../broker.js';
import { isExpired, type Message } from '../routing/message.js';
import type { Subscription } from '../routing/subscription.js';
import type { Outbound } from '../session/outbound.js';
import { isSysTopic } from '../sys/read-only.js';
import { messageFromRecord, willFromRecord, type MessageRecord, type StoreRecord } from './records.js';

interface SessionState {
  meta: Extract<StoreRecord, { t: 's' }>;
  outbound: Map<number, Extract<StoreRecord, { t: 'o' }>>;
  inboundQos2: Set<number>;
}

export interface RestoreSummary {
  sessions: number;
  queuedMessages: number;
  inflightMessages: number;
  retained: number;
  expiredSessions: number;
  expiredMessages: number;
  willsPending: number;
  /** Queued or in-flight messages whose body (an earlier `o` record with its number) was not in the journal. */
  missingMessages: number;
}

/**
 * Folds the journal into the final state: later records win, `e` removes a session with everything in it. Message
 * bodies are kept by number for the `o` records that refer to them.
 */
export function foldRecords(records: readonly StoreRecord[]): {
  sessions: Map<string, SessionState>;
  retained: Map<string, MessageRecord>;
  messages: Map<number, MessageRecord>;
} {
  const sessions = new Map<string, SessionState>();
  const retained = new Map<string, MessageRecord>();
  const messages = new Map<number, MessageRecord>();
  for (const r of records) {
    switch (r.t) {
      case 's': {
        const existing = sessions.get(r.id);
        if (existing) existing.meta = r;
        else sessions.set(r.id, { meta: r, outbound: new Map(), inboundQos2: new Set() });
        break;
      }
      case 'e':
        sessions.delete(r.id);
        break;
      case 'o':
        // The body stays known by its number after this entry is delivered: later entries may refer to it.
        if (r.mn !== undefined && r.m !== undefined) messages.set(r.mn, r.m);
        sessions.get(r.id)?.outbound.set(r.k, r);
        break;
      case 'u': {
        const o = sessions.get(r.id)?.outbound.get(r.k);
        if (o) {
          o.p = r.p;
          o.st = r.st;
        }
        break;
      }
      case 'd':
        sessions.get(r.id)?.outbound.delete(r.k);
        break;
      case 'i':
        sessions.get(r.id)?.inboundQos2.add(r.p);
        break;
      case 'j':
        sessions.get(r.id)?.inboundQos2.delete(r.p);
        break;
      case 'R':
        retained.set(r.m.t, r.m);
        break;
      case 'X':
        retained.delete(r.topic);
        break;
    }
  }
  return { sessions, retained, messages };
}

/**
 * Rebuilds sessions (offline), their subscriptions, queued and in-flight messages and incoming QoS 2 state, and
 * retained messages. Sessions whose expiry ran out while the broker was down end now (their wills are sent);
 * expired messages are dropped.
 */
export function restoreState(broker: Broker, records: readonly StoreRecord[], now: number): RestoreSummary {
  const { sessions, retained, messages } = foldRecords(records);
  // One Message per body, shared by every session it was queued for, as before the restart.
  const bodies = new Map<number, Message>();
  const body = (n: number): Message | undefined => {
    let message = bodies.get(n);
    if (message !== undefined) return message;
    const record = messages.get(n);
    if (record === undefined) return undefined;
    message = messageFromRecord(record);
    bodies.set(n, message);
    broker.store?.restoredMessage(message, n);
    return message;
  };
  const summary: RestoreSummary = {
    sessions: 0,
    queuedMessages: 0,
    inflightMessages: 0,
    retained: 0,
    expiredSessions: 0,
    expiredMessages: 0,
    willsPending: 0,
    missingMessages: 0,
  };
  for (const record of retained.values()) {
    // Older versions wrote $SYS values into snapshots; serving them would report the previous run.
    if (isSysTopic(record.t)) continue;
    const message = messageFromRecord(record);
    if (isExpired(message, now)) {
      summary.expiredMessages++;
      continue;
    }
    broker.retained.set(message);
    summary.retained++;
  }
  for (const state of sessions.values()) {
    const meta = state.meta;
    const offlineSince = meta.at ?? now;
    // The limit may have been lowered while the broker was down: it applies as it would at CONNECT.
    const expiryInterval = Math.min(meta.exp, broker.limits.max_session_expiry_interval);
    const session = broker.createSession(meta.id, meta.v, expiryInterval);
    session.offlineSince = offlineSince;
    for (const s of meta.subs) {
      const subscription: Subscription = {
        session,
        key: s.k,
        filter: s.f,
        shareGroup: s.g,
        qos: s.q,
        noLocal: s.nl,
        retainAsPublished: s.rap,
        retainHandling: s.rh,
        subscriptionId: s.sid,
        receiveProof: undefined,
      };
      broker.addSubscription(subscription);
    }
    const entries = [...state.outbound.values()].sort((a, b) => a.k - b.k);
    for (const o of entries) {
      const message = o.mn !== undefined ? body(o.mn) : o.m !== undefined ? messageFromRecord(o.m) : undefined;
      if (message === undefined) {
        summary.missingMessages++;
        continue;
      }
      const out: Outbound = {
        message,
        qos: o.q,
        retain: o.r,
        subscriptionIds: o.ids,
        shareGroup: o.sg,
        shareFilter: o.sf,
        packetId: o.p ?? 0,
        state: o.st ?? 'publish',
        storeKey: o.k,
      };
      if (isExpired(message, now) && out.state === 'publish') {
        summary.expiredMessages++;
        session.journal?.removed(session.clientId, out);
        continue;
      }
      if (out.packetId > 0) {
        session.inflight.set(out.packetId, out);
        summary.inflightMessages++;
      } else {
        session.queue.push(out);
        summary.queuedMessages++;
      }
    }
    for (const id of state.inboundQos2) session.inboundQos2.add(id);
    if (meta.will) {
      session.will = willFromRecord(meta.will);
      summary.willsPending++;
    }
    const remaining = expiryInterval === 0xffff_ffff ? Infinity : expiryInterval - (now - offlineSince) / 1000;
    if (remaining <= 0) {
      summary.expiredSessions++;
      broker.endSession(session);
      continue;
    }
    broker.resumeOffline(session, offlineSince, now);
    summary.sessions++;
  }
  return summary;
}
