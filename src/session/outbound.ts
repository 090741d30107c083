import type { Message, QoS } from '../routing/message.js';

/** A message on its way to one subscriber: queued, in flight, or awaiting PUBCOMP. */
export interface Outbound {
  /** Replaced only by `withOwnedBytes` (the same message, in memory of its own) when the client is away. */
  message: Message;
  readonly qos: QoS;
  /** The RETAIN flag as this subscriber sees it (retain-as-published, or 1 for retained-on-subscribe). */
  readonly retain: boolean;
  readonly subscriptionIds: readonly number[] | undefined;
  /** Set when delivered through a shared subscription: redelivered to another member if this one leaves. */
  readonly shareGroup: string | undefined;
  readonly shareFilter: string | undefined;
  packetId: number;
  /** `publish`: PUBLISH sent, awaiting PUBACK/PUBREC. `pubrel`: PUBREC received, PUBREL sent, awaiting PUBCOMP. */
  state: 'publish' | 'pubrel';
  /** Key of this entry in the persistent store, once a persistent session has recorded it. */
  storeKey?: number;
}

/** What a session needs from its live connection. Implemented by `Connection`. */
export interface SessionLink {
  /** How many QoS 1/2 messages may be in flight: the client's Receive Maximum capped by the server. */
  readonly sendQuota: number;
  /**
   * Sends the PUBLISH; false when it was discarded: it exceeds the client's Maximum Packet Size, or could not be
   * encoded (logged).
   */
  sendPublish(out: Outbound, dup: boolean): boolean;
  sendPubrel(packetId: number): void;
}

/** Receives every change to a persistent session's outgoing messages, so the store can journal it. */
export interface OutboundJournal {
  added(clientId: string, out: Outbound): void;
  updated(clientId: string, out: Outbound): void;
  removed(clientId: string, out: Outbound): void;
}
