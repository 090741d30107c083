/**
 * Outgoing QoS 1/2 messages by packet id, in send order (redelivery on reconnect keeps it).
 *
 * A `Map` shrinks its hash table when deleting leaves it under a quarter full, and grows it again on the next
 * insert: a client that acknowledges each message before the next is sent (one in flight at a time, the common
 * case at a low rate) cost ~150 bytes of discarded table per message, and the young-generation collections that
 * garbage brings on are what a message arriving during one waits for (docs/performance.md, session 14). MQTT never
 * uses packet id 0, so an entry under it keeps the table from shrinking; every accessor below hides it.
 */
export class InflightWindow<T> {
  private readonly entries = new Map<number, T | undefined>([[0, undefined]]);

  get size(): number {
    return this.entries.size - 1;
  }

  get(packetId: number): T | undefined {
    return packetId === 0 ? undefined : this.entries.get(packetId);
  }

  has(packetId: number): boolean {
    return packetId !== 0 && this.entries.has(packetId);
  }

  set(packetId: number, value: T): void {
    if (packetId === 0) throw new RangeError('packet id 0 is not a valid MQTT packet identifier');
    this.entries.set(packetId, value);
  }

  delete(packetId: number): boolean {
    return packetId !== 0 && this.entries.delete(packetId);
  }

  *keys(): IterableIterator<number> {
    for (const id of this.entries.keys()) if (id !== 0) yield id;
  }

  *values(): IterableIterator<T> {
    for (const [id, value] of this.entries) if (id !== 0) yield value as T;
  }

  *[Symbol.iterator](): IterableIterator<[number, T]> {
    for (const [id, value] of this.entries) if (id !== 0) yield [id, value as T];
  }
}
