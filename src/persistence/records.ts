import type { ForwardedProperties, Message, QoS } from '../routing/message.js';
import type { Subscription } from '../routing/subscription.js';
import type { Outbound } from '../session/outbound.js';
import type { PendingWill } from '../session/session.js';
import { NO_ATTRIBUTES, NO_GROUPS } from '../../authn/types.js';

/** A message as journaled: payload and binary properties in base64. */
export interface MessageRecord {
  t: string;
  p: string;
  q: QoS;
  r: boolean;
  x?: number;
  f?: string;
  pr?: Omit<ForwardedProperties, 'correlationData'> & { cd?: string };
}

export interface SubscriptionRecord {
  k: string;
  f: string;
  g?: string;
  q: QoS;
  nl: boolean;
  rap: boolean;
  rh: 0 | 1 | 2;
  sid?: number;
}

export interface WillRecord {
  m: MessageRecord;
  d: number;
  e?: number;
  /**
   * Who the will was authorized for at CONNECT, so it is checked against the policy in force when it is published,
   * after a restart as before one. Absent in stores written before it was kept: such a will is not published.
   */
  w?: WillIdentityRecord;
}

/**
 * What a policy can match a will's publish on: the identity's subject fields, the listener and the peer address.
 * Never a credential: the password, the token and the JWT's ACL claim (`aclRules`) stay in memory only.
 */
export interface WillIdentityRecord {
  /** Client id. */
  c: string;
  /** Username; absent for clients without one. */
  u?: string;
  g: string[];
  /** Attributes (`cert.cn`, `jwt.sub`, `ldap.dn`, ...). */
  at: Record<string, string>;
  su: boolean;
  an: boolean;
  /** The authenticator (chain step id) that allowed the client. */
  by: string;
  /** Listener name. */
  l: string;
  /** Peer address (after PROXY protocol). */
  ip: string;
  /** The CONNECT's username field as sent (for the audit record's `mqtt.username`), when there was one. */
  cu?: string;
}

/**
 * Journal records. Each is an idempotent upsert or delete, so replaying a record twice (as compaction can cause)
 * gives the same state.
 */
export type StoreRecord =
  /** Session metadata: protocol version, expiry, subscriptions; `at` when it went offline; a pending will. */
  | { t: 's'; id: string; v: 3 | 4 | 5; exp: number; subs: SubscriptionRecord[]; at?: number; will?: WillRecord }
  /** Session ended: everything of it goes. */
  | { t: 'e'; id: string }
  /**
   * An outgoing message queued or in flight (`p` packet id once sent, `st` its QoS 2 state). Its body is journaled
   * once however many sessions it is queued for: the first `o` record carries it (`m`) with its number (`mn`), the
   * others only the number. One PUBLISH of 1 MiB to 2,000 offline sessions wrote 2,000 copies of it, 2.8 GB, in one
   * turn of the event loop. Journals written before numbers existed have `m` in every `o` record and no `mn`.
   */
  | {
      t: 'o';
      id: string;
      k: number;
      mn?: number;
      m?: MessageRecord;
      q: QoS;
      r: boolean;
      ids?: number[];
      sg?: string;
      sf?: string;
      p?: number;
      st?: 'publish' | 'pubrel';
    }
  /** The outgoing message got a packet id or moved to PUBREL. */
  | { t: 'u'; id: string; k: number; p: number; st: 'publish' | 'pubrel' }
  /** The outgoing message is done (acknowledged, dropped or handed to another shared-subscription member). */
  | { t: 'd'; id: string; k: number }
  /** An incoming QoS 2 packet id awaiting PUBREL (exactly-once across restarts). */
  | { t: 'i'; id: string; p: number }
  | { t: 'j'; id: string; p: number }
  | { t: 'R'; m: MessageRecord }
  | { t: 'X'; topic: string };

export function messageRecord(m: Message): MessageRecord {
  const record: MessageRecord = { t: m.topic, p: m.payload.toString('base64'), q: m.qos, r: m.retain };
  if (m.expiresAt !== undefined) record.x = m.expiresAt;
  if (m.publisherId !== undefined) record.f = m.publisherId;
  if (m.properties) {
    const { correlationData, ...rest } = m.properties;
    record.pr = correlationData ? { ...rest, cd: correlationData.toString('base64') } : rest;
  }
  return record;
}

export function messageFromRecord(r: MessageRecord): Message {
  let properties: ForwardedProperties | undefined;
  if (r.pr) {
    const { cd, ...rest } = r.pr;
    properties = cd !== undefined ? { ...rest, correlationData: Buffer.from(cd, 'base64') } : rest;
  }
  return {
    topic: r.t,
    payload: Buffer.from(r.p, 'base64'),
    qos: r.q,
    retain: r.r,
    properties,
    expiresAt: r.x,
    publisherId: r.f,
  };
}

export function willRecord(will: PendingWill): WillRecord {
  const record: WillRecord = { m: messageRecord(will.message), d: will.delaySeconds, e: will.expirySeconds };
  const who = will.authorizedFor;
  if (who) {
    const id = who.identity;
    record.w = {
      c: id.clientId,
      g: [...id.groups],
      at: { ...id.attributes },
      su: id.superuser,
      an: id.anonymous,
      by: id.authenticator,
      l: who.listener,
      ip: who.peerAddress,
    };
    if (id.username !== undefined) record.w.u = id.username;
    if (who.claimedUsername !== undefined) record.w.cu = who.claimedUsername;
  }
  return record;
}

export function willFromRecord(r: WillRecord): PendingWill {
  const will: PendingWill = {
    message: messageFromRecord(r.m),
    delaySeconds: r.d,
    expirySeconds: r.e,
    timer: undefined,
  };
  const w = r.w;
  if (w) {
    will.authorizedFor = {
      identity: {
        clientId: w.c,
        username: w.u,
        groups: w.g.length > 0 ? w.g : NO_GROUPS,
        attributes: Object.keys(w.at).length > 0 ? w.at : NO_ATTRIBUTES,
        superuser: w.su,
        anonymous: w.an,
        authenticator: w.by,
      },
      listener: w.l,
      peerAddress: w.ip,
      claimedUsername: w.cu,
    };
  }
  return will;
}

export function subscriptionRecord(s: Subscription): SubscriptionRecord {
  const r: SubscriptionRecord = {
    k: s.key,
    f: s.filter,
    q: s.qos,
    nl: s.noLocal,
    rap: s.retainAsPublished,
    rh: s.retainHandling,
  };
  if (s.shareGroup !== undefined) r.g = s.shareGroup;
  if (s.subscriptionId !== undefined) r.sid = s.subscriptionId;
  return r;
}

/** `messageNumber` names the message's body; `body` is given when this record is the one that carries it. */
export function outboundRecord(
  clientId: string,
  out: Outbound,
  messageNumber: number,
  body: MessageRecord | undefined,
): StoreRecord {
  const r: StoreRecord = {
    t: 'o',
    id: clientId,
    k: out.storeKey!,
    mn: messageNumber,
    q: out.qos,
    r: out.retain,
  };
  if (body !== undefined) r.m = body;
  if (out.subscriptionIds) r.ids = [...out.subscriptionIds];
  if (out.shareGroup !== undefined) {
    r.sg = out.shareGroup;
    r.sf = out.shareFilter;
  }
  if (out.packetId > 0) {
    r.p = out.packetId;
    r.st = out.state;
  }
  return r;
}
