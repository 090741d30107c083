import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { pgDriver } from '../src/sql-drivers.js';
import { BulwarkError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import type { AuditMirrorConfig } from './config.js';

/** Counters of the mirror, published beside the writer's (`AuditWriter.stats().mirror`). */
export interface AuditMirrorStats {
  /** Records waiting for the database. */
  queued: number;
  /** Records the database has accepted. */
  written: number;
  /** Records never mirrored: the queue was full, or the broker stopped while the database was unreachable. */
  dropped: number;
  /** Failed INSERTs (each is retried with backoff). */
  failures: number;
  /**
   * Records the database refused for what they hold (a data exception or constraint violation: SQLSTATE class 22
   * or 23, e.g. a U+0000 in a client id, which `jsonb` cannot store), each logged with its `seq`. They are only in
   * the file log.
   */
  refused: number;
  failing: boolean;
  /** SQLSTATE or errno code of the last failure; never a message that could quote a value. */
  lastError: string | undefined;
}

/**
 * A second copy of the log, fed by the writer after each batch is on disk. It must never slow the broker or the
 * file log down: `enqueue` only appends to a bounded queue; a single task sends batches; failures are retried
 * with backoff while the queue absorbs what arrives, and what does not fit is dropped and counted.
 */
export interface AuditMirror {
  enqueue(lines: readonly string[]): void;
  stats(): AuditMirrorStats;
  /** Sends what is queued (within `query_timeout`), then closes; what is left is counted as dropped and logged. */
  close(): Promise<void>;
}

/** How often a lasting outage or ongoing drops are logged at most. */
const LOG_EVERY_MS = 10_000;

export interface PostgresMirrorOptions {
  config: AuditMirrorConfig;
  logger: Logger;
  /** Epoch milliseconds; injected by tests. */
  now?: () => number;
}

export class PostgresAuditMirror implements AuditMirror {
  private readonly pool: pg.Pool;
  private readonly insert: string;
  private queue: string[] = [];
  private running: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay: number;
  private closed = false;
  private lastLogAt = Number.NEGATIVE_INFINITY;
  private lastDropLogAt = Number.NEGATIVE_INFINITY;
  private readonly stat: AuditMirrorStats = {
    queued: 0,
    written: 0,
    dropped: 0,
    failures: 0,
    refused: 0,
    failing: false,
    lastError: undefined,
  };
  private readonly now: () => number;

  constructor(private readonly options: PostgresMirrorOptions) {
    const c = options.config;
    this.now = options.now ?? Date.now;
    this.retryDelay = c.retry_initial;
    this.pool = new (pgDriver().Pool)({
      host: c.host,
      port: c.port,
      database: c.database,
      user: c.user,
      ...(c.password_file !== undefined ? { password: readPassword(c.password_file) } : {}),
      // One connection: batches go in order, and the broker holds one session on the database at most.
      max: 1,
      connectionTimeoutMillis: c.connect_timeout,
      query_timeout: c.query_timeout,
      idleTimeoutMillis: 60_000,
      application_name: 'bulwark-audit-mirror',
      ...(c.tls
        ? {
            ssl: {
              rejectUnauthorized: c.tls.reject_unauthorized,
              ...(c.tls.ca_file ? { ca: readFileSync(c.tls.ca_file, 'utf8') } : {}),
              ...(c.tls.server_name ? { servername: c.tls.server_name } : {}),
            },
          }
        : {}),
    });
    // A dropped idle connection must not crash the broker; the next batch reconnects.
    this.pool.on('error', () => undefined);
    // The whole batch is one JSON array parameter; the database extracts the indexed columns itself, so the
    // statement needs INSERT on the table and nothing else.
    this.insert =
      `INSERT INTO ${quoteTable(c.table)} ("@timestamp", seq, action, outcome, record) ` +
      `SELECT (r->>'@timestamp')::timestamptz, (r->>'seq')::bigint, r->'event'->>'action', r->'event'->>'outcome', r ` +
      'FROM jsonb_array_elements($1::jsonb) AS r';
  }

  enqueue(lines: readonly string[]): void {
    const max = this.options.config.queue_max;
    let dropped = 0;
    for (const line of lines) {
      if (this.closed || this.queue.length >= max) {
        dropped++;
        continue;
      }
      this.queue.push(line.endsWith('\n') ? line.slice(0, -1) : line);
    }
    if (dropped > 0) this.drop(dropped, 'the mirror queue is full');
    this.kick();
  }

  stats(): AuditMirrorStats {
    return { ...this.stat, queued: this.queue.length };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer !== undefined) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      // One last attempt for what is queued; a database that stays away costs at most one query timeout.
      this.kick();
    }
    if (this.running) await this.running;
    else if (this.queue.length > 0 && !this.stat.failing) await this.kickNow();
    if (this.queue.length > 0) {
      const lost = this.queue.length;
      this.queue = [];
      this.stat.dropped += lost;
      this.options.logger.error(
        { lost, code: this.stat.lastError },
        'audit mirror: records not mirrored at shutdown because the database could not be written (the file log has them)',
      );
    }
    await this.pool.end().catch(() => undefined);
  }

  private kick(): void {
    if (this.running || this.retryTimer !== undefined || this.queue.length === 0) return;
    void this.kickNow();
  }

  private kickNow(): Promise<void> {
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async run(): Promise<void> {
    const batchMax = this.options.config.batch_max_records;
    while (this.queue.length > 0) {
      const batch = this.queue.slice(0, batchMax);
      try {
        await this.pool.query(this.insert, [`[${batch.join(',')}]`]);
        this.queue.splice(0, batch.length);
        this.stat.written += batch.length;
      } catch (error: unknown) {
        if (!isContentRefusal(error)) {
          this.failed(error);
          return;
        }
        // Retrying a batch the database refuses for one record's content would stop the mirror for good (one
        // crafted client id suffices): only then are its records sent one by one and the refused ones set aside.
        if (!(await this.sendOneByOne(batch.length))) return;
      }
      if (this.stat.failing) {
        this.stat.failing = false;
        this.options.logger.info(
          { failures: this.stat.failures, dropped: this.stat.dropped },
          'audit mirror: database writable again',
        );
      }
      this.retryDelay = this.options.config.retry_initial;
    }
  }

  /**
   * Sends the first `count` queued records one per INSERT, removing each from the queue once the database has
   * taken or refused it. False when another failure (an outage) stopped it: that is retried as usual.
   */
  private async sendOneByOne(count: number): Promise<boolean> {
    for (let i = 0; i < count; i++) {
      const line = this.queue[0] as string;
      try {
        await this.pool.query(this.insert, [`[${line}]`]);
        this.stat.written++;
      } catch (error: unknown) {
        if (!isContentRefusal(error)) {
          this.failed(error);
          return false;
        }
        this.stat.refused++;
        // Every refused record is named: the file log holds it (`bulwark audit query --format json` finds it).
        this.options.logger.error(
          { seq: seqOf(line), code: errorCode(error), refused: this.stat.refused },
          'audit mirror: record refused by the database (its content, or a seq already in the table); it is only in the file log',
        );
      }
      this.queue.shift();
    }
    return true;
  }

  private failed(error: unknown): void {
    this.stat.failures++;
    this.stat.failing = true;
    this.stat.lastError = errorCode(error);
    const now = this.now();
    if (now - this.lastLogAt >= LOG_EVERY_MS) {
      this.lastLogAt = now;
      this.options.logger.warn(
        { code: this.stat.lastError, queued: this.queue.length, dropped: this.stat.dropped },
        'audit mirror: cannot write to PostgreSQL; retrying (the file log is not affected)',
      );
    }
    if (this.closed) return;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.retryDelay * 2, this.options.config.retry_max);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, delay);
    this.retryTimer.unref();
  }

  private drop(count: number, why: string): void {
    this.stat.dropped += count;
    const now = this.now();
    if (now - this.lastDropLogAt >= LOG_EVERY_MS) {
      this.lastDropLogAt = now;
      this.options.logger.warn({ dropped: this.stat.dropped }, `audit mirror: records dropped: ${why}`);
    }
  }
}

