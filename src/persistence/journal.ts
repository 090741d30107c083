import {
  chmodSync,
  closeSync,
  existsSync,
  fchmodSync,
  fdatasync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  write,
  writeSync,
} from 'node:fs';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { BulwarkError } from '../errors.js';

/**
 * An append-only journal of state changes: each record is `[u32 length][u32 crc32][JSON]`. The broker's state
 * lives in memory; the journal makes it durable and is replayed at start-up. Compaction writes the live state as a
 * new generation and drops the old file. CRCs make a torn or corrupted record detectable instead of silently
 * misread — the reason we keep our own format rather than a memory-mapped store (see docs/architecture.md).
 */
export type Durability = 'sync' | 'periodic' | 'none';

const HEADER = 8;
/** Lengths from here up are impossible; `isTornTail` relies on every valid length starting with a byte below 0x20. */
const MAX_RECORD = 512 * 1024 * 1024;
/** The store holds message payloads and will identities: for the broker's user only, whatever the umask. */
export const STORE_DIR_MODE = 0o700;
const STORE_FILE_MODE = 0o600;

export interface ReplayResult<T> {
  records: T[];
  /** Bytes of a torn final record that a crash left behind (only ever the last one). */
  tornTailBytes: number;
  file: string;
}

export class JournalCorruptError extends BulwarkError {
  constructor(
    readonly file: string,
    readonly offset: number,
    why: string,
  ) {
    super(
      'BULWARK_ERR_STORE_CORRUPT',
      `store file ${file} is corrupt at byte ${offset}: ${why}`,
      { file, line: 0, column: offset },
      'restore from backup, or start with --repair to keep what is readable',
    );
  }
}

/**
 * `store/newest-generation` names the newest journal generation the broker has written. Journal files carry no
 * count of themselves, so without it a store whose newest file was deleted (an over-eager clean-up, a restore that
 * missed a file) would start as if it held less, or nothing, and the sessions and messages in that file would be
 * gone without a word. Written after the generation's file is durable, so it never names a file that may not be
 * there after a crash.
 */
export const NEWEST_GENERATION_FILE = 'newest-generation';

/** The generation `newest-generation` names; undefined when there is none (a new store, or an older version's). */
export function readNewestGeneration(dir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, NEWEST_GENERATION_FILE), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  // Digits only: `Number` would read `1e3` as 1000 and an empty file as 0.
  const generation = /^\d{1,15}\n?$/.test(text) ? Number(text.trim()) : Number.NaN;
  if (!Number.isSafeInteger(generation))
    throw new BulwarkError(
      'BULWARK_ERR_STORE_CORRUPT',
      `${join(dir, NEWEST_GENERATION_FILE)} does not hold a generation number`,
      undefined,
      'restore it from backup, or delete it if the journal files are complete',
    );
  return generation;
}

