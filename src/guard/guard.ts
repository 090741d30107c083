import type { AuditEvent } from '../../audit/events.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { BanEntry, BanKind, GuardClient } from './ban-entry.js';
import { Blocklist, type AddResult } from './blocklist.js';
import { BlocklistStore, blocklistPath, readBlocklistFile } from './blocklist-store.js';
import type { GuardConfig } from './config.js';
import {
  auditDimension,
  banExpiredEvent,
  bannedEvent,
  blockedEvent,
  flappingDetectedEvent,
  throttledEvent,
  throttleRefusedEvent,
  unbannedEvent,
} from './events.js';
import { compileExemptions } from './exempt.js';
import { FlappingDetector, POST_AUTH_DIMENSIONS, PRE_AUTH_DIMENSIONS, type FlappingDetection } from './flapping.js';
import { normalizeIp } from './ip.js';
import { Throttle } from './throttle.js';

export type GuardRefusalReason = 'banned' | 'connectionRateExceeded';

/** The guard's answer for one CONNECT. A refusal carries the audit event the CONNECT step records, once. */
export type GuardDecision =
  { kind: 'pass' } | { kind: 'refuse'; reason: GuardRefusalReason; detail: string; event: AuditEvent };

export interface GuardOptions {
  config: GuardConfig;
  /** Where the block list is persisted (`config.blocklist.file` inside it); undefined keeps it in memory only. */
  dataDir: string | undefined;
  /** Epoch milliseconds; injected so tests scale time instead of sleeping. */
  now?: () => number;
  /** Receives state-change events (ban, unban, expiry, flapping, throttling) for the audit log. Must not throw. */
  onEvent?: (event: AuditEvent) => void;
  log?: Logger;
  /**
   * Also deliver each refusal's event (`guard.blocked`, `guard.throttle_refused`) through `onEvent`. Default true:
   * the broker's CONNECT step marks guard refusals as already audited. Set false if the caller records
   * `decision.event` itself, so that each refusal is recorded exactly once.
   */
  recordRefusals?: boolean;
  /**
   * Receives the refusal events instead of `onEvent` (when `recordRefusals`): the broker bounds them, as a client
   * can repeat a refused CONNECT at no cost (audit/refusal-limiter.ts). Must not throw.
   */
  onRefusal?: (event: AuditEvent) => void;
}

export interface BanInput {
  kind: BanKind;
  value: string;
  reason: string;
  /** Epoch ms, or null for forever. */
  until: number | null;
}

export type BanAddedListener = (entry: BanEntry) => void;

/** What the guard has refused and decided since start, as plain numbers read by the metrics endpoint. */
export interface GuardCounters {
  /** CONNECTs refused by a block-list entry (operator, import or an earlier flapping ban). */
  blocked: number;
  /** CONNECTs refused at the moment flapping was detected (later attempts meet the ban: `blocked`). */
  flapping: number;
  /** CONNECTs refused by a brute-force throttle lockout. */
  throttled: number;
  /** Flapping detections that banned (dry runs not included). */
  flappingBans: number;
  /** Throttle lockouts started by failed authentications. */
  throttleLockouts: number;
}

/**
 * Abuse protection for the CONNECT pipeline: block list, flapping detection and brute-force throttling. The
 * broker calls, in order and before any expensive authentication:
 *
 *   checkConnect(client)          blocklist → flapping (address, network) → throttle; refuse or pass
 *   authenticate (the chain)
 *   checkUsername(client)         when an enhanced exchange names a user the CONNECT did not (SCRAM `n=`)
 *   recordAuthResult(client, ok)  only for a definite success or credential failure; on success counts
 *                                 flapping per client id and username, and may answer refuse (banned)
 *   checkBlocklist(client)        again once the identity is known (its user name, JWT `sub`), optional
 *
 * The guard counts and matches the names it is given. The broker gives the CONNECT User Name before
 * authentication, the name tried for a failure, and the verified identity's name for a success (`src/seams.ts`).
 *
 * Everything here is synchronous and bounded in memory; it runs on the event loop for every CONNECT, concurrently
 * for many clients, and never throws for a client's input. `onBanAdded` listeners let the broker disconnect live
 * clients that a new entry matches (on every dimension), using `matchesClient` from `blocklist.ts`.
 */
