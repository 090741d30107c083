import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Broker } from '../broker.js';
import type { Logger } from '../log.js';
import type { Message } from '../routing/message.js';
import type { Outbound, OutboundJournal } from '../session/outbound.js';
import type { Session } from '../session/session.js';
import {
  generationOf,
  journalFileName,
  journalFiles,
  JournalWriter,
  NEWEST_GENERATION_FILE,
  readJournal,
  readNewestGeneration,
  STORE_DIR_MODE,
  writeNewestGeneration,
  type Durability,
} from './journal.js';
import { BulwarkError } from '../errors.js';
import { isSysTopic } from '../sys/read-only.js';
import { messageRecord, outboundRecord, subscriptionRecord, willRecord, type StoreRecord } from './records.js';

export interface StoreOptions {
  dataDir: string;
  durability: Durability;
  flushIntervalMs: number;
  maxBatchDelayMs: number;
  compactMinBytes: number;
  repair: boolean;
  log: Logger;
}

/** While writes keep failing, how often the failure is logged again. */
const FAILURE_LOG_INTERVAL_MS = 60_000;

/**
 * Past this many epochs known to be in the file (one more with every failed compaction), the set starts over: a
 * message whose epoch is forgotten only has its body journaled once more.
 */
const MAX_VALID_EPOCHS = 64;

export interface LoadedJournal {
  records: StoreRecord[];
  files: string[];
  tornTailBytes: number;
  droppedBytes: number;
}

/**
 * Durable state for persistent sessions and retained messages. Clean sessions never touch it. The broker calls
 * the hooks as state changes; in `sync` mode acknowledgements wait for `durableThrough()`.
 */
export class SessionStore implements OutboundJournal {
  readonly dir: string;
  private writer: JournalWriter | undefined;
  private nextKey = 1;
  /**
   * Message bodies are journaled once (`outboundWithBody`); a message knows its number and the epoch it was written
   * in (`Message.journalNumber`, `journalEpoch`). An epoch is a stretch of appends that all went to one file: the file
   * loaded at start is epoch 0, a compaction's snapshot and the appends made while it is written get one each. A body
   * is referred to, not written again, only when its epoch is among `validEpochs`, those known to be in the file
   * appends go to now; forgetting one only costs a second copy of a body, never a reference to a body the file lacks.
   */
  private nextMessageNumber = 1;
  private appendEpoch = 0;
  private nextEpoch = 1;
  private validEpochs: Set<number> = new Set([0]);
  private compacting = false;
  /** What `newest-generation` named when the store was loaded; undefined when absent or unreadable. */
  private namedGeneration: number | undefined;
  /** The current episode of failing writes, for rate-limited logging. */
  private failure: { since: number; loggedAt: number; attempts: number } | undefined;
  healthy = true;

  constructor(private readonly options: StoreOptions) {
    this.dir = join(options.dataDir, 'store');
  }

  get durability(): Durability {
    return this.options.durability;
  }

  get enabled(): boolean {
    return this.writer !== undefined;
  }

  get lastSeq(): number {
    return this.writer?.lastSeq ?? 0;
  }

  get fileBytes(): number {
    return this.writer?.fileBytes ?? 0;
  }

  /**
   * Reads the newest journal file; throws a clear error on corruption (unless repairing). Every generation after
   * the first begins with a compaction's snapshot of the whole state, so an older file beside it is one a crash
   * left before the compaction removed it, and is not read: the snapshot also holds what records still waiting to be
   * written at that moment did (a delivered message's `d`, an ended session's `e`, a cleared retained message's `X`),
   * and those records never reached the older file, so replaying it first would bring all of that back.
   */
  load(): LoadedJournal {
    if (this.options.durability === 'none') return { records: [], files: [], tornTailBytes: 0, droppedBytes: 0 };
    mkdirSync(this.dir, { recursive: true, mode: STORE_DIR_MODE });
    const all = journalFiles(this.dir);
    this.checkNewestGeneration(all);
    const newest = all.at(-1);
    if (newest === undefined) return { records: [], files: [], tornTailBytes: 0, droppedBytes: 0 };
    if (all.length > 1)
      this.options.log.warn(
        { file: newest, superseded: all.slice(0, -1) },
        'store: older journal files left by an interrupted compaction are superseded by the newest; the next compaction removes them',
      );
    const file = join(this.dir, newest);
    const { records, tornTailBytes, droppedBytes } = readJournal<StoreRecord>(file, this.options.repair);
    if (tornTailBytes > 0 || droppedBytes > 0) JournalWriter.sealTornTail(file, tornTailBytes + droppedBytes);
    for (const record of records) {
      if ((record.t === 'o' || record.t === 'u' || record.t === 'd') && record.k >= this.nextKey)
        this.nextKey = record.k + 1;
      if (record.t === 'o' && record.mn !== undefined && record.mn >= this.nextMessageNumber)
        this.nextMessageNumber = record.mn + 1;
    }
    return { records, files: [newest], tornTailBytes, droppedBytes };
  }

