import { createHash, sign } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { open, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../src/log.js';
import { silentLogger } from '../src/log.js';
import { BulwarkError } from '../src/errors.js';
import { AuditAction } from './actions.js';
import type { AuditConfig } from './config.js';
import type { AuditEvent, AuditSink } from './events.js';
import { HEAD_FILE, auditFileName, listAuditFiles, readFileTail, type AuditHead } from './files.js';
import { recoverChainHead, type TornRegion } from './recover.js';
import { PostgresAuditMirror, type AuditMirror, type AuditMirrorStats } from './mirror.js';
import { GENESIS_HASH, checkpointMessage, encodeRecord, parseRecordLine } from './record.js';
import { loadSigningKey, signingKeyFile, type SigningKey } from './signing-key.js';

export type FsyncPolicy = 'always' | 'interval' | 'never';
export type FailurePolicy = 'fail-closed' | 'continue';

/** The part of an open audit file the writer uses; `node:fs/promises` FileHandle satisfies it. */
export interface AuditFileHandle {
  /** May write fewer bytes than asked (a full disk tears the batch at any byte); the writer loops. */
  write(buffer: Buffer, offset: number, length: number): Promise<{ bytesWritten: number }>;
  datasync(): Promise<void>;
  close(): Promise<void>;
}

/** How the writer creates audit files; tests inject one to make a failing disk fail at an exact byte or call. */
export interface AuditFileSystem {
  /** Called with flags `ax` only: a new file, never an existing one. */
  open(path: string, flags: 'ax', mode: number): Promise<AuditFileHandle>;
}

const nodeFileSystem: AuditFileSystem = { open: (path, flags, mode) => open(path, flags, mode) };

export interface AuditWriterOptions {
  directory: string;
  signingKey: SigningKey;
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
  batchDelayMs: number;
  batchMaxRecords: number;
  queueMax: number;
  onFailure: FailurePolicy;
  retryInitialMs: number;
  retryMaxMs: number;
  /** 0 disables periodic checkpoints (rotation and shutdown still write one). */
  checkpointIntervalMs: number;
  rotateMaxBytes: number;
  rotateMaxAgeMs: number;
  /** 0: no limit. */
  retentionMaxFiles: number;
  /** 0: keep forever. */
  retentionMaxAgeMs: number;
  logger?: Logger;
  /** Epoch milliseconds; injected by tests. */
  now?: () => number;
  /** Called when the writer starts or stops failing, so the broker can raise or clear its `$SYS` alarm. */
  onStateChange?: (stats: AuditWriterStats) => void;
  /** Gets every line once it is written to the file (`audit.mirror`); closed with the writer. */
  mirror?: AuditMirror;
  /** Creates the audit files; `node:fs/promises` unless a test injects failures. */
  fileSystem?: AuditFileSystem;
}

/** Counters for `$SYS/broker/audit/*` and the metrics endpoint. */
export interface AuditWriterStats {
  /** Records written to disk (broker events and the writer's own records). */
  written: number;
  /** Events lost: queue full, or still queued when the writer was closed while failing. */
  dropped: number;
  /** Failed write or fsync attempts. */
  failures: number;
  queueDepth: number;
  checkpoints: number;
  /** True while the last write attempt failed. */
  failing: boolean;
  /** See AuditSink.writable. */
  writable: boolean;
  /** errno code of the last failure, e.g. `ENOSPC`; never a message that could quote data. */
  lastError: string | undefined;
  /** Sequence number of the last record written. */
  seq: number;
  file: string | undefined;
  /** With `audit.mirror`: the mirror's own counters. */
  mirror?: AuditMirrorStats;
}

/** Builds writer options from the `audit:` configuration section; loads or creates the signing key. */
export function auditWriterOptions(
  config: AuditConfig,
  dataDir: string,
  extras: Pick<AuditWriterOptions, 'logger' | 'now' | 'onStateChange'> = {},
): AuditWriterOptions {
  const keyFile = signingKeyFile(config.signing_key_file, dataDir);
  const mirror = config.mirror
    ? new PostgresAuditMirror({ config: config.mirror, logger: extras.logger ?? silentLogger })
    : undefined;
  return {
    directory: config.directory ?? join(dataDir, 'audit'),
    signingKey: loadSigningKey(keyFile, config.signing_key_file === undefined),
    fsync: config.fsync,
    fsyncIntervalMs: config.fsync_interval,
    batchDelayMs: config.batch_delay,
    batchMaxRecords: config.batch_max_records,
    queueMax: config.queue_max,
    onFailure: config.on_failure,
    retryInitialMs: config.retry_initial,
    retryMaxMs: config.retry_max,
    checkpointIntervalMs: config.checkpoint_interval,
    rotateMaxBytes: config.rotate_max_bytes,
    rotateMaxAgeMs: config.rotate_max_age,
    retentionMaxFiles: config.retention_max_files,
    retentionMaxAgeMs: config.retention_max_age,
    ...(mirror ? { mirror } : {}),
    ...extras,
  };
}

interface QueuedEvent {
  event: AuditEvent;
  timestamp: string;
}

interface OpenFile {
  name: string;
  handle: AuditFileHandle;
  size: number;
  createdAt: number;
  dirty: boolean;
  /** audit-head.json names this file. */
  announced: boolean;
}

interface PendingDeletion {
  name: string;
  event: AuditEvent;
}

type BatchItem = { kind: 'event' } | { kind: 'internal' } | { kind: 'checkpoint'; reason: string };

const ALARM_LOG_EVERY_MS = 10_000;

/**
 * Opens the audit directory, seals a torn tail left by a crash, applies retention and returns a running writer.
 * Throws BulwarkError only for problems an operator must fix before the broker may start (unreadable log end).
 */
export async function openAuditWriter(options: AuditWriterOptions): Promise<AuditWriter> {
  const writer = new AuditWriter(options);
  await writer.start();
  return writer;
}

/**
 * The broker's AuditSink: a bounded queue in front of a single asynchronous worker that appends hash-chained
 * JSON Lines in batches (group commit). `record()` only stamps and enqueues, so the broker's hot path never waits
 * for the disk; everything that touches the file runs in `run()`, one batch at a time.
 */
export class AuditWriter implements AuditSink {
  private readonly opts: AuditWriterOptions;
  private readonly logger: Logger;
  private readonly now: () => number;
  private queue: QueuedEvent[] = [];
  /** Writer records (seals, retention, recovery) go first and are never dropped by the queue bound. */
  private internal: AuditEvent[] = [];
  private pendingSeals: TornRegion[] = [];
  private pendingDeletions: PendingDeletion[] = [];
  private headSeq = 0;
  private headHash = GENESIS_HASH;
  private lastWasCheckpoint = false;
  /** Clock time of the last checkpoint written (or of the start): the interval is counted from here. */
  private lastCheckpointAt = 0;
  /** Clock time the batch being written was stamped with: a checkpoint in it dates from then. */
  private batchStampAt = 0;
  private file: OpenFile | undefined;
  private checkpointDue: 'interval' | 'shutdown' | undefined;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private lastSyncAt = 0;
  private stampAt = Number.NaN;
  private stamp = '';
  private retryDelay: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private closePromise: Promise<void> | undefined;
  private retrying = false;
  /** From the first failed attempt until a write succeeds; unlike `failing`, close() does not clear it. */
  private outage = false;
  private closed = false;
  private lastAlarmLogAt = Number.NEGATIVE_INFINITY;
  private outageDropped = 0;
  private outageFailures = 0;
  private stat: Omit<AuditWriterStats, 'queueDepth' | 'writable' | 'seq' | 'file'> = {
    written: 0,
    dropped: 0,
    failures: 0,
    checkpoints: 0,
    failing: false,
    lastError: undefined,
  };

  constructor(options: AuditWriterOptions) {
    this.opts = options;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.retryDelay = options.retryInitialMs;
  }

  get writable(): boolean {
    if (this.opts.onFailure !== 'fail-closed') return true;
    return !this.stat.failing && !this.closed && this.queue.length < this.opts.queueMax;
  }

  /** Events waiting to be written; cheap enough to poll per event. */
  get queueDepth(): number {
    return this.queue.length + this.internal.length;
  }

  stats(): AuditWriterStats {
    return {
      ...this.stat,
      queueDepth: this.queue.length + this.internal.length,
      writable: this.writable,
      seq: this.headSeq,
      file: this.file?.name,
      ...(this.opts.mirror ? { mirror: this.opts.mirror.stats() } : {}),
    };
  }

  /** The broker's entry point. Stamps the event and queues it; never throws, never waits. */
  record(event: AuditEvent): void {
    try {
      if (this.closed || this.queue.length >= this.opts.queueMax) {
        this.drop(1);
        return;
      }
      this.queue.push({ event, timestamp: this.timestamp() });
      if (this.closing) {
        // Recorded while shutting down: the log must still end with a shutdown checkpoint, after this event.
        this.checkpointDue = 'shutdown';
        return;
      }
      this.schedule(this.queue.length >= this.opts.batchMaxRecords ? 0 : this.opts.batchDelayMs);
    } catch {
      this.drop(1);
    }
  }

  /** The ISO 8601 stamp of now; a storm records many events per millisecond, so the last one is reused. */
  private timestamp(): string {
    const now = this.now();
    if (now !== this.stampAt) {
      this.stampAt = now;
      this.stamp = new Date(now).toISOString();
    }
    return this.stamp;
  }

  /** Appends a signed checkpoint now (also done on the configured interval, at rotation and at shutdown). */
  checkpoint(): Promise<void> {
    this.checkpointDue ??= 'interval';
    return this.flush();
  }

  /** Resolves once everything queued before the call is on disk, or the writer is failing. */
  async flush(): Promise<void> {
    for (;;) {
      if (this.running) {
        await this.running;
        continue;
      }
      if (this.stat.failing || !this.hasWork()) return;
      await this.kick();
    }
  }

  /** Writes the queue and a shutdown checkpoint, then closes the file. Events recorded afterwards are dropped. */
  close(): Promise<void> {
    // A second caller waits for the same shutdown instead of closing the file under the first one.
    this.closePromise ??= this.shutdown();
    return this.closePromise;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    this.clearTimers();
    this.checkpointDue = 'shutdown';
    if (this.stat.failing) {
      // One last attempt: shutting down must not wait for a disk that may never come back.
      this.stat.failing = false;
    }
    await this.flush();
    // From here on record() drops and counts: nothing may be queued that no worker will ever write.
    this.closed = true;
    if (this.queue.length > 0) {
      const lost = this.queue.length;
      this.queue = [];
      this.drop(lost);
      this.logger.error(
        { dir: this.opts.directory, lost, code: this.stat.lastError },
        this.stat.failing
          ? 'audit log: events lost at shutdown because the log could not be written'
          : 'audit log: events recorded while the shutdown checkpoint was being written were dropped',
      );
    }
    await this.closeFile(true);
    await this.opts.mirror?.close();
  }

  async start(): Promise<void> {
    mkdirSync(this.opts.directory, { recursive: true, mode: 0o750 });
    this.recoverHead();
    this.lastCheckpointAt = this.now();
    this.planRetention();
    if (this.opts.checkpointIntervalMs > 0) {
      this.checkpointTimer = setInterval(() => {
        this.planRetention();
        if (!this.lastWasCheckpoint || this.queue.length > 0) this.checkpointDue ??= 'interval';
        this.schedule(0);
      }, this.opts.checkpointIntervalMs);
      this.checkpointTimer.unref();
    }
    if (this.hasWork()) await this.flush();
  }

  // ---- start-up -------------------------------------------------------------------------------------------

  /**
   * Finds the chain head and every torn tail after it, after checking the end of the log (recover.ts): a run
   * continues and signs the chain, so it must first vouch for what it continues. Torn bytes are never rewritten;
   * they are sealed by records in a new file.
   */
  private recoverHead(): void {
    const found = recoverChainHead(this.opts.directory, this.opts.signingKey);
    if (found.headMissing) {
      throw new BulwarkError(
        'BULWARK_ERR_AUDIT',
        `the audit log in ${this.opts.directory} has no ${HEAD_FILE}, which the broker that wrote it keeps: the newest audit files may have been deleted with it`,
        undefined,
        `run \`bulwark audit verify ${this.opts.directory}\`, keep the directory as evidence (move it aside) and start with an empty audit directory to continue`,
      );
    }
    this.headSeq = found.seq;
    this.headHash = found.hash;
    this.lastWasCheckpoint = found.lastWasCheckpoint;
    this.pendingSeals = found.seals;
    if (found.seals.length > 0) {
      this.logger.warn(
        { dir: this.opts.directory, files: found.seals.map((s) => s.file), seq: this.headSeq },
        'audit log: torn tail from a crash found; sealing it with a recorded event',
      );
    }
  }

  // ---- scheduling -----------------------------------------------------------------------------------------

  private hasWork(): boolean {
    return (
      this.queue.length > 0 ||
      this.internal.length > 0 ||
      this.pendingSeals.length > 0 ||
      this.checkpointDue !== undefined
    );
  }

  private schedule(delayMs: number): void {
    if (this.stat.failing || this.closed) return;
    const at = this.now() + delayMs;
    if (this.timer !== undefined && this.timerAt <= at) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Number.POSITIVE_INFINITY;
      void this.kick();
    }, delayMs);
  }

  private kick(): Promise<void> {
    if (!this.running) {
      this.running = this.run().finally(() => {
        this.running = undefined;
      });
    }
    return this.running;
  }

  private clearTimers(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.checkpointTimer !== undefined) clearInterval(this.checkpointTimer);
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    if (this.syncTimer !== undefined) clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    this.checkpointTimer = undefined;
    this.retryTimer = undefined;
  }

  // ---- the worker -----------------------------------------------------------------------------------------

  private async run(): Promise<void> {
    while ((!this.stat.failing || this.retrying) && this.hasWork()) {
      try {
        if (this.file && this.shouldRotate(this.file)) await this.rotate();
        // writeBatch() itself ends an outage once a batch is on disk (see writeSucceeded()).
        const written = await this.writeBatch();
        if (written) await this.afterWrite();
        if (written && this.onlyEventsQueued()) break;
      } catch (error: unknown) {
        this.fail(error);
      }
    }
    if (this.stat.failing) return;
    if (this.queue.length > 0 && !this.closing) this.schedule(this.untilOldestBatchDue());
    await this.syncIfDue();
  }

  /**
   * Group commit under load: once a batch is on disk, events that arrived meanwhile wait for their own bounded
   * delay (`batch_delay`) instead of being written at once. Writing back to back made a busy broker pay a write and
   * an fdatasync for every one or two records (a reconnect storm ran at 1,317 connects/s with `fsync: always`,
   * 1,937 with `never`). A full batch, internal records, a checkpoint, shutdown and `flush()` still write at once.
   */
  private onlyEventsQueued(): boolean {
    return (
      !this.closing &&
      !this.stat.failing &&
      this.queue.length < this.opts.batchMaxRecords &&
      this.internal.length === 0 &&
      this.pendingSeals.length === 0 &&
      this.checkpointDue === undefined
    );
  }

  /** How long until the oldest queued event has waited `batch_delay`. */
  private untilOldestBatchDue(): number {
    const oldest = this.queue[0];
    if (!oldest) return this.opts.batchDelayMs;
    return Math.max(0, Date.parse(oldest.timestamp) + this.opts.batchDelayMs - this.now());
  }

  /** `fsync: interval`: an idle writer still syncs what it wrote within the interval. */
  private async syncIfDue(): Promise<void> {
    const file = this.file;
    if (this.opts.fsync !== 'interval' || !file?.dirty) return;
    const wait = this.lastSyncAt + this.opts.fsyncIntervalMs - this.now();
    if (wait > 0) {
      if (this.syncTimer === undefined && !this.closing) {
        this.syncTimer = setTimeout(() => {
          this.syncTimer = undefined;
          void this.kick();
        }, wait);
        this.syncTimer.unref();
      }
      return;
    }
    try {
      await this.syncFile(file);
      this.lastSyncAt = this.now();
    } catch (error: unknown) {
      this.fail(error);
    }
  }

  /**
   * A failed fdatasync leaves the file's unsynced bytes unknown (Linux may drop the dirty pages), so the file is
   * abandoned: the next record starts a new file rather than landing after bytes that may be missing or torn.
   */
  private async syncFile(file: OpenFile): Promise<void> {
    try {
      await file.handle.datasync();
      file.dirty = false;
    } catch (error: unknown) {
      if (this.file === file) await this.closeFile(false);
      throw error;
    }
  }

  private shouldRotate(file: OpenFile): boolean {
    if (file.size === 0) return false;
    // 0 is "off", as for the other durations, not "a new file after every batch".
    const ageLimit = this.opts.rotateMaxAgeMs;
    return file.size >= this.opts.rotateMaxBytes || (ageLimit > 0 && this.now() - file.createdAt >= ageLimit);
  }

  /** Ends the current file with a checkpoint so every closed file is signed to its last line. */
  private async rotate(): Promise<void> {
    if (!this.lastWasCheckpoint) {
      const saved = this.checkpointDue;
      this.checkpointDue = undefined;
      try {
        await this.writeBatch({ checkpointOnly: 'rotation' });
      } finally {
        // close() may have run while the rotation checkpoint was being written, and a failed write must not
        // swallow a pending request either: it must survive.
        this.checkpointDue = this.closing ? 'shutdown' : saved;
      }
      // A torn rotation checkpoint already closed the file; its seal starts the next one.
      if (!this.file) return;
    }
    await this.closeFile(this.opts.fsync !== 'never');
    this.planRetention();
  }

  /**
   * Serialises one batch from the chain head, appends it with one write and syncs per policy. On a partial write
   * the complete lines count as written and the torn rest is sealed in a new file; the events that did not make it
   * stay queued for the retry.
   */
  private async writeBatch(only?: { checkpointOnly: 'rotation' }): Promise<boolean> {
    const items: BatchItem[] = [];
    const lines: string[] = [];
    const hashes: string[] = [];
    let seq = this.headSeq;
    let hash = this.headHash;
    const push = (event: AuditEvent, timestamp: string, item: BatchItem): void => {
      seq += 1;
      const encoded = encodeRecord(event, timestamp, seq, hash);
      hash = encoded.hash;
      lines.push(encoded.line);
      hashes.push(hash);
      items.push(item);
    };
    const stamp = this.timestamp();
    this.batchStampAt = this.stampAt;
    const checkpointEvent = (reason: string): AuditEvent => {
      const signature = sign(null, checkpointMessage(seq, hash, reason), this.opts.signingKey.privateKey).toString(
        'base64',
      );
      return {
        event: { action: AuditAction.auditCheckpoint, outcome: 'success', reason: `checkpoint at ${reason}` },
        actor: 'audit-writer',
        audit: {
          reason,
          checkpoint: {
            seq,
            hash,
            key_id: this.opts.signingKey.keyId,
            public_key: this.opts.signingKey.publicKeyDer,
            signature,
          },
        },
      };
    };

    if (only) {
      push(checkpointEvent(only.checkpointOnly), stamp, { kind: 'checkpoint', reason: only.checkpointOnly });
    } else {
      for (const seal of this.pendingSeals) push(sealEvent(seal), stamp, { kind: 'internal' });
      for (const event of this.internal) push(event, stamp, { kind: 'internal' });
      const room = Math.max(0, this.opts.batchMaxRecords - items.length);
      const take = Math.min(room, this.queue.length);
      for (let i = 0; i < take; i++) {
        const q = this.queue[i] as QueuedEvent;
        push(q.event, q.timestamp, { kind: 'event' });
      }
      const queueDrained = take === this.queue.length;
      // Under sustained load the queue never drains, and waiting for it starved interval checkpoints (75,000
      // records and none signed in 9 s): an interval checkpoint that is due ends this batch whatever is queued. The
      // injected clock decides, as well as the timer, because a flooded event loop runs timers late.
      if (
        this.checkpointDue === undefined &&
        this.opts.checkpointIntervalMs > 0 &&
        items.length > 0 &&
        this.stampAt - this.lastCheckpointAt >= this.opts.checkpointIntervalMs
      ) {
        this.checkpointDue = 'interval';
      }
      // The first batch after an outage is followed by its audit.write_recovered record, and nothing may follow a
      // shutdown checkpoint: that checkpoint waits for the next batch.
      const shutdownHeld = this.checkpointDue === 'shutdown' && this.outage;
      if (shutdownHeld) {
        // Nothing else to write: probe the disk with an interval checkpoint, so the recovery record still comes
        // before the shutdown checkpoint.
        if (items.length === 0) push(checkpointEvent('interval'), stamp, { kind: 'checkpoint', reason: 'interval' });
      } else if (
        this.checkpointDue &&
        (queueDrained || this.checkpointDue === 'interval') &&
        (this.checkpointDue === 'shutdown' || items.length > 0 || !this.lastWasCheckpoint)
      ) {
        push(checkpointEvent(this.checkpointDue), stamp, { kind: 'checkpoint', reason: this.checkpointDue });
      } else if (this.checkpointDue && queueDrained) {
        this.checkpointDue = undefined;
      }
    }
    if (lines.length === 0) return false;

    const file = await this.ensureFile(this.headSeq + 1);
    const buffer = Buffer.from(lines.join(''), 'utf8');
    let written = 0;
    let writeError: unknown;
    try {
      while (written < buffer.length) {
        const { bytesWritten } = await file.handle.write(buffer, written, buffer.length - written);
        if (bytesWritten <= 0) throw Object.assign(new Error('write wrote nothing'), { code: 'EIO' });
        written += bytesWritten;
      }
    } catch (error: unknown) {
      writeError = error;
    }

    const complete = writeError === undefined ? lines.length : countCompleteLines(lines, written);
    const startOffset = file.size;
    file.size += written;
    if (written > 0) file.dirty = true;
    this.consume(
      items.slice(0, complete),
      complete > 0 ? { seq: this.headSeq + complete, hash: hashes[complete - 1] as string } : undefined,
    );
    // The mirror gets what the file has; it only queues, so a slow database never holds the writer up.
    if (complete > 0) this.opts.mirror?.enqueue(lines.slice(0, complete));

    if (writeError !== undefined) {
      const completeBytes = Buffer.byteLength(lines.slice(0, complete).join(''), 'utf8');
      if (written > completeBytes) {
        // A torn line now ends this file: never append after it; seal it from the next file.
        const torn = buffer.subarray(completeBytes, written);
        this.pendingSeals.push({
          file: file.name,
          offset: startOffset + completeBytes,
          length: torn.length,
          sha256: sha256Hex(torn),
        });
        // The complete records before the tear are kept, so they are synced like any other (`interval` too).
        await this.closeFile(this.opts.fsync !== 'never');
      }
      throw writeError;
    }
    await this.syncPerPolicy(file);
    this.writeSucceeded();
    return true;
  }

  private consume(items: BatchItem[], head: { seq: number; hash: string } | undefined): void {
    if (!head) return;
    this.headSeq = head.seq;
    this.headHash = head.hash;
    let events = 0;
    let internal = 0;
    for (const item of items) {
      if (item.kind === 'event') events++;
      else if (item.kind === 'internal') internal++;
      else this.stat.checkpoints++;
    }
    // Internal records are seals first, then the internal queue, in the order they were pushed.
    const seals = Math.min(internal, this.pendingSeals.length);
    this.pendingSeals.splice(0, seals);
    this.internal.splice(0, internal - seals);
    this.queue.splice(0, events);
    this.stat.written += items.length;
    const last = items[items.length - 1];
    this.lastWasCheckpoint = last?.kind === 'checkpoint';
    // close() may have asked for the shutdown checkpoint while this batch was being written: only a shutdown
    // checkpoint satisfies it, so the log still ends with one.
    if (last?.kind === 'checkpoint' && (last.reason === 'shutdown' || !this.closing)) this.checkpointDue = undefined;
    if (items.some((item) => item.kind === 'checkpoint')) this.lastCheckpointAt = this.batchStampAt;
    // The shutdown checkpoint is the last line of the run: recovery and verify refuse anything after it, so events
    // recorded while it was being written are dropped and counted by shutdown(), never appended unsigned.
    if (last?.kind === 'checkpoint' && last.reason === 'shutdown') this.closed = true;
  }

  private async afterWrite(): Promise<void> {
    if (this.stat.failing) return;
    if (this.pendingDeletions.length > 0 && this.internal.length === 0) await this.deletePlannedFiles();
  }

  /**
   * A batch is in the file and synced per policy: the first one after failures ends the outage. The recovery
   * record is queued here, inside the worker, so it is written in this same run and before the shutdown
   * checkpoint; queued from outside the worker it could land after the checkpoint of a concurrent close().
   */
  private writeSucceeded(): void {
    // Only a write that succeeded ends an outage; `failing` must not flicker while a retry is in flight.
    this.stat.failing = false;
    this.retryDelay = this.opts.retryInitialMs;
    if (!this.outage) return;
    this.outage = false;
    this.logger.warn(
      { dir: this.opts.directory, dropped: this.outageDropped, failures: this.outageFailures },
      'audit log writable again',
    );
    this.pushInternal({
      event: {
        action: AuditAction.auditWriteRecovered,
        outcome: 'success',
        reason: `audit log writable again after ${this.outageFailures} failed attempts; ${this.outageDropped} events dropped`,
      },
      actor: 'audit-writer',
      audit: { dropped: this.outageDropped, failures: this.outageFailures, reason: this.stat.lastError },
    });
    this.outageDropped = 0;
    this.outageFailures = 0;
    this.opts.onStateChange?.(this.stats());
  }

  /** Queues a writer record; while closing, the log must still end with a shutdown checkpoint after it. */
  private pushInternal(event: AuditEvent): void {
    this.internal.push(event);
    if (this.closing) this.checkpointDue = 'shutdown';
  }

  private async syncPerPolicy(file: OpenFile): Promise<void> {
    const policy = this.opts.fsync;
    if (policy === 'never') return;
    // With `interval`, a later batch, rotation, close or the idle timer in syncIfDue() syncs it.
    if (policy === 'interval' && this.now() - this.lastSyncAt < this.opts.fsyncIntervalMs && !this.closing) return;
    await this.syncFile(file);
    this.lastSyncAt = this.now();
  }

  private async ensureFile(firstSeq: number): Promise<OpenFile> {
    if (!this.file) {
      let generation = 0;
      while (existsSync(join(this.opts.directory, auditFileName(firstSeq, generation)))) generation++;
      const name = auditFileName(firstSeq, generation);
      // 'ax': O_APPEND so every write lands at the end, O_EXCL so an existing file is never reopened for writing.
      const fs = this.opts.fileSystem ?? nodeFileSystem;
      const handle = await fs.open(join(this.opts.directory, name), 'ax', 0o640);
      this.file = { name, handle, size: 0, createdAt: this.now(), dirty: false, announced: false };
    }
    const file = this.file;
    if (!file.announced) {
      // Before the file's first record: a crash in between leaves a file newer than the head, which start accepts,
      // never a head naming a file that does not exist. A failure here is retried like a failed write.
      await writeAuditHead(this.opts.directory, { file: file.name, first_seq: firstSeq }, this.opts.fsync !== 'never');
      file.announced = true;
      if (this.opts.fsync !== 'never') await syncDirectory(this.opts.directory);
    }
    return file;
  }

  private async closeFile(sync: boolean): Promise<void> {
    const file = this.file;
    if (!file) return;
    this.file = undefined;
    try {
      if (sync && file.dirty) await file.handle.datasync();
    } catch (error: unknown) {
      this.countFailure(error);
    } finally {
      await file.handle.close().catch(() => undefined);
    }
  }

  // ---- retention ------------------------------------------------------------------------------------------

  /**
   * Plans deleting the oldest whole files beyond the limits. The deletion is recorded first (file, sequence range
   * and last hash) and the files are unlinked only once that record is on disk, so `verify` can tell a log that
   * starts after seq 1 because of retention from one whose head was cut off.
   */
  private planRetention(): void {
    const { retentionMaxFiles, retentionMaxAgeMs } = this.opts;
    if (retentionMaxFiles === 0 && retentionMaxAgeMs === 0) return;
    if (this.pendingDeletions.length > 0) return;
    const files = listAuditFiles(this.opts.directory).filter((f) => f.name !== this.file?.name);
    // The current file, or the one the next batch creates, counts too.
    const total = files.length + 1;
    const now = this.now();
    let remaining = total;
    for (const f of files) {
      const tail = readFileTail(join(this.opts.directory, f.name), 1);
      const last = tail.lastLines[0] !== undefined ? parseRecordLine(tail.lastLines[0]) : undefined;
      // A file without an intact record cannot say where the chain stood; stop rather than guess.
      if (!last || last.seq >= this.headSeq) break;
      const tooMany = retentionMaxFiles > 0 && remaining > retentionMaxFiles;
      const tooOld = retentionMaxAgeMs > 0 && now - Date.parse(last['@timestamp']) > retentionMaxAgeMs;
      if (!tooMany && !tooOld) break;
      const reason = tooMany ? 'max_files' : 'max_age';
      const event: AuditEvent = {
        event: {
          action: AuditAction.auditRetentionDeleted,
          outcome: 'success',
          reason: `retention ${reason}: deleted ${f.name}`,
        },
        actor: 'audit-writer',
        audit: { file: f.name, first_seq: f.firstSeq, last_seq: last.seq, last_hash: last.hash, reason },
      };
      this.pendingDeletions.push({ name: f.name, event });
      this.pushInternal(event);
      // Signed in the same batch: verify accepts a log that starts after seq 1 only on a signed retention record.
      this.checkpointDue ??= 'interval';
      remaining--;
    }
    if (this.pendingDeletions.length > 0 && !this.closing) this.schedule(0);
  }

  private async deletePlannedFiles(): Promise<void> {
    if (this.file?.dirty) await this.syncFile(this.file);
    const deletions = this.pendingDeletions;
    this.pendingDeletions = [];
    for (const d of deletions) {
      try {
        await unlink(join(this.opts.directory, d.name));
      } catch (error: unknown) {
        this.logger.error(
          { dir: this.opts.directory, file: d.name, code: errorCode(error) },
          'audit log: retention could not delete a file; it stays and is retried at the next rotation',
        );
      }
    }
  }

  // ---- failure --------------------------------------------------------------------------------------------

  private countFailure(error: unknown): void {
    this.stat.failures++;
    this.outageFailures++;
    this.stat.lastError = errorCode(error);
  }

  /**
   * A failed write: with fail-closed the sink stops being writable (the broker refuses new security actions);
   * with continue the broker keeps serving and events beyond the queue bound are dropped and counted. Either way
   * the writer retries with exponential backoff and logs an alarm, and on recovery records what was lost.
   */
  private fail(error: unknown): void {
    this.countFailure(error);
    this.outage = true;
    this.retrying = false;
    const wasFailing = this.stat.failing;
    this.stat.failing = true;
    const now = this.now();
    if (!wasFailing || now - this.lastAlarmLogAt >= ALARM_LOG_EVERY_MS) {
      this.lastAlarmLogAt = now;
      this.logger.error(
        {
          dir: this.opts.directory,
          code: this.stat.lastError,
          on_failure: this.opts.onFailure,
          queue_depth: this.queue.length,
          dropped: this.stat.dropped,
          retry_ms: this.retryDelay,
        },
        this.opts.onFailure === 'fail-closed'
          ? 'ALARM audit log cannot be written: refusing new connections and security actions until it can'
          : 'ALARM audit log cannot be written: still serving, events beyond the queue bound are dropped',
      );
    }
    if (!wasFailing) this.opts.onStateChange?.(this.stats());
    if (this.closing) return;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.retryDelay * 2, this.opts.retryMaxMs);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.retry();
    }, delay);
  }

  /**
   * One retry attempt. Recovery itself (clearing `failing`, the `audit.write_recovered` record) happens in the
   * worker at the first successful write, never here after the run: code here would race a concurrent close().
   */
  private async retry(): Promise<void> {
    if (this.queue.length === 0 && this.internal.length === 0 && this.pendingSeals.length === 0) {
      // Nothing queued (a failed fsync): probe the disk with a checkpoint, a record worth having anyway. A
      // pending checkpoint alone is not enough: after a checkpoint it would be skipped and nothing written.
      this.lastWasCheckpoint = false;
      this.checkpointDue ??= 'interval';
    }
    this.retrying = true;
    try {
      await this.kick();
    } finally {
      this.retrying = false;
    }
  }

  private drop(n: number): void {
    this.stat.dropped += n;
    this.outageDropped += n;
    const now = this.now();
    if (now - this.lastAlarmLogAt >= ALARM_LOG_EVERY_MS) {
      this.lastAlarmLogAt = now;
      this.logger.error(
        { dir: this.opts.directory, dropped: this.stat.dropped, queue_max: this.opts.queueMax },
        'ALARM audit events dropped: the queue to the audit writer is full or the writer is closed',
      );
    }
  }
}

