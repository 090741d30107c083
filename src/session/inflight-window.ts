/** Slots of a new window; a power of two, as every size is. */
const INITIAL_SLOTS = 8;
/** Above this many slots a table is halved once under an eighth full; below, only emptied (see `delete`). */
const SHRINK_FROM_SLOTS = 64;

/**
 * Outgoing QoS 1/2 messages by packet id, in send order (redelivery on reconnect keeps it).
 *
 * A hash table of its own, open addressing on the packet id with linear probing, rather than a `Map`: a `Map` that
 * takes one entry and loses it for every message rebuilds its hash table every few messages (deleted entries fill
 * it; emptying it shrinks it), about 50 bytes of garbage per QoS 1/2 delivery, and the young-generation collections
 * that garbage brings on are what a message arriving during one waits for (docs/performance.md, sessions 14 and 20).
 * Here a set and a delete write into arrays that only grow (at half full) or shrink (emptied, or a large one under
 * an eighth full) when the number of messages in flight changes that much. Packet ids are handed out in sequence, so `id & mask` spreads them
 * without a hash function. Deleting shifts the entries after it back (no tombstones, so lookups never slow down).
 * Send order is an insertion counter per entry; only iteration (a reconnect, a shared subscription's member leaving,
 * a store snapshot) sorts by it. Packet id 0 is never valid in MQTT and marks an empty slot.
 */
export class InflightWindow<T> {
  private slotIds: number[] = new Array<number>(INITIAL_SLOTS).fill(0);
  private slotValues: (T | undefined)[] = new Array<T | undefined>(INITIAL_SLOTS).fill(undefined);
  private slotOrder: number[] = new Array<number>(INITIAL_SLOTS).fill(0);
  private mask = INITIAL_SLOTS - 1;
  private count = 0;
  private inserted = 0;

  get size(): number {
    return this.count;
  }

  get(packetId: number): T | undefined {
    const slot = this.slotOf(packetId);
    return slot < 0 ? undefined : this.slotValues[slot];
  }

  has(packetId: number): boolean {
    return this.slotOf(packetId) >= 0;
  }

  /** Adds at the end of the send order; an id already present keeps its place, as in a `Map`. */
  set(packetId: number, value: T): void {
    // 0 marks an empty slot (and is no MQTT packet id); the probing needs a positive integer.
    if (!Number.isInteger(packetId) || packetId < 1)
      throw new RangeError(`packet id ${packetId} is not a valid MQTT packet identifier`);
    const present = this.slotOf(packetId);
    if (present >= 0) {
      this.slotValues[present] = value;
      return;
    }
    if ((this.count + 1) * 2 > this.slotIds.length) this.resize(this.slotIds.length * 2);
    this.append(packetId, value);
  }

  /** Puts an id known to be absent, with room for it, at the end of the send order. */
  private append(packetId: number, value: T): void {
    let slot = packetId & this.mask;
    while (this.slotIds[slot] !== 0) slot = (slot + 1) & this.mask;
    this.slotIds[slot] = packetId;
    this.slotValues[slot] = value;
    this.slotOrder[slot] = this.inserted++;
    this.count++;
  }

  delete(packetId: number): boolean {
    let hole = this.slotOf(packetId);
    if (hole < 0) return false;
    const ids = this.slotIds;
    const mask = this.mask;
    // Backward shift: every entry after the hole that could live in it (its home slot is not between the hole and
    // where it sits) moves into it, until an empty slot ends the run.
    for (let next = (hole + 1) & mask; ids[next] !== 0; next = (next + 1) & mask) {
      const home = ids[next]! & mask;
      const stays = hole <= next ? hole < home && home <= next : hole < home || home <= next;
      if (stays) continue;
      ids[hole] = ids[next]!;
      this.slotValues[hole] = this.slotValues[next];
      this.slotOrder[hole] = this.slotOrder[next]!;
      hole = next;
    }
    ids[hole] = 0;
    this.slotValues[hole] = undefined;
    this.count--;
    const slots = this.slotIds.length;
    // A small table is given back only once it is empty: halving it at an eighth full made one that went back and
    // forth between one and four messages in flight rebuild itself every few messages.
    if (slots > INITIAL_SLOTS && (this.count === 0 || (slots > SHRINK_FROM_SLOTS && this.count * 8 < slots)))
      this.resize(this.count === 0 ? INITIAL_SLOTS : slots / 2);
    return true;
  }

  keys(): IterableIterator<number> {
    const ids = this.inOrder().map((slot) => this.slotIds[slot]!);
    return ids[Symbol.iterator]();
  }

  values(): IterableIterator<T> {
    const values = this.inOrder().map((slot) => this.slotValues[slot] as T);
    return values[Symbol.iterator]();
  }

  /** A snapshot in send order: the caller may delete while it walks it (a delete moves other entries' slots). */
  [Symbol.iterator](): IterableIterator<[number, T]> {
    const entries = this.inOrder().map((slot): [number, T] => [this.slotIds[slot]!, this.slotValues[slot] as T]);
    return entries[Symbol.iterator]();
  }

  private slotOf(packetId: number): number {
    if (packetId === 0) return -1;
    const ids = this.slotIds;
    const mask = this.mask;
    for (let slot = packetId & mask; ; slot = (slot + 1) & mask) {
      const id = ids[slot];
      if (id === packetId) return slot;
      if (id === 0) return -1;
    }
  }

  /** Occupied slots in send order. Valid until the next set or delete: callers copy what they need out first. */
  private inOrder(): number[] {
    const slots: number[] = [];
    for (let slot = 0; slot < this.slotIds.length; slot++) if (this.slotIds[slot] !== 0) slots.push(slot);
    return slots.sort((a, b) => this.slotOrder[a]! - this.slotOrder[b]!);
  }

  private resize(slots: number): void {
    const entries = [...this];
    this.slotIds = new Array<number>(slots).fill(0);
    this.slotValues = new Array<T | undefined>(slots).fill(undefined);
    this.slotOrder = new Array<number>(slots).fill(0);
    this.mask = slots - 1;
    this.count = 0;
    this.inserted = 0;
    for (const [id, value] of entries) this.append(id, value);
  }
}
