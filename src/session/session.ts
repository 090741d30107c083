import type { Identity } from '../../authn/types.js';
import { isExpired, withOwnedBytes, type Message } from '../routing/message.js';
import type { Subscription } from '../routing/subscription.js';
import { InflightWindow } from './inflight-window.js';
import type { Outbound, OutboundJournal, SessionLink } from './outbound.js';

export type QueueOverflow = 'drop-new' | 'drop-oldest';

export interface SessionLimits {
  maxQueuedMessages: number;
  queueOverflow: QueueOverflow;
  queueQos0: boolean;
}

export interface SessionEvents {
  /** A message was dropped because the offline queue was full (counted for `$SYS` and logged). */
  onQueueOverflow(session: Session, dropped: Outbound): void;
  /** A message was dropped as expired, or as one the client cannot be sent (`SessionLink.sendPublish`); counted. */
  onDiscarded(session: Session, reason: 'expired' | 'unsendable'): void;
}

export interface PendingWill {
  message: Message;
  delaySeconds: number;
  /** Message Expiry Interval, counted from when the will is published. */
  expirySeconds: number | undefined;
  /** Who set the will, so it is authorized again when it is published (the policy may have changed since). */
  authorizedFor?: { identity: Identity; listener: string; peerAddress: string; claimedUsername: string | undefined };
  timer: NodeJS.Timeout | undefined;
}

/**
 * The state MQTT keeps for a client id across connections: subscriptions, messages in flight both ways and the
 * offline queue ([MQTT-4.1]). It outlives its connection when the session expiry interval is non-zero.
 */
export class Session {
  // The three collections are created on first use: an empty Map or Set still costs ~200 bytes of hash table, and
  // an idle device that never subscribes, never receives QoS 1/2 and never sends QoS 2 needs none of them.
  #subscriptions: Map<string, Subscription> | undefined;
  #inflight: InflightWindow<Outbound> | undefined;
  #inboundQos2: Set<number> | undefined;
  /**
   * In-flight PUBLISH not yet re-sent on this connection, in send order: a client that reconnects with a lower
   * Receive Maximum than it had gets its unacknowledged messages as its window frees up ([MQTT-3.3.4-9]), with
   * their original packet ids ([MQTT-4.4.0-1]). Undefined when none is held, which is nearly always.
   */
  #held: Set<Outbound> | undefined;
  /** Messages waiting for a free slot in the send window or for the client to reconnect. */
  readonly queue: Outbound[] = [];
  link: SessionLink | undefined;
  /** The connection object currently attached, for takeover and disconnect; typed loosely to avoid a cycle. */
  connection:
    | {
        /** Set by the client's DISCONNECT without a will (0x00): the connection may still be closing. */
        readonly disconnectedCleanly: boolean;
        close(
          reason: 'sessionTakenOver' | 'administrativeAction' | 'notAuthorized' | 'serverShuttingDown',
          detail: string,
        ): void;
      }
    | undefined;
  expiryInterval: number;
  expiryTimer: NodeJS.Timeout | undefined;
  /** Epoch ms when the session expires while disconnected; undefined while connected or never. */
  expiresAt: number | undefined;
  /** Epoch ms when the last connection left; undefined while connected. */
  offlineSince: number | undefined;
  will: PendingWill | undefined;
  /**
   * Deliveries waiting on an asynchronous `receive` check (a SQL source's cache miss), chained so they reach the
   * client in the order they were routed; undefined when none waits.
   */
  receiveBacklog: { pending: number; tail: Promise<void> } | undefined;
  protocolVersion: 3 | 4 | 5;
  /** Set while the session is persistent (expiry > 0) and the broker keeps a store. */
  journal: OutboundJournal | undefined;
  private nextPacketId = 1;
  /** Scratch fields used by the router to merge overlapping subscriptions without allocating per message. */
  routeStamp = 0;
  routeIndex = 0;

  constructor(
    readonly clientId: string,
    protocolVersion: 3 | 4 | 5,
    expiryInterval: number,
    private readonly limits: SessionLimits,
    private readonly events: SessionEvents,
  ) {
    this.protocolVersion = protocolVersion;
    this.expiryInterval = expiryInterval;
  }