/** Replaces `newest-generation` in one rename, after syncing the folder so the journal file it names is durable. */
export function writeNewestGeneration(dir: string, generation: number): void {
  syncDirectory(dir);
  const file = join(dir, NEWEST_GENERATION_FILE);
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', STORE_FILE_MODE);
  try {
    writeSync(fd, `${generation}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  try {
    syncDirectory(dir);
  } catch {
    // The rename may then not survive a power loss: the marker names an older generation, which is only less
    // strict. A marker naming a newer generation than the files hold is the one thing it must never do.
  }
}

/**
 * `writeNewestGeneration` for a running broker's compaction: the same steps, without holding the event loop for
 * the three syncs (a directory sync can take milliseconds, every connection's packets wait behind it).
 */
async function writeNewestGenerationAsync(dir: string, generation: number): Promise<void> {
  await syncDirectoryAsync(dir);
  const file = join(dir, NEWEST_GENERATION_FILE);
  const tmp = `${file}.tmp`;
  const handle = await fsp.open(tmp, 'w', STORE_FILE_MODE);
  try {
    await handle.writeFile(`${generation}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsp.rename(tmp, file);
  // As in `writeNewestGeneration`: an unsynced rename only leaves the marker naming an older generation.
  await syncDirectoryAsync(dir).catch(() => undefined);
}

async function syncDirectoryAsync(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The file of journal generation `generation`: `journal-NNNNNNNN.log`. */
export function journalFileName(generation: number): string {
  return `journal-${String(generation).padStart(8, '0')}.log`;
}

/** The generation a `journal-NNNNNNNN.log` name holds. */
export function generationOf(file: string): number {
  return Number(/journal-(\d{8})\.log/.exec(file)![1]);
}

export function journalFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /^journal-\d{8}\.log$/.test(f))
    .sort();
}

/**
 * Reads every record of a journal file. A torn tail (the crash came mid-write, see `isTornTail`) is reported, not
 * an error; a bad CRC, invalid JSON or an impossible length anywhere is corruption, unless `repair` is set, in which
 * case reading stops there and the rest is reported as dropped.
 */
export function readJournal<T>(file: string, repair: boolean): ReplayResult<T> & { droppedBytes: number } {
  const fd = openSync(file, 'r');
  try {
    const size = statSync(file).size;
    const records: T[] = [];
    const header = Buffer.alloc(HEADER);
    let offset = 0;
    const corrupt = (why: string): ReplayResult<T> & { droppedBytes: number } => {
      if (repair) return { records, tornTailBytes: 0, droppedBytes: size - offset, file };
      throw new JournalCorruptError(file, offset, why);
    };
    while (offset < size) {
      if (size - offset < HEADER) return { records, tornTailBytes: size - offset, droppedBytes: 0, file };
      readSync(fd, header, 0, HEADER, offset);
      const length = header.readUInt32BE(0);
      const checksum = header.readUInt32BE(4);
      if (length === 0 || length >= MAX_RECORD) return corrupt(`impossible record length ${length}`);
      if (size - offset - HEADER < length) {
        if (isTornTail(fd, offset + HEADER, size))
          return { records, tornTailBytes: size - offset, droppedBytes: 0, file };
        return corrupt(
          `impossible record length ${length}: it runs past the end of the file over bytes that are not the start of one record`,
        );
      }
      const body = Buffer.allocUnsafe(length);
      readSync(fd, body, 0, length, offset + HEADER);
      if (crc32(body) !== checksum) return corrupt('checksum mismatch');
      try {
        records.push(JSON.parse(body.toString('utf8')) as T);
      } catch {
        return corrupt('record is not valid JSON');
      }
      offset += HEADER + length;
    }
    return { records, tornTailBytes: 0, droppedBytes: 0, file };
  } finally {
    closeSync(fd);
  }
}

/**
 * Whether the bytes from `from` to the end of the file can be the start of one record body, cut short by a crash.
 * A body is JSON as `JSON.stringify` writes it: it starts with `{` and never holds a byte below 0x20 (control
 * characters are escaped). Every record header does hold one, since a length below `MAX_RECORD` (0x20000000)
 * starts with a byte below 0x20; so a damaged length field, which runs over the records after it, fails this test,
 * and so does a tail of zeros. A torn tail whose header is complete but whose body has no byte yet passes.
 */
function isTornTail(fd: number, from: number, size: number): boolean {
  const chunk = Buffer.allocUnsafe(Math.min(64 * 1024, size - from));
  for (let at = from; at < size;) {
    const read = readSync(fd, chunk, 0, Math.min(chunk.length, size - at), at);
    if (read === 0) return false;
    if (at === from && chunk[0] !== 0x7b) return false;
    for (let i = 0; i < read; i++) if (chunk[i]! < 0x20) return false;
    at += read;
  }
  return true;
}

export function encodeRecord(record: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(record), 'utf8');
  const out = Buffer.allocUnsafe(HEADER + body.length);
  out.writeUInt32BE(body.length, 0);
  out.writeUInt32BE(crc32(body), 4);
  body.copy(out, HEADER);
  return out;
}