function sealEvent(seal: TornRegion): AuditEvent {
  return {
    event: {
      action: AuditAction.auditTornTailSealed,
      outcome: 'success',
      reason: `sealed ${seal.length} torn bytes at the end of ${seal.file} (crash or failed write)`,
    },
    actor: 'audit-writer',
    audit: { file: seal.file, offset: seal.offset, length: seal.length, sha256: seal.sha256 },
  };
}

function countCompleteLines(lines: readonly string[], written: number): number {
  let bytes = 0;
  for (let i = 0; i < lines.length; i++) {
    bytes += Buffer.byteLength(lines[i] as string, 'utf8');
    if (bytes > written) return i;
  }
  return lines.length;
}

function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Replaces audit-head.json by rename, so a crash leaves the old pointer or the new one, never a torn one. */
async function writeAuditHead(dir: string, head: AuditHead, sync: boolean): Promise<void> {
  const tmp = join(dir, `${HEAD_FILE}.tmp`);
  await rm(tmp, { force: true });
  const handle = await open(tmp, 'wx', 0o640);
  try {
    await handle.writeFile(`${JSON.stringify(head)}\n`);
    if (sync) await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(tmp, join(dir, HEAD_FILE));
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the file's own sync still covers its data.
  } finally {
    await handle.close();
  }
}

function errorCode(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') {
    return error.code;
  }
  return 'UNKNOWN';
}