  /**
   * Refuses a store whose newest journal file is gone (`newest-generation` names a later one than the folder holds):
   * starting would silently lose what it held. `--repair` starts from what is there, with a warning.
   */
  private checkNewestGeneration(files: string[]): void {
    let expected: number | undefined;
    try {
      expected = readNewestGeneration(this.dir);
      this.namedGeneration = expected;
    } catch (error) {
      if (!this.options.repair) throw error;
      this.options.log.warn({ err: error }, 'store repaired: newest-generation was unreadable; it is rewritten');
      return;
    }
    if (expected === undefined) return;
    const newest = files.length === 0 ? -1 : generationOf(files.at(-1)!);
    if (newest >= expected) return;
    const missing = join(this.dir, journalFileName(expected));
    if (!this.options.repair)
      throw new BulwarkError(
        'BULWARK_ERR_STORE_CORRUPT',
        `store journal ${missing} is missing: ${join(this.dir, NEWEST_GENERATION_FILE)} says the store reached ` +
          `generation ${expected}, the newest file left is ${newest < 0 ? 'none' : `generation ${newest}`}`,
        undefined,
        'restore the file from backup, or start with --repair to continue from what is left (its sessions and messages are lost)',
      );
    this.options.log.warn(
      { missing, expected, newest: newest < 0 ? null : newest },
      'store repaired: the newest journal file is missing; continuing from what is left',
    );
  }

  /** Opens the writer after loading; the newest generation continues. */
  open(generationFiles: string[]): void {
    if (this.options.durability === 'none') return;
    const last = generationFiles.at(-1);
    const generation = last ? generationOf(last) : 0;
    this.writer = new JournalWriter(
      {
        dir: this.dir,
        durability: this.options.durability,
        flushIntervalMs: this.options.flushIntervalMs,
        maxBatchDelayMs: this.options.maxBatchDelayMs,
        onError: (error) => this.writeFailed(error),
        onRecovered: () => this.writeRecovered(),
        onMarkerFailed: (error) =>
          this.options.log.warn(
            { err: error, dir: this.dir },
            'store compacted, but newest-generation could not be updated: the older journal files are kept until a later compaction names the new one',
          ),
      },
      generation,
    );
    // A new store, one from a version before the marker, one whose marker was unreadable (`load` refused that
    // unless repairing) or one repaired past a missing file: name what is there.
    if (this.namedGeneration !== generation) writeNewestGeneration(this.dir, generation);
  }

  /**
   * One line when writes start failing and one when they succeed again; in between (a retry every second) a
   * reminder at most every `FAILURE_LOG_INTERVAL_MS`, so a full disk does not also fill the log.
   */
  private writeFailed(error: Error): void {
    this.healthy = false;
    const now = Date.now();
    const failure = this.failure;
    if (failure) {
      failure.attempts++;
      if (now - failure.loggedAt < FAILURE_LOG_INTERVAL_MS) return;
      failure.loggedAt = now;
    } else this.failure = { since: now, loggedAt: now, attempts: 1 };
    const { attempts, since } = this.failure!;
    this.options.log.error(
      { err: error, file: this.writer?.file, attempts, failing_ms: now - since },
      'store write failed: acknowledgements held until it succeeds; retrying every second',
    );
  }

  private writeRecovered(): void {
    this.healthy = true;
    const failure = this.failure;
    this.failure = undefined;
    if (!failure) return;
    this.options.log.warn(
      { file: this.writer?.file, attempts: failure.attempts, failing_ms: Date.now() - failure.since },
      'store write recovered: held acknowledgements are sent',
    );
  }

  durableThrough(seq: number): Promise<void> {
    return this.writer ? this.writer.durableThrough(seq) : Promise.resolve();
  }

  get durableSeq(): number {
    return this.writer?.durableSeq ?? Number.MAX_SAFE_INTEGER;
  }

  private append(record: StoreRecord): void {
    this.writer?.append(record);
  }

  // --- hooks -------------------------------------------------------------------------------------------

  sessionSaved(session: Session, offlineSince: number | undefined): void {
    if (!this.writer) return;
    const record: StoreRecord = {
      t: 's',
      id: session.clientId,
      v: session.protocolVersion,
      exp: session.expiryInterval,
      subs: [...session.subscriptions.values()].map(subscriptionRecord),
    };
    if (offlineSince !== undefined) record.at = offlineSince;
    const will = session.will;
    if (will && offlineSince !== undefined) record.will = willRecord(will);
    this.append(record);
  }

  sessionEnded(clientId: string): void {
    this.append({ t: 'e', id: clientId });
  }

  added(clientId: string, out: Outbound): void {
    if (!this.writer) return;
    out.storeKey = this.nextKey++;
    this.append(this.outboundWithBody(clientId, out, this.appendEpoch, this.validEpochs));
  }

