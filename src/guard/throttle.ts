import type { GuardClient } from './ban-entry.js';
import { BoundedMap } from './bounded-map.js';
import type { ThrottleConfig } from './config.js';
import { normalizeIp, parseIp, type IpAddress } from './ip.js';
import { escalatedDuration, OffenceTracker, SlidingWindowCounter } from './sliding-window.js';

export type ThrottleDimension = 'username' | 'address';
const DIMENSIONS: readonly ThrottleDimension[] = ['username', 'address'];

/** Known clients remembered per address; enough for a NAT'd site, bounded against an attacker filling it. */
const KNOWN_PER_ADDRESS = 64;

interface Lock {
  untilMs: number;
  reason: 'banned' | 'connectionRateExceeded';
}

export type ThrottleCheck =
  | { kind: 'pass' }
  | {
      kind: 'refuse';
      reason: 'banned' | 'connectionRateExceeded';
      dimension: ThrottleDimension;
      key: string;
      untilMs: number;
    };

/** A key that just started being refused. */
export interface ThrottleLock {
  dimension: ThrottleDimension;
  key: string;
  count: number;
  windowMs: number;
  untilMs: number;
  offence: number;
  /** True when this lockout reached `ban_after_lockouts` and is a ban (0x8A) rather than 0x9F. */
  escalated: boolean;
}

/**
 * Brute-force throttling. `check` runs before authentication and costs two map lookups, so a locked-out username
 * or address never reaches argon2, LDAP or SQL; `record` counts the verdict afterwards.
 *
 * A success resets its username's count. It does not reset the address's count: otherwise an attacker holding one
 * valid account could interleave its logins to spray passwords for every other account from the same address.
 * Instead it marks the client as known at that address, and (with `spare_known_clients`) lockouts do not refuse
 * known clients: the legitimate devices behind a NAT keep connecting while the guesser is refused, and a user
 * whose name an attacker is guessing elsewhere still logs in from her usual address. A failure revokes it.
 */
export class Throttle {
  private readonly failures: Record<ThrottleDimension, SlidingWindowCounter>;
  private readonly locks: Record<ThrottleDimension, BoundedMap<string, Lock>>;
  private readonly offences: Record<ThrottleDimension, OffenceTracker>;
  private readonly known: BoundedMap<string, Map<string, number>>;

  constructor(
    private readonly config: ThrottleConfig,
    private readonly isExempt: (ip: IpAddress | undefined) => boolean = () => false,
  ) {
    const max = config.max_tracked_keys;
    this.failures = { username: new SlidingWindowCounter(max), address: new SlidingWindowCounter(max) };
    this.locks = { username: new BoundedMap(max), address: new BoundedMap(max) };
    this.offences = { username: new OffenceTracker(max), address: new OffenceTracker(max) };
    this.known = new BoundedMap(max);
  }

  check(client: GuardClient, now: number): ThrottleCheck {
    if (!this.config.enabled) return { kind: 'pass' };
    const keys = this.keysOf(client);
    let refusal: ThrottleCheck = { kind: 'pass' };
    for (const dimension of DIMENSIONS) {
      const key = keys[dimension];
      if (key === undefined || !this.config[dimension].enabled) continue;
      const lock = this.locks[dimension].peek(key);
      if (lock === undefined) continue;
      if (lock.untilMs <= now) {
        this.locks[dimension].delete(key);
        continue;
      }
      // A client that logged in from this address recently is spared on both dimensions: an attacker elsewhere
      // can neither lock a user out of the address she uses nor lock a NAT's devices out with a spray.
      if (
        this.config.spare_known_clients &&
        keys.address !== undefined &&
        this.isKnown(keys.address, identityOf(client), now)
      )
        continue;
      // A ban outranks a lockout: report the stronger refusal.
      if (refusal.kind === 'pass' || (refusal.reason === 'connectionRateExceeded' && lock.reason === 'banned'))
        refusal = { kind: 'refuse', reason: lock.reason, dimension, key, untilMs: lock.untilMs };
    }
    return refusal;
  }

  /**
   * Records the chain's verdict. Call it for a definite success or a credential failure only: a backend outage
   * (`serverUnavailable`) is not the client's fault and must not lock it out.
   */
  record(client: GuardClient, ok: boolean, now: number): ThrottleLock[] {
    if (!this.config.enabled) return [];
    const keys = this.keysOf(client);
    if (ok) {
      if (keys.username !== undefined) this.failures.username.clear(keys.username);
      if (keys.address !== undefined) this.remember(keys.address, identityOf(client), now);
      return [];
    }
    // A failure revokes the client's known status at this address: otherwise someone behind the same NAT could
    // claim a known username and guess its password without ever being throttled.
    if (keys.address !== undefined) this.known.peek(keys.address)?.delete(identityOf(client));
    const locked: ThrottleLock[] = [];
    for (const dimension of DIMENSIONS) {
      const key = keys[dimension];
      const settings = this.config[dimension];
      if (key === undefined || !settings.enabled) continue;
      const count = this.failures[dimension].hit(key, now, settings.window, settings.max_failures);
      if (count < settings.max_failures) continue;
      this.failures[dimension].clear(key);
      const offence = this.offences[dimension].record(key, now, this.config.offence_memory);
      const escalated = offence >= this.config.ban_after_lockouts;
      const untilMs =
        now +
        (escalated
          ? this.config.ban_duration
          : escalatedDuration(offence, this.config.lockout, this.config.escalation_factor, this.config.max_lockout));
      this.locks[dimension].set(key, { untilMs, reason: escalated ? 'banned' : 'connectionRateExceeded' });
      locked.push({ dimension, key, count, windowMs: settings.window, untilMs, offence, escalated });
    }
    return locked;
  }

  /** Lifts a lockout early (an operator's decision); returns whether there was one. */
  release(dimension: ThrottleDimension, key: string): boolean {
    this.failures[dimension].clear(key);
    return this.locks[dimension].delete(key);
  }

  /** Active lockouts and throttle bans, for `clients`-style diagnostics. */
  active(now: number): Array<{ dimension: ThrottleDimension; key: string; untilMs: number; reason: Lock['reason'] }> {
    const out: Array<{ dimension: ThrottleDimension; key: string; untilMs: number; reason: Lock['reason'] }> = [];
    for (const dimension of DIMENSIONS)
      for (const [key, lock] of this.locks[dimension].entries())
        if (lock.untilMs > now) out.push({ dimension, key, untilMs: lock.untilMs, reason: lock.reason });
    return out;
  }

  private keysOf(client: GuardClient): Record<ThrottleDimension, string | undefined> {
    const ip = parseIp(client.address);
    return {
      username: client.username === undefined || client.username === '' ? undefined : client.username,
      address: this.isExempt(ip) ? undefined : (normalizeIp(client.address) ?? client.address),
    };
  }

  private remember(address: string, identity: string, now: number): void {
    const clients = this.known.get(address) ?? new Map<string, number>();
    clients.delete(identity);
    clients.set(identity, now);
    if (clients.size > KNOWN_PER_ADDRESS) {
      const oldest = clients.keys().next();
      if (oldest.done !== true) clients.delete(oldest.value);
    }
    this.known.set(address, clients);
  }

  private isKnown(address: string, identity: string, now: number): boolean {
    const seen = this.known.peek(address)?.get(identity);
    return seen !== undefined && now - seen < this.config.known_client_ttl;
  }
}

/** Which client a success vouches for: its username, or its client id when it has none (certificate logins). */
function identityOf(client: GuardClient): string {
  return client.username !== undefined && client.username !== '' ? `u:${client.username}` : `c:${client.clientId}`;
}