export class Guard {
  readonly blocklist: Blocklist;
  private readonly flapping: FlappingDetector;
  private readonly throttle: Throttle;
  private readonly store: BlocklistStore | undefined;
  private readonly now: () => number;
  private readonly emit: (event: AuditEvent) => void;
  private readonly log: Logger;
  private readonly listeners = new Set<BanAddedListener>();
  private purgeTimer: NodeJS.Timeout | undefined;
  private readonly recordRefusals: boolean;
  private readonly emitRefusal: (event: AuditEvent) => void;
  readonly counters: GuardCounters = { blocked: 0, flapping: 0, throttled: 0, flappingBans: 0, throttleLockouts: 0 };

  private constructor(
    readonly config: GuardConfig,
    options: GuardOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.recordRefusals = options.recordRefusals ?? true;
    this.log = options.log ?? silentLogger;
    const onEvent = options.onEvent;
    this.emit = (event) => {
      if (onEvent === undefined) return;
      try {
        onEvent(event);
      } catch (error) {
        this.log.error({ err: error, action: event.event.action }, 'guard event sink threw');
      }
    };
    const onRefusal = options.onRefusal;
    this.emitRefusal =
      onRefusal === undefined
        ? this.emit
        : (event) => {
            try {
              onRefusal(event);
            } catch (error) {
              this.log.error({ err: error, action: event.event.action }, 'guard refusal sink threw');
            }
          };
    this.blocklist = new Blocklist({
      maxEntries: config.blocklist.max_entries,
      maxRegexEntries: config.blocklist.max_regex_entries,
      maxRegexLength: config.blocklist.max_regex_length,
    });
    const exempt = compileExemptions(config.exempt_networks);
    this.flapping = new FlappingDetector(config.flapping, exempt);
    this.throttle = new Throttle(config.throttle, exempt);
    this.store =
      options.dataDir === undefined
        ? undefined
        : new BlocklistStore(
            blocklistPath(options.dataDir, config.blocklist.file),
            () => this.blocklist.list(),
            (error) => this.log.error({ err: error }, 'could not persist the block list'),
          );
  }

  /**
   * Builds the guard and restores the persisted block list. Entries that expired while the broker was down are
   * dropped with a `guard.ban_expired` event. An unreadable file is an error: starting without the bans would
   * fail open.
   */
  static async open(options: GuardOptions): Promise<Guard> {
    const guard = new Guard(options.config, options);
    if (guard.store !== undefined) {
      const entries = await readBlocklistFile(guard.store.path);
      const now = guard.now();
      let dropped = false;
      for (const entry of entries) {
        const until = entry.until === null ? null : Date.parse(entry.until);
        if (until !== null && until <= now) {
          guard.emit(banExpiredEvent(entry));
          dropped = true;
          continue;
        }
        const added = guard.blocklist.add({ ...entry, until, created: Date.parse(entry.created) }, now);
        if (added.kind === 'rejected') {
          guard.log.warn({ kind: entry.kind, reason: added.reason }, 'block list entry not restored');
          dropped = true;
        }
      }
      if (dropped) await guard.store.save();
    }
    return guard;
  }

  /** Starts the expiry purge timer. */
  start(): void {
    if (this.purgeTimer !== undefined) return;
    this.purgeTimer = setInterval(() => this.purgeExpired(), this.config.blocklist.purge_interval);
    this.purgeTimer.unref();
  }

  /** Stops the timer and waits until the block list is on disk. */
  async stop(): Promise<void> {
    if (this.purgeTimer !== undefined) clearInterval(this.purgeTimer);
    this.purgeTimer = undefined;
    await this.flush();
  }

  /** Waits until every change so far is persisted; rejects if the last write failed. */
  async flush(): Promise<void> {
    await this.store?.flush();
  }

  /** Block list, then flapping, then throttling: the order of the CONNECT pipeline, cheapest and surest first. */
  checkConnect(client: GuardClient): GuardDecision {
    return this.recorded(this.decide(client));
  }

  /** The block list alone; call again after authentication when it revealed a JWT subject or other identity. */
  checkBlocklist(client: GuardClient): GuardDecision {
    return this.recordedVerified(this.blocklistDecision(client), client);
  }