  /**
   * A message restored with its number from the loaded file, which appends continue: later sessions it is queued for
   * refer to the body that file holds.
   */
  restoredMessage(message: Message, n: number): void {
    message.journalNumber = n;
    message.journalEpoch = 0;
  }

  /**
   * The `o` record of `out`: with the message's body when no epoch in `valid` holds it yet (the body is then of
   * `epoch`), with only its number otherwise. One record either way: a second record per message for the body cost
   * 14–18% of a persistent subscriber's QoS 1 rate.
   */
  private outboundWithBody(clientId: string, out: Outbound, epoch: number, valid: ReadonlySet<number>): StoreRecord {
    const message = out.message;
    const known = message.journalNumber;
    if (known !== undefined && valid.has(message.journalEpoch!)) return outboundRecord(clientId, out, known, undefined);
    const n = known ?? this.nextMessageNumber++;
    message.journalNumber = n;
    message.journalEpoch = epoch;
    return outboundRecord(clientId, out, n, messageRecord(message));
  }

  updated(clientId: string, out: Outbound): void {
    if (out.storeKey === undefined) return;
    this.append({ t: 'u', id: clientId, k: out.storeKey, p: out.packetId, st: out.state });
  }

  removed(clientId: string, out: Outbound): void {
    if (out.storeKey === undefined) return;
    this.append({ t: 'd', id: clientId, k: out.storeKey });
    out.storeKey = undefined;
  }

  inboundQos2Received(clientId: string, packetId: number): void {
    this.append({ t: 'i', id: clientId, p: packetId });
  }

  inboundQos2Released(clientId: string, packetId: number): void {
    this.append({ t: 'j', id: clientId, p: packetId });
  }

  retainedChanged(topic: string, message: Message | undefined): void {
    if (message) this.append({ t: 'R', m: messageRecord(message) });
    else this.append({ t: 'X', topic });
  }

  // --- compaction --------------------------------------------------------------------------------------

  /** The live state as records: what a compacted generation contains; its message bodies are of `epoch`. */
  private snapshot(broker: Broker, epoch: number): StoreRecord[] {
    const records: StoreRecord[] = [];
    const inSnapshot = new Set([epoch]);
    for (const session of broker.sessions.values()) {
      if (!session.journal) continue;
      const offline = session.connected ? undefined : (session.offlineSince ?? Date.now());
      records.push({
        t: 's',
        id: session.clientId,
        v: session.protocolVersion,
        exp: session.expiryInterval,
        subs: [...session.subscriptions.values()].map(subscriptionRecord),
        ...(offline !== undefined ? { at: offline } : {}),
        ...(session.will && offline !== undefined ? { will: willRecord(session.will) } : {}),
      });
      for (const out of [...session.inflight.values(), ...session.queue]) {
        if (out.qos === 0) continue;
        out.storeKey ??= this.nextKey++;
        records.push(this.outboundWithBody(session.clientId, out, epoch, inSnapshot));
      }
      for (const id of session.inboundQos2) records.push({ t: 'i', id: session.clientId, p: id });
    }
    for (const message of broker.retained.all()) {
      // $SYS values are the running broker's own: journaling skips them and a restart recomputes them.
      if (!isSysTopic(message.topic)) records.push({ t: 'R', m: messageRecord(message) });
    }
    return records;
  }

  /** Compacts when the journal has grown well past the last snapshot. */
  maybeCompact(broker: Broker): void {
    const writer = this.writer;
    if (!writer || this.compacting) return;
    if (writer.fileBytes < Math.max(this.options.compactMinBytes, writer.snapshotBytes * 4)) return;
    void this.compact(broker);
  }

  async compact(broker: Broker): Promise<void> {
    const writer = this.writer;
    if (!writer || this.compacting) return;
    this.compacting = true;
    const before = this.validEpochs;
    const snapshotEpoch = this.nextEpoch++;
    const windowEpoch = this.nextEpoch++;
    try {
      const records = this.snapshot(broker, snapshotEpoch);
      // Until the writer has switched files or failed to, where appends land is open: only their own bodies count.
      this.appendEpoch = windowEpoch;
      this.validEpochs = new Set([windowEpoch]);
      await writer.compact(records);
      this.validEpochs = new Set([snapshotEpoch, windowEpoch]);
      this.options.log.info({ file: writer.file, bytes: writer.fileBytes }, 'store compacted');
    } catch (error) {
      // The appends meanwhile went to the current file, beside everything it held.
      this.validEpochs = before.size < MAX_VALID_EPOCHS ? new Set([...before, windowEpoch]) : new Set([windowEpoch]);
      this.options.log.error({ err: error }, 'store compaction failed; the current journal stays in use');
    } finally {
      this.compacting = false;
    }
  }

  async close(broker: Broker): Promise<void> {
    if (!this.writer) return;
    await this.compact(broker);
    await this.writer.close();
    this.writer = undefined;
  }
}