function readPassword(file: string): string {
  try {
    return readFileSync(file, 'utf8').split(/\r?\n/)[0] ?? '';
  } catch (error: unknown) {
    throw new BulwarkError(
      'BULWARK_ERR_AUDIT',
      `cannot read audit.mirror.password_file: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      { file, line: 1, column: 1 },
    );
  }
}

/** `schema.table` → `"schema"."table"`; the schema refuses anything but plain identifiers. */
function quoteTable(table: string): string {
  return table
    .split('.')
    .map((part) => `"${part}"`)
    .join('.');
}

/**
 * SQLSTATE class 22 (data exception: `22P05` a U+0000 `jsonb` cannot hold, a timestamp out of range) or 23
 * (integrity constraint: a `seq` already in the table). These refuse a record for what it holds; retrying it can
 * never succeed. Everything else (connection, permission, missing table, timeout) is an outage and is retried.
 */
function isContentRefusal(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code);
}

/**
 * The record's `seq` for the log line, read without parsing the whole record: the last `,"seq":` of the line,
 * since a checkpoint's signed head (`audit.checkpoint.seq`) sorts before it and nothing after it has one; a
 * client's text cannot hold it unescaped.
 */
function seqOf(line: string): number | undefined {
  const at = line.lastIndexOf(',"seq":');
  const match = at === -1 ? null : /^\d+/.exec(line.slice(at + 7));
  return match ? Number(match[0]) : undefined;
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  const message = error instanceof Error ? error.message : '';
  // pg reports its own timeouts without a code.
  return /timeout/i.test(message) ? 'ETIMEDOUT' : 'error';
}