  /**
   * Block list and throttle, counting nothing: for a user name an enhanced exchange revealed after `checkConnect`
   * (SCRAM's `n=` when the CONNECT had no User Name), so that a banned or locked-out name is refused before its
   * proof is verified, exactly as a CONNECT carrying it would have been.
   */
  checkUsername(client: GuardClient): GuardDecision {
    const blocked = this.blocklistDecision(client);
    return this.recorded(blocked.kind === 'refuse' ? blocked : this.throttleDecision(client, this.now()));
  }

  private recorded(decision: GuardDecision): GuardDecision {
    if (decision.kind === 'refuse' && this.recordRefusals) this.emitRefusal(decision.event);
    return decision;
  }

  /**
   * A refusal of a client that has just proved who it is (after authentication): a banned identity in use, such
   * as a stolen certificate or token, is evidence. It is recorded one by one, never through the bound on repeated
   * refusals (`onRefusal`), and names the verified user.
   */
  private recordedVerified(decision: GuardDecision, client: GuardClient): GuardDecision {
    if (decision.kind !== 'refuse' || !this.recordRefusals) return decision;
    this.emit(client.username === undefined ? decision.event : { ...decision.event, user: { name: client.username } });
    return decision;
  }

  private decide(client: GuardClient): GuardDecision {
    const blocked = this.blocklistDecision(client);
    if (blocked.kind === 'refuse') return blocked;
    const now = this.now();
    const refusal = this.enforceFlapping(client, this.flapping.record(client, now, PRE_AUTH_DIMENSIONS), now);
    if (refusal !== undefined) return refusal;
    return this.throttleDecision(client, now);
  }

  private throttleDecision(client: GuardClient, now: number): GuardDecision {
    const throttled = this.throttle.check(client, now);
    if (throttled.kind === 'refuse') {
      this.counters.throttled++;
      return {
        kind: 'refuse',
        reason: throttled.reason,
        detail: `${throttled.dimension} throttled after failed authentications`,
        event: throttleRefusedEvent(client, throttled),
      };
    }
    return { kind: 'pass' };
  }

  private enforceFlapping(
    client: GuardClient,
    detections: readonly FlappingDetection[],
    now: number,
  ): GuardDecision | undefined {
    let refusal: GuardDecision | undefined;
    for (const detection of detections) {
      this.emit(flappingDetectedEvent(client, detection, now));
      if (detection.dryRun) continue;
      this.counters.flappingBans++;
      const added = this.ban(
        {
          kind: detection.banKind,
          value: detection.key,
          reason: `flapping: ${detection.count} connection attempts within ${Math.round(detection.windowMs / 1000)}s (offence ${detection.offence})`,
          until: now + detection.banMs,
        },
        'guard:flapping',
      );
      if (refusal !== undefined) continue;
      // Refuse this attempt even if the block list could not take the entry (full of operator bans): the
      // detection stands, and failing open here would reward filling the list.
      const entry: BanEntry =
        added.kind === 'added'
          ? added.entry
          : {
              kind: detection.banKind,
              value: detection.key,
              by: 'guard:flapping',
              reason: `flapping (not stored: ${added.reason})`,
              created: new Date(now).toISOString(),
              until: new Date(now + detection.banMs).toISOString(),
            };
      if (added.kind === 'rejected') this.log.warn({ reason: added.reason }, 'flapping ban not stored');
      refusal = {
        kind: 'refuse',
        reason: 'banned',
        detail: `flapping: ${detection.dimension} ${detection.key} banned`,
        event: blockedEvent(client, entry),
      };
    }
    if (refusal !== undefined) this.counters.flapping++;
    return refusal;
  }

  private blocklistDecision(client: GuardClient): GuardDecision {
    const entry = this.blocklist.check(client, this.now());
    if (entry === undefined) return { kind: 'pass' };
    this.counters.blocked++;
    return {
      kind: 'refuse',
      reason: 'banned',
      detail: `block list: ${entry.kind}`,
      event: blockedEvent(client, entry),
    };
  }