  get subscriptions(): Map<string, Subscription> {
    return (this.#subscriptions ??= new Map());
  }

  /** The subscriptions if the session ever had one: a session ending without any does not create the map. */
  get subscriptionsIfAny(): Map<string, Subscription> | undefined {
    return this.#subscriptions;
  }

  /** Outgoing QoS 1/2 messages by packet id, in send order. */
  get inflight(): InflightWindow<Outbound> {
    return (this.#inflight ??= new InflightWindow());
  }

  /** Incoming QoS 2 packet ids received (PUBREC sent) and not yet released: exactly-once on the inbound side. */
  get inboundQos2(): Set<number> {
    return (this.#inboundQos2 ??= new Set());
  }

  get connected(): boolean {
    return this.link !== undefined;
  }

  /** Delivers, or queues when the window is full or the client is away. */
  deliver(out: Outbound): void {
    const link = this.link;
    if (out.qos === 0) {
      if (link) {
        if (!link.sendPublish(out, false)) this.events.onDiscarded(this, 'unsendable');
        return;
      }
      if (!this.limits.queueQos0) return;
      this.enqueue(out);
      return;
    }
    if (link && this.queue.length === 0 && this.inflight.size < link.sendQuota) {
      this.sendNow(link, out);
      return;
    }
    this.enqueue(out);
  }

  /**
   * PUBACK, PUBCOMP, or a PUBREC with a failure reason (`pubrec`): the delivery is done. When the acknowledgement
   * does not fit the delivery nothing is done and the reason is returned (`mismatchOf`); an unknown packet id is
   * ignored.
   */
  complete(packetId: number, cmd: 'puback' | 'pubrec' | 'pubcomp'): string | undefined {
    const out = this.inflight.get(packetId);
    if (!out) return undefined;
    const mismatch = mismatchOf(out, packetId, cmd);
    if (mismatch !== undefined) return mismatch;
    this.inflight.delete(packetId);
    if (this.#held !== undefined) this.release(out);
    this.journal?.removed(this.clientId, out);
    this.drain();
    return undefined;
  }

  /**
   * PUBREC: the receiver has the message; [MQTT-4.3.3-5] the sender now sends PUBREL and awaits PUBCOMP. True when
   * it did; false when nothing is in flight under the id; why not (`mismatchOf`) when the PUBREC does not fit it.
   */
  released(packetId: number): boolean | string {
    const out = this.inflight.get(packetId);
    if (!out) return false;
    const mismatch = mismatchOf(out, packetId, 'pubrec');
    if (mismatch !== undefined) return mismatch;
    // A held message the client had received on its previous connection: PUBREL it is, not the PUBLISH again.
    if (this.#held !== undefined) this.release(out);
    out.state = 'pubrel';
    this.journal?.updated(this.clientId, out);
    this.link?.sendPubrel(packetId);
    return true;
  }

  /** On reconnect: [MQTT-4.4.0-1] resend unacknowledged PUBLISH with DUP and PUBREL, in order, then the queue. */
  resume(link: SessionLink, now: number): void {
    this.link = link;
    this.#held = undefined;
    // PUBREL is always re-sent; each PUBLISH only while the client's window, new with this connection, has room.
    let sent = 0;
    for (const out of this.#inflight ? [...this.#inflight.values()] : []) {
      if (out.state === 'pubrel') {
        link.sendPubrel(out.packetId);
        sent++;
      } else if (isExpired(out.message, now)) {
        this.inflight.delete(out.packetId);
        this.journal?.removed(this.clientId, out);
        this.events.onDiscarded(this, 'expired');
      } else if (sent >= link.sendQuota) {
        (this.#held ??= new Set()).add(out);
      } else if (link.sendPublish(out, true)) {
        sent++;
      } else {
        this.inflight.delete(out.packetId);
        this.journal?.removed(this.clientId, out);
        this.events.onDiscarded(this, 'unsendable');
      }
    }
    this.drain();
  }

  detach(): void {
    this.link = undefined;
    this.#held = undefined;
    this.connection = undefined;
    this.offlineSince = Date.now();
    // What waits for the client's return may wait for the whole session expiry: see `withOwnedBytes`.
    for (const out of this.queue) out.message = withOwnedBytes(out.message);
    if (this.#inflight) for (const out of this.#inflight.values()) out.message = withOwnedBytes(out.message);
  }

  /** Moves queued messages into the send window while it has room. */
  drain(): void {
    const link = this.link;
    // Called after every acknowledgement: with nothing waiting, not even the clock is read (its boxed number was
    // the only garbage an acknowledgement made).
    if (!link || (this.#held === undefined && this.queue.length === 0)) return;
    const now = Date.now();
    if (this.#held !== undefined) this.resendHeld(link, now);
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      if (next.qos > 0 && (this.#inflight?.size ?? 0) >= link.sendQuota) return;
      this.queue.shift();
      if (isExpired(next.message, now)) {
        if (next.qos > 0) this.journal?.removed(this.clientId, next);
        this.events.onDiscarded(this, 'expired');
        continue;
      }
      if (next.qos !== 0) this.sendNow(link, next, true);
      else if (!link.sendPublish(next, false)) this.events.onDiscarded(this, 'unsendable');
    }
  }

  /** Re-sends held in-flight PUBLISH (see `#held`) while fewer than the client's Receive Maximum are unacknowledged. */
  private resendHeld(link: SessionLink, now: number): void {
    const held = this.#held!;
    for (const out of held) {
      if (this.inflight.size - held.size >= link.sendQuota) return;
      held.delete(out);
      if (isExpired(out.message, now)) {
        this.inflight.delete(out.packetId);
        this.journal?.removed(this.clientId, out);
        this.events.onDiscarded(this, 'expired');
      } else if (!link.sendPublish(out, true)) {
        this.inflight.delete(out.packetId);
        this.journal?.removed(this.clientId, out);
        this.events.onDiscarded(this, 'unsendable');
      }
    }
    this.#held = undefined;
  }

  /** An in-flight message left the window: it is no longer waiting to be re-sent. */
  private release(out: Outbound): void {
    const held = this.#held!;
    held.delete(out);
    if (held.size === 0) this.#held = undefined;
  }

  /** Removes and returns every message that came through the given shared subscription, for redelivery. */
  takeShared(shareGroup: string, shareFilter: string): Outbound[] {
    const taken: Outbound[] = [];
    for (const [packetId, out] of this.inflight) {
      if (out.shareGroup === shareGroup && out.shareFilter === shareFilter && out.state === 'publish') {
        this.inflight.delete(packetId);
        if (this.#held !== undefined) this.release(out);
        this.journal?.removed(this.clientId, out);
        taken.push(out);
      }
    }
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const out = this.queue[i]!;
      if (out.shareGroup === shareGroup && out.shareFilter === shareFilter) {
        this.queue.splice(i, 1);
        if (out.qos > 0) this.journal?.removed(this.clientId, out);
        taken.unshift(out);
      }
    }
    return taken;
  }

  /**
   * Drops queued or in-flight messages that may not be delivered after all (a policy re-check), in one pass over
   * the queue; answers those it held (one sent meanwhile is no longer its to drop).
   */
  discard(outs: readonly Outbound[]): Outbound[] {
    const dropping = new Set(outs);
    const dropped: Outbound[] = [];
    let kept = 0;
    for (let i = 0; i < this.queue.length; i++) {
      const out = this.queue[i]!;
      if (dropping.has(out)) dropped.push(out);
      else this.queue[kept++] = out;
    }
    this.queue.length = kept;
    for (const out of dropping) {
      if (out.state === 'publish' && this.inflight.get(out.packetId) === out) {
        this.inflight.delete(out.packetId);
        if (this.#held !== undefined) this.release(out);
        dropped.push(out);
      }
    }
    for (const out of dropped) if (out.qos > 0) this.journal?.removed(this.clientId, out);
    return dropped;
  }

  allocatePacketId(): number {
    // [MQTT-2.2.1-3] a packet id in use is not reused until its exchange completes.
    for (let tries = 0; tries < 65535; tries++) {
      const id = this.nextPacketId;
      this.nextPacketId = id === 65535 ? 1 : id + 1;
      if (!this.inflight.has(id)) return id;
    }
    throw new Error('no free packet identifier');
  }

  private sendNow(link: SessionLink, out: Outbound, wasQueued = false): void {
    out.packetId = this.allocatePacketId();
    out.state = 'publish';
    this.inflight.set(out.packetId, out);
    if (wasQueued) this.journal?.updated(this.clientId, out);
    else this.journal?.added(this.clientId, out);
    if (!link.sendPublish(out, false)) {
      // [MQTT-3.1.2-25] too large for the client: discarded, and treated as delivered.
      this.inflight.delete(out.packetId);
      this.journal?.removed(this.clientId, out);
      this.events.onDiscarded(this, 'unsendable');
    }
  }

  private enqueue(out: Outbound): void {
    if (this.queue.length >= this.limits.maxQueuedMessages) {
      if (this.limits.queueOverflow === 'drop-new') {
        this.events.onQueueOverflow(this, out);
        return;
      }
      const dropped = this.queue.shift()!;
      if (dropped.qos > 0) this.journal?.removed(this.clientId, dropped);
      this.events.onQueueOverflow(this, dropped);
    }
    if (!this.link) out.message = withOwnedBytes(out.message);
    this.queue.push(out);
    if (out.qos > 0) this.journal?.added(this.clientId, out);
  }
}

/**
 * Why an acknowledgement does not fit the delivery it names, or undefined when it does. A PUBACK acknowledges QoS 1
 * only, a PUBREC QoS 2 only, a PUBCOMP a QoS 2 delivery that has had its PUBREL: anything else is a protocol error,
 * as Mosquitto treats it. Accepted, a PUBACK completed a QoS 2 delivery, and a PUBREC moved a QoS 1 one to PUBREL.
 */
function mismatchOf(out: Outbound, packetId: number, cmd: 'puback' | 'pubrec' | 'pubcomp'): string | undefined {
  const fits = cmd === 'puback' ? out.qos === 1 : cmd === 'pubrec' ? out.qos === 2 : out.state === 'pubrel';
  if (fits) return undefined;
  const what = out.qos === 2 && out.state === 'pubrel' ? 'QoS 2 delivery awaiting PUBCOMP' : `QoS ${out.qos} delivery`;
  return `${cmd.toUpperCase()} for packet id ${packetId}, a ${what}`;
}
