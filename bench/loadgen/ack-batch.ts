import { writeAck } from './wire.js';

/** Acknowledgements gathered while one chunk is processed, written with a single socket write. */
export class AckBatch {
  private scratch = Buffer.allocUnsafe(4096);
  private used = 0;

  add(type: number, id: number): void {
    if (this.used + 4 > this.scratch.length) {
      const bigger = Buffer.allocUnsafe(this.scratch.length * 2);
      this.scratch.copy(bigger, 0, 0, this.used);
      this.scratch = bigger;
    }
    writeAck(this.scratch, this.used, type, id);
    this.used += 4;
  }

  /** The gathered bytes as a buffer of their own (the socket keeps it until written), or undefined. */
  take(): Buffer | undefined {
    if (this.used === 0) return undefined;
    const out = Buffer.from(this.scratch.subarray(0, this.used));
    this.used = 0;
    return out;
  }
}