export interface JournalOptions {
  dir: string;
  durability: Exclude<Durability, 'none'>;
  /** `periodic`: how often written data is flushed to disk. */
  flushIntervalMs: number;
  /** Longest a record waits for its batch to be written (group commit). */
  maxBatchDelayMs: number;
  /** A write (or a `periodic` flush) failed; called for every failed attempt, at most once a second. */
  onError: (error: Error) => void;
  /** A write succeeded after failed ones. */
  onRecovered?: () => void;
  /**
   * A compaction switched to its new generation but could not name it in `newest-generation`, which still names an
   * older one: everything is in the new file; only a later deletion of it would go unnoticed until the marker is
   * written again (at the next compaction or start).
   */
  onMarkerFailed?: (error: Error) => void;
}

/** A failed batch is written again after this long, not at once: the disk is full or failing. */
const RETRY_MS = 1000;

/**
 * The writer: records are batched and written with one `write` (and, in `sync` mode, one `fdatasync`) per batch,
 * so many messages share one flush. `durableThrough(seq)` resolves once record `seq` is written (and synced, in
 * `sync` mode). The records not yet written are always the newest ones, `lastSeq - pending.length + 1` to
 * `lastSeq`: a failed batch goes back to the front.
 */
export class JournalWriter {
  private fd: number;
  private generation: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private seq = 0;
  private writtenSeq = 0;
  private flushing = false;
  /** While a compaction runs nothing is written to the generation it is about to replace. */
  private compacting = false;
  private scheduled = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private waiters: { seq: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  private periodicTimer: NodeJS.Timeout | undefined;
  private failed: Error | undefined;
  bytesWritten = 0;
  /** Size of the current file up to the last record written whole: a failed write is cut back to it. */
  fileBytes = 0;
  /** Size of the last compacted generation: compaction runs again when the file outgrows it enough. */
  snapshotBytes = 0;

  constructor(
    private readonly options: JournalOptions,
    generation: number,
  ) {
    mkdirSync(options.dir, { recursive: true, mode: STORE_DIR_MODE });
    // A folder or journal left by an older version (0755 / 0644 under the usual umask) is narrowed too.
    chmodSync(options.dir, STORE_DIR_MODE);
    this.generation = generation;
    const file = this.fileFor(generation);
    this.fd = openSync(file, 'a', STORE_FILE_MODE);
    fchmodSync(this.fd, STORE_FILE_MODE);
    this.fileBytes = statSync(file).size;
    if (options.durability === 'periodic') {
      this.periodicTimer = setInterval(() => this.syncNow(), options.flushIntervalMs);
      this.periodicTimer.unref();
    }
  }

  get lastSeq(): number {
    return this.seq;
  }

  get durableSeq(): number {
    return this.writtenSeq;
  }

  get file(): string {
    return this.fileFor(this.generation);
  }

  get healthy(): boolean {
    return this.failed === undefined;
  }

  private fileFor(generation: number): string {
    return join(this.options.dir, journalFileName(generation));
  }

  /** Truncates a torn tail found at start-up, so new records follow the last intact one. */
  static sealTornTail(file: string, tornBytes: number): void {
    const fd = openSync(file, 'r+');
    try {
      ftruncateSync(fd, statSync(file).size - tornBytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  append(record: unknown): number {
    const bytes = encodeRecord(record);
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    this.seq++;
    if (!this.scheduled && !this.flushing && !this.compacting) {
      this.scheduled = true;
      if (this.options.maxBatchDelayMs > 0) setTimeout(() => void this.flush(), this.options.maxBatchDelayMs);
      else setImmediate(() => void this.flush());
    }
    return this.seq;
  }

  /** Resolves when every record up to `seq` is written (and synced, in `sync` mode). */
  durableThrough(seq: number): Promise<void> {
    if (seq <= this.writtenSeq) return Promise.resolve();
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    if (this.flushing || this.compacting || this.pending.length === 0) return;
    this.flushing = true;
    const batch = this.pending;
    const batchBytes = this.pendingBytes;
    const batchSeq = this.seq;
    this.pending = [];
    this.pendingBytes = 0;
    try {
      const handle = this.fd;
      // The failed attempt may have left part of its batch behind, and a record appended after that part would
      // read as corruption at the next start: cut back to the last whole record first.
      if (this.failed) ftruncateSync(handle, this.fileBytes);
      await writeAll(handle, batch);
      if (this.options.durability === 'sync')
        await new Promise<void>((resolve, reject) => fdatasyncAsync(handle, resolve, reject));
      this.bytesWritten += batchBytes;
      this.fileBytes += batchBytes;
      this.writtenSeq = batchSeq;
      this.recovered();
      this.resolveWritten();
    } catch (error) {
      // Nothing acknowledged depends on a failed batch: its waiters are refused, the batch is retried.
      this.failed = error as Error;
      try {
        ftruncateSync(this.fd, this.fileBytes);
      } catch {
        // Tried again before the next write.
      }
      this.pending = batch.concat(this.pending);
      this.pendingBytes += batchBytes;
      for (const w of this.waiters) w.reject(this.failed);
      this.waiters = [];
      this.options.onError(this.failed);
      // Records appended meanwhile wait for the retry too: retrying at once would spin while the disk is full.
      this.scheduled = true;
      this.retryTimer = setTimeout(() => void this.flush(), RETRY_MS);
      this.retryTimer.unref();
    } finally {
      this.flushing = false;
    }
    if (this.pending.length > 0 && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.flush());
    }
  }

  private resolveWritten(): void {
    const written = this.writtenSeq;
    const ready = this.waiters.filter((w) => w.seq <= written);
    this.waiters = this.waiters.filter((w) => w.seq > written);
    for (const w of ready) w.resolve();
  }

  private recovered(): void {
    if (!this.failed) return;
    this.failed = undefined;
    this.options.onRecovered?.();
  }

  private syncNow(): void {
    try {
      fdatasyncSync(this.fd);
    } catch (error) {
      this.options.onError(error as Error);
    }
  }

  /** Writes everything pending and syncs; used at shutdown. */
  async close(): Promise<void> {
    if (this.periodicTimer) clearInterval(this.periodicTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    while (this.flushing || this.compacting || this.pending.length > 0) {
      if (!this.flushing && !this.compacting) await this.flush();
      else await new Promise((r) => setTimeout(r, 5));
      if (this.failed) break;
    }
    if (this.retryTimer) clearTimeout(this.retryTimer);
    try {
      fsyncSync(this.fd);
    } finally {
      closeSync(this.fd);
    }
  }

  /**
   * Compaction: writes `records` (the live state, taken synchronously by the caller just before this call) as
   * the next generation, syncs it, switches to it and removes older files. Records still pending at that moment
   * are part of the snapshot, so they are not written again; their waiters resolve when the snapshot is on disk.
   * If anything fails before the switch, the new file is removed and the pending records stay pending: they are
   * written to the current generation, and only then is anyone acknowledged for them.
   */
  async compact(records: readonly unknown[]): Promise<void> {
    const snapshotSeq = this.seq;
    this.compacting = true;
    let failure: unknown;
    try {
      while (this.flushing) await new Promise((r) => setTimeout(r, 1));
      this.flushing = true;
      try {
        await this.writeGeneration(records);
      } finally {
        this.flushing = false;
      }
      this.dropSnapshotted(snapshotSeq);
      this.writtenSeq = Math.max(this.writtenSeq, snapshotSeq);
      this.recovered();
      this.resolveWritten();
    } catch (error) {
      failure = error;
    } finally {
      this.compacting = false;
    }
    if (this.pending.length > 0) await this.flush();
    if (failure !== undefined) throw failure;
  }

  /**
   * Writes and syncs the next generation, opens it, names it in `newest-generation` and removes the older files
   * (kept when it could not be named); nothing changes if it throws.
   */
  private async writeGeneration(records: readonly unknown[]): Promise<void> {
    const next = this.generation + 1;
    const tmp = `${this.fileFor(next)}.tmp`;
    let fd: number | undefined;
    let size = 0;
    try {
      const handle = await fsp.open(tmp, 'w', STORE_FILE_MODE);
      try {
        let chunk: Buffer[] = [];
        let chunkBytes = 0;
        for (const record of records) {
          const bytes = encodeRecord(record);
          chunk.push(bytes);
          chunkBytes += bytes.length;
          if (chunkBytes > 1 << 20) {
            await handle.writev(chunk);
            size += chunkBytes;
            chunk = [];
            chunkBytes = 0;
          }
        }
        if (chunk.length > 0) await handle.writev(chunk);
        size += chunkBytes;
        await handle.sync();
      } finally {
        await handle.close();
      }
      // Opened before the rename, so that nothing after the rename can fail.
      fd = openSync(tmp, 'a', STORE_FILE_MODE);
      renameSync(tmp, this.fileFor(next));
    } catch (error) {
      if (fd !== undefined) closeSync(fd);
      removeFailedFile(tmp);
      throw error;
    }
    // From the rename on, `next` is the newest file and a start reads it: the writer must append there, whatever
    // happens to the marker. (Removing `next` when the marker failed left it behind when the removal failed too, and
    // a start then read that stale snapshot instead of what the writer went on appending to the older file.) A
    // marker naming an older generation than the files hold is only less strict. Without it the older files stay
    // (a start reads the newest and says the others are superseded): the marker's first step syncs the folder, so
    // its failure may mean the rename is not durable yet, and the older files are then all a power loss leaves.
    let named = true;
    try {
      await writeNewestGenerationAsync(this.options.dir, next);
    } catch (error) {
      named = false;
      this.options.onMarkerFailed?.(error as Error);
    }
    const old = this.fd;
    const oldGeneration = this.generation;
    this.fd = fd;
    this.generation = next;
    this.fileBytes = size;
    this.snapshotBytes = size;
    closeSync(old);
    if (!named) return;
    for (let g = oldGeneration; g >= 0; g--) {
      const file = this.fileFor(g);
      if (existsSync(file)) unlinkSync(file);
      else break;
    }
  }

  /** Pending records up to `snapshotSeq` are in the snapshot just written: they must not follow it again. */
  private dropSnapshotted(snapshotSeq: number): void {
    const firstPending = this.seq - this.pending.length + 1;
    const covered = Math.min(this.pending.length, snapshotSeq - firstPending + 1);
    if (covered <= 0) return;
    for (let i = 0; i < covered; i++) this.pendingBytes -= this.pending[i]!.length;
    this.pending = this.pending.slice(covered);
  }
}

/** A half-written next generation is not left behind; anything else at that path (not ours) is. */
function removeFailedFile(file: string): void {
  try {
    if (statSync(file).isFile()) unlinkSync(file);
  } catch {
    // Already gone, or cannot be removed: it is never read (only `journal-NNNNNNNN.log` files are).
  }
}

function writeAll(fd: number, buffers: Buffer[]): Promise<void> {
  const data = buffers.length === 1 ? buffers[0]! : Buffer.concat(buffers);
  return new Promise((resolve, reject) => {
    const step = (offset: number): void => {
      write(fd, data, offset, data.length - offset, null, (error, written) => {
        if (error) reject(error);
        else if (offset + written < data.length) step(offset + written);
        else resolve();
      });
    };
    step(0);
  });
}

function fdatasyncAsync(fd: number, resolve: () => void, reject: (e: Error) => void): void {
  fdatasync(fd, (error) => (error ? reject(error) : resolve()));
}
