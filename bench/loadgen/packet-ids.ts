/** Packet identifiers of one connection: never reuses an id still in flight [MQTT-2.3.1-2]. */
export class PacketIds {
  private readonly inUse = new Uint8Array(65536);
  private next = 1;
  inflight = 0;

  /** The next free id; the caller has checked `inflight` against its window, so one is always free. */
  take(): number {
    let id = this.next;
    while (this.inUse[id] === 1) id = id === 65535 ? 1 : id + 1;
    this.inUse[id] = 1;
    this.next = id === 65535 ? 1 : id + 1;
    this.inflight++;
    return id;
  }

  /** Frees an id; false when it was not in flight (a duplicate or stray acknowledgement). */
  release(id: number): boolean {
    if (this.inUse[id] !== 1) return false;
    this.inUse[id] = 0;
    this.inflight--;
    return true;
  }
}
