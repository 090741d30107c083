import { AuditAction } from './actions.js';
import type { AuditEvent } from './events.js';

/*
 * The refusals a client can repeat at no cost, before it has proved anything, are what the broker passes to
 * `Broker.recordRefusal`: `tls.handshake_refused`, `proxy.header_refused`, `connection.malformed_connect`,
 * `connection.connect_timeout`, `guard.blocked`, `guard.throttle_refused`, `authn.denied` for a CONNECT refused
 * before any authenticator ran, and `metrics.scrape_refused`.
 * Each would otherwise be one record, so a client looping connect attempts could fill the disk (and a fail-closed
 * broker would then refuse everyone) and bury the records a reviewer needs. Every other record is written as is;
 * the limiter itself counts whatever it is given.
 */

export interface RefusalLimiterOptions {
  /** Refusals per key and window recorded one by one; the rest are counted. 0 counts every one. */
  burst: number;
  /** Length of a key's window, from its first refusal. */
  windowMs: number;
  /** Keys counted one by one at most; beyond them, refusals fold into one overflow key per action. */
  maxKeys: number;
  /** Epoch milliseconds; injected so tests scale time instead of sleeping. */
  now?: () => number;
  /** Receives each summary (`audit.refusals_suppressed`). Must not throw. */
  onSummary: (event: AuditEvent) => void;
}

/** One key's counts in its current window. */
interface RefusalWindow {
  readonly action: string;
  readonly ip: string | undefined;
  readonly code: string | undefined;
  readonly listener: string | undefined;
  readonly overflow: boolean;
  readonly start: number;
  recorded: number;
  suppressed: number;
}

/** A summary is written at most this late after its window ended (the sweep timer's shortest period). */
const MIN_SWEEP_MS = 1000;

/**
 * Bounds the records of repeated pre-authentication refusals. Per key (action, client IP, reason code, listener),
 * the first `burst` refusals of a window are recorded as before; later ones in that window are counted; when the
 * window ends, or at `flush()` on shutdown, one `audit.refusals_suppressed` record says how many were not recorded,
 * for which key and over which interval. So for every key and window, recorded + suppressed = refused, and a
 * reviewer can add them up from the log alone.
 *
 * Memory is bounded: at most `maxKeys` keys, plus one overflow key per action for refusals that arrive while every
 * key is in its window. Windows are kept in the order they started (a key whose window ends is re-inserted when it
 * starts again), so the expired ones are always at the front and are dropped in passing.
 *
 * Synchronous and cheap on the path of a single refusal: one string, one Map lookup; no timer unless something is
 * being suppressed. Not thread-safe (the event loop owns it), never throws for a client's input.
 */
export class RefusalLimiter {
  private readonly windows = new Map<string, RefusalWindow>();
  private readonly overflow = new Map<string, RefusalWindow>();
  private readonly now: () => number;
  private readonly onSummary: (event: AuditEvent) => void;
  /** Windows holding a suppressed count not yet summarised: the sweep timer runs only while this is above 0. */
  private pending = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Refusals counted into summaries instead of recorded one by one, since start (for the metrics endpoint). */
  suppressedTotal = 0;

  private options: RefusalLimiterOptions;

  constructor(options: RefusalLimiterOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.onSummary = options.onSummary;
  }

  /**
   * New bounds, as a SIGHUP reload brings them during an attack: they apply from the next refusal on. A window in
   * progress keeps its start and its counts (so they still add up) and ends `windowMs` (the new one) after it
   * began; with a lower `burst` its next refusals are counted, with a lower `maxKeys` new keys share the overflow
   * key until enough windows have ended.
   */
  reconfigure(bounds: Pick<RefusalLimiterOptions, 'burst' | 'windowMs' | 'maxKeys'>): void {
    this.options = { ...this.options, ...bounds };
  }

  /** Keys in their window now (overflow keys not included); never more than `maxKeys`. */
  get size(): number {
    return this.windows.size;
  }

  /**
   * Counts one refusal. True: record it (and log it) as before. False: it is counted in its key's summary; do not
   * record or log it. The key is read from the event: `event.action`, `client.ip`, `event.code`, `mqtt.listener`.
   */
  admit(event: AuditEvent): boolean {
    const action = event.event.action;
    const ip = event.client?.ip;
    const code = event.event.code;
    const listener = event.mqtt?.listener;
    const now = this.now();
    const key = `${action}\u0000${ip ?? ''}\u0000${code ?? ''}\u0000${listener ?? ''}`;
    let window = this.windows.get(key);
    if (window !== undefined && now >= window.start + this.options.windowMs) {
      this.close(window, 'window_end', window.start + this.options.windowMs);
      this.windows.delete(key);
      window = undefined;
    }
    if (window === undefined) {
      this.dropExpired(now);
      if (this.windows.size < this.options.maxKeys) {
        window = newWindow(action, ip, code, listener, false, now);
        this.windows.set(key, window);
      } else window = this.overflowWindow(action, now);
    }
    if (window.recorded < this.options.burst) {
      window.recorded++;
      return true;
    }
    this.suppressedTotal++;
    if (window.suppressed++ === 0) {
      this.pending++;
      this.arm(now);
    }
    return false;
  }