  /**
   * Counts an authentication verdict. Call it for a definite success (`true`) or a credential failure (`false`:
   * bad username or password, not authorized); not for `serverUnavailable`, which is no fault of the client.
   *
   * A success is also when the client id and username are counted for flapping (see `POST_AUTH_DIMENSIONS`). If
   * that bans the client, the answer is a refusal: the broker should refuse this CONNECT with `banned` too (the
   * ban is in the block list either way, so the next attempt is refused at the first step).
   */
  recordAuthResult(client: GuardClient, ok: boolean): GuardDecision {
    const now = this.now();
    for (const locked of this.throttle.record(client, ok, now)) {
      this.counters.throttleLockouts++;
      this.emit(throttledEvent(client, locked));
    }
    if (!ok) return { kind: 'pass' };
    const refusal = this.enforceFlapping(client, this.flapping.record(client, now, POST_AUTH_DIMENSIONS), now);
    return refusal === undefined ? { kind: 'pass' } : this.recordedVerified(refusal, client);
  }

  /** Adds (or replaces) a block-list entry, records `guard.banned`, persists it and tells the `onBanAdded` listeners. */
  ban(input: BanInput, actor: string, labels?: Record<string, string>): AddResult {
    const now = this.now();
    const added = this.blocklist.add({ ...input, by: actor }, now);
    if (added.kind === 'rejected') return added;
    if (added.evicted !== undefined) this.emit(unbannedEvent(added.evicted, 'guard:capacity'));
    this.emit(bannedEvent(added.entry, actor, labels));
    void this.store?.save();
    for (const listener of this.listeners) {
      try {
        listener(added.entry);
      } catch (error) {
        this.log.error({ err: error }, 'ban listener threw');
      }
    }
    return added;
  }

  /** Removes an entry; records `guard.unbanned`. */
  unban(kind: BanKind, value: string, actor: string): BanEntry | undefined {
    const removed = this.blocklist.remove(kind, value);
    if (removed === undefined) return undefined;
    this.emit(unbannedEvent(removed, actor));
    void this.store?.save();
    return removed;
  }

  list(): BanEntry[] {
    return this.blocklist.list();
  }

  /** Adds every entry of an imported file, keeping each one's `created` and `until`; reports the ones refused. */
  importEntries(
    entries: readonly BanEntry[],
    actor: string,
  ): { added: number; skipped: Array<{ kind: BanKind; value: string; reason: string }> } {
    const skipped: Array<{ kind: BanKind; value: string; reason: string }> = [];
    let count = 0;
    const now = this.now();
    for (const entry of entries) {
      const until = entry.until === null ? null : Date.parse(entry.until);
      const added = this.blocklist.add({ ...entry, until, created: Date.parse(entry.created) }, now);
      if (added.kind === 'rejected') {
        skipped.push({ kind: entry.kind, value: entry.value, reason: added.reason });
        continue;
      }
      count += 1;
      this.emit(bannedEvent(added.entry, actor, { source: 'import' }));
      for (const listener of this.listeners) {
        try {
          listener(added.entry);
        } catch (error) {
          this.log.error({ err: error }, 'ban listener threw');
        }
      }
    }
    if (count > 0) void this.store?.save();
    return { added: count, skipped };
  }

  /** Removes expired entries now (the timer calls this every `purge_interval`); records `guard.ban_expired`. */
  purgeExpired(): BanEntry[] {
    const expired = this.blocklist.purgeExpired(this.now());
    for (const entry of expired) this.emit(banExpiredEvent(entry));
    if (expired.length > 0) void this.store?.save();
    return expired;
  }

  /** Lifts a throttle lockout early (operator decision). */
  releaseThrottle(dimension: 'username' | 'address', key: string, actor: string): boolean {
    if (dimension === 'address') key = normalizeIp(key) ?? key;
    const released = this.throttle.release(dimension, key);
    if (released)
      this.emit({
        event: { action: 'guard.unbanned', outcome: 'success', reason: `throttle on ${dimension} lifted` },
        guard: { key, dimension: auditDimension(dimension) },
        actor,
        labels: { scope: 'throttle' },
      });
    return released;
  }

  /** Active throttle lockouts and throttle bans (not in the block list). */
  throttled(): Array<{ dimension: string; key: string; until: string; reason: GuardRefusalReason }> {
    return this.throttle
      .active(this.now())
      .map((t) => ({ dimension: t.dimension, key: t.key, until: new Date(t.untilMs).toISOString(), reason: t.reason }));
  }

  /** Called after every new entry (operator, import or flapping), so the broker can disconnect matching clients. */
  onBanAdded(listener: BanAddedListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
