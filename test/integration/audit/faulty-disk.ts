import { open } from 'node:fs/promises';
import type { AuditFileHandle, AuditFileSystem } from '../../../audit/writer.js';

/**
 * A real directory behind a disk that fills up at an exact byte, the way Linux does it: a write that does not fit
 * writes what fits and returns that short count, and the next write fails with ENOSPC having written nothing.
 * Every byte the writer is told was written really is in the file, so `verify` reads what a real full disk leaves.
 */
export class FaultyDisk implements AuditFileSystem {
  /** Bytes written to all files so far. */
  used = 0;
  /** Total bytes the disk accepts; `used + n` tears the next write after n bytes. */
  capacity = Number.POSITIVE_INFINITY;
  /** Largest count one write call accepts, to exercise short writes that are not errors. */
  maxPerWrite = Number.POSITIVE_INFINITY;
  /** The next this many `datasync` calls fail with EIO. */
  failSyncs = 0;
  writeCalls = 0;
  syncCalls = 0;
  private held: { call: number; reached: () => void; release: Promise<void> } | undefined;

  async open(path: string, flags: 'ax', mode: number): Promise<AuditFileHandle> {
    const handle = await open(path, flags, mode);
    return {
      write: async (buffer, offset, length) => {
        const call = ++this.writeCalls;
        if (this.held?.call === call) {
          const held = this.held;
          held.reached();
          await held.release;
        }
        const fits = Math.min(length, this.maxPerWrite, this.capacity - this.used);
        if (fits <= 0) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
        const { bytesWritten } = await handle.write(buffer, offset, fits);
        this.used += bytesWritten;
        return { bytesWritten };
      },
      datasync: async () => {
        this.syncCalls++;
        if (this.failSyncs > 0) {
          this.failSyncs--;
          throw Object.assign(new Error('i/o error'), { code: 'EIO' });
        }
        await handle.datasync();
      },
      close: () => handle.close(),
    };
  }

  /** Full from the next byte on. */
  fill(): void {
    this.capacity = this.used;
  }

  /** Room for exactly `bytes` more bytes. */
  leave(bytes: number): void {
    this.capacity = this.used + bytes;
  }

  free(): void {
    this.capacity = Number.POSITIVE_INFINITY;
  }

  /**
   * Holds the `after`-th write call from now until `release` is called; `reached` resolves once the writer is
   * blocked inside it, so a test can act at that exact point without guessing a time.
   */
  holdWrite(after: number): { reached: Promise<void>; release: () => void } {
    let release = (): void => undefined;
    let reached = (): void => undefined;
    const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
    const releasePromise = new Promise<void>((resolve) => (release = resolve));
    this.held = { call: this.writeCalls + after, reached, release: releasePromise };
    return { reached: reachedPromise, release };
  }
}