  /**
   * Writes the summary of every window whose end has passed and forgets those windows. The timer calls it while
   * something is suppressed; tests call it after moving their clock.
   */
  sweep(): void {
    const now = this.now();
    this.dropExpired(now);
    for (const [action, window] of this.overflow) {
      if (now < window.start + this.options.windowMs) continue;
      this.close(window, 'window_end', window.start + this.options.windowMs);
      this.overflow.delete(action);
    }
  }

  /**
   * Shutdown: writes the summary of every window that suppressed something, ending its interval now, and stops
   * the timer. Call it after the listeners are closed and before the audit writer's final checkpoint, so the
   * checkpoint signs the summaries too. Later refusals are still counted and would need another flush.
   */
  flush(): void {
    const now = this.now();
    for (const window of this.windows.values())
      this.close(window, 'shutdown', Math.min(now, window.start + this.options.windowMs));
    for (const window of this.overflow.values())
      this.close(window, 'shutdown', Math.min(now, window.start + this.options.windowMs));
    this.windows.clear();
    this.overflow.clear();
    this.pending = 0;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** `flush()`, and no timer is started again: for a broker that is stopping. */
  stop(): void {
    this.stopped = true;
    this.flush();
  }

  private overflowWindow(action: string, now: number): RefusalWindow {
    let window = this.overflow.get(action);
    if (window !== undefined && now >= window.start + this.options.windowMs) {
      this.close(window, 'window_end', window.start + this.options.windowMs);
      window = undefined;
    }
    if (window === undefined) {
      window = newWindow(action, undefined, undefined, undefined, true, now);
      this.overflow.set(action, window);
    }
    return window;
  }

  /** The windows started in order, so the expired ones are the ones at the front. */
  private dropExpired(now: number): void {
    for (const [key, window] of this.windows) {
      if (now < window.start + this.options.windowMs) return;
      this.close(window, 'window_end', window.start + this.options.windowMs);
      this.windows.delete(key);
    }
  }

  private close(window: RefusalWindow, reason: 'window_end' | 'shutdown', end: number): void {
    if (window.suppressed === 0) return;
    this.pending--;
    this.onSummary(suppressedEvent(window, reason, end));
    // A window is closed once; a second close (a flush racing a sweep) must not count it twice.
    window.suppressed = 0;
  }

  private arm(now: number): void {
    if (this.timer !== undefined || this.stopped) return;
    const oldest = this.windows.values().next();
    let due = oldest.done === true ? Infinity : oldest.value.start + this.options.windowMs;
    for (const window of this.overflow.values()) due = Math.min(due, window.start + this.options.windowMs);
    const delay = Math.max(MIN_SWEEP_MS, Math.min(due - now, this.options.windowMs));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.sweep();
      if (this.pending > 0) this.arm(this.now());
    }, delay);
    this.timer.unref();
  }
}

function newWindow(
  action: string,
  ip: string | undefined,
  code: string | undefined,
  listener: string | undefined,
  overflow: boolean,
  start: number,
): RefusalWindow {
  return { action, ip, code, listener, overflow, start, recorded: 0, suppressed: 0 };
}

/**
 * The summary of one key's window: its key in the fields the refusals themselves use (`client.ip`, `event.code`,
 * `mqtt.listener`), so a query for one address or listener finds both; the counts and the interval in `audit.*`.
 */
export function suppressedEvent(
  window: Pick<RefusalWindow, 'action' | 'ip' | 'code' | 'listener' | 'overflow' | 'start' | 'recorded' | 'suppressed'>,
  reason: 'window_end' | 'shutdown',
  end: number,
): AuditEvent {
  const who = window.overflow
    ? 'from clients beyond the limiter\u2019s key bound'
    : `from ${window.ip ?? 'an unknown address'}${window.listener === undefined ? '' : ` on ${window.listener}`}${window.code === undefined ? '' : ` (${window.code})`}`;
  const event: AuditEvent = {
    event: {
      action: AuditAction.auditRefusalsSuppressed,
      outcome: 'failure',
      reason:
        `${window.suppressed} ${window.action} refusals ${who} not recorded one by one: ` +
        `${window.recorded + window.suppressed} in the interval, ${window.recorded} recorded`,
    },
    actor: 'broker',
    audit: {
      action: window.action,
      suppressed: window.suppressed,
      recorded: window.recorded,
      window_start: new Date(window.start).toISOString(),
      window_end: new Date(end).toISOString(),
      reason,
      ...(window.overflow ? { overflow: true } : {}),
    },
  };
  if (window.code !== undefined) event.event.code = window.code;
  if (window.ip !== undefined) event.client = { ip: window.ip };
  if (window.listener !== undefined) event.mqtt = { listener: window.listener };
  return event;
}
