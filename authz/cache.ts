import type { Identity } from '../authn/types.js';
import { topicActionIndex } from './compile.js';
import type { AccessRequest, AuthzDecision } from './types.js';

/** 3 topic actions × 3 QoS × retain × shared. */
const SLOTS = 36;

function slotOf(req: AccessRequest): number {
  return (
    topicActionIndex(req.action) * 12 + req.qos * 4 + (req.retain ? 2 : 0) + (req.sharedGroup !== undefined ? 1 : 0)
  );
}

interface ClientEntry {
  identity: Identity;
  listener: string;
  peerAddress: string;
  slots: Array<Map<string, AuthzDecision> | undefined>;
  size: number;
  /** The slot and topic read or written last: already at the recent end of its map, so a hit need not move it. */
  newestSlot: number;
  newestTopic: string | undefined;
}

/**
 * Bounded cache of final topic decisions keyed by (client, action, qos, retain, shared, topic). Lookups allocate
 * nothing: per client, one map per (action, qos, retain, shared) slot, keyed by the topic string.
 *
 * Connect decisions are never cached: a connection asks once, and every later check (a policy swap, a
 * re-authentication) comes with the cache already dropped or a new identity. Caching them held a client entry
 * and a map for every idle connection, about 0.6 KiB each, for nothing.
 *
 * A client's entries belong to one identity object: a request carrying another identity (a reconnect under
 * the same client id) drops them, so a cached answer never outlives the connection it was computed for, even
 * if the broker forgets to call `invalidate`. Eviction removes the least recently used client's oldest entry.
 */
export class DecisionCache {
  readonly #clients = new Map<string, ClientEntry>();
  /** The client at the recent end of `#clients`, so repeated hits by one client do not reorder the map. */
  #newest: ClientEntry | undefined;
  #size = 0;

  constructor(readonly maxEntries: number) {}

  get size(): number {
    return this.#size;
  }

  get(req: AccessRequest): AuthzDecision | undefined {
    if (this.maxEntries <= 0 || req.action === 'connect') return undefined;
    const entry = this.#clients.get(req.identity.clientId);
    if (!entry) return undefined;
    if (entry.identity !== req.identity || entry.listener !== req.listener || entry.peerAddress !== req.peerAddress) {
      this.invalidate(req.identity.clientId);
      return undefined;
    }
    const slot = slotOf(req);
    const map = entry.slots[slot];
    if (!map) return undefined;
    const hit = map.get(req.topic);
    if (hit === undefined) return undefined;
    // Move client and topic to the most recent end (Map keeps insertion order), unless they are there already:
    // a delete and re-insert on every publish allocated a tenth of the broker's garbage at a steady rate.
    if (entry.newestSlot !== slot || entry.newestTopic !== req.topic) {
      map.delete(req.topic);
      map.set(req.topic, hit);
      entry.newestSlot = slot;
      entry.newestTopic = req.topic;
    }
    if (this.#newest !== entry) {
      this.#clients.delete(req.identity.clientId);
      this.#clients.set(req.identity.clientId, entry);
      this.#newest = entry;
    }
    return hit;
  }

  set(req: AccessRequest, decision: AuthzDecision): void {
    if (this.maxEntries <= 0 || req.action === 'connect') return;
    const clientId = req.identity.clientId;
    let entry = this.#clients.get(clientId);
    if (entry && entry.identity !== req.identity) {
      this.invalidate(clientId);
      entry = undefined;
    }
    if (!entry) {
      entry = {
        identity: req.identity,
        listener: req.listener,
        peerAddress: req.peerAddress,
        slots: new Array<Map<string, AuthzDecision> | undefined>(SLOTS),
        size: 0,
        newestSlot: -1,
        newestTopic: undefined,
      };
    } else this.#clients.delete(clientId);
    this.#clients.set(clientId, entry);
    this.#newest = entry;
    const slot = slotOf(req);
    let map = entry.slots[slot];
    if (!map) {
      map = new Map();
      entry.slots[slot] = map;
    }
    if (!map.has(req.topic)) {
      entry.size++;
      this.#size++;
    } else map.delete(req.topic);
    map.set(req.topic, decision);
    entry.newestSlot = slot;
    entry.newestTopic = req.topic;
    while (this.#size > this.maxEntries) this.#evictOne();
  }

  /** Drops one client's decisions (on disconnect or a change of its rights), or every decision. */
  invalidate(clientId?: string): void {
    if (clientId === undefined) {
      this.#clients.clear();
      this.#newest = undefined;
      this.#size = 0;
      return;
    }
    const entry = this.#clients.get(clientId);
    if (!entry) return;
    this.#dropClient(clientId, entry);
    this.#size -= entry.size;
  }

  #evictOne(): void {
    for (const [clientId, entry] of this.#clients) {
      for (const map of entry.slots) {
        if (!map || map.size === 0) continue;
        const oldest = map.keys().next();
        if (!oldest.done) {
          map.delete(oldest.value);
          entry.size--;
          this.#size--;
          if (entry.size === 0) this.#dropClient(clientId, entry);
          return;
        }
      }
      this.#dropClient(clientId, entry);
      this.#size -= entry.size;
      return;
    }
  }

  #dropClient(clientId: string, entry: ClientEntry): void {
    if (this.#newest === entry) this.#newest = undefined;
    this.#clients.delete(clientId);
  }
}
