import type { BanKind, GuardClient } from './ban-entry.js';
import type { FlappingConfig } from './config.js';
import { networkOf, normalizeIp, parseIp, type IpAddress } from './ip.js';
import { escalatedDuration, OffenceTracker, SlidingWindowCounter } from './sliding-window.js';

export type FlappingDimension = 'client_id' | 'username' | 'address' | 'network';
export const FLAPPING_DIMENSIONS: readonly FlappingDimension[] = ['client_id', 'username', 'address', 'network'];

/**
 * When each dimension is counted. Client ids and usernames are chosen by the client: counting them before
 * authentication would let anyone get a victim's client id or username banned (and its sessions disconnected) by
 * connecting with it sixteen times. They are counted once the client authenticated, as EMQX counts only connected
 * clients. Addresses cannot be chosen over TCP, so they are counted on every attempt, before authentication.
 */
export const PRE_AUTH_DIMENSIONS: readonly FlappingDimension[] = ['address', 'network'];
export const POST_AUTH_DIMENSIONS: readonly FlappingDimension[] = ['client_id', 'username'];

/** A key that passed its threshold: what to ban, for how long, and the counts that justify it. */
export interface FlappingDetection {
  dimension: FlappingDimension;
  /** The counted key: client id, username, canonical address, or network such as `203.0.113.0/24`. */
  key: string;
  /** The block-list entry kind the ban uses (a network becomes a `cidr` entry). */
  banKind: BanKind;
  count: number;
  windowMs: number;
  offence: number;
  banMs: number;
  dryRun: boolean;
}

/**
 * Counts connection attempts per client id, username, address and network in sliding windows (EMQX's flapping
 * detection, extended past client id so that rotating the client id does not evade it). Detection only: the guard
 * turns a detection into a block-list entry, as EMQX keeps `emqx_flapping` apart from `emqx_banned`.
 */
export class FlappingDetector {
  private readonly counters: Record<FlappingDimension, SlidingWindowCounter>;
  private readonly offences: Record<FlappingDimension, OffenceTracker>;

  constructor(
    private readonly config: FlappingConfig,
    private readonly isExempt: (ip: IpAddress | undefined) => boolean = () => false,
  ) {
    const max = config.max_tracked_keys;
    this.counters = {
      client_id: new SlidingWindowCounter(max),
      username: new SlidingWindowCounter(max),
      address: new SlidingWindowCounter(max),
      network: new SlidingWindowCounter(max),
    };
    this.offences = {
      client_id: new OffenceTracker(max),
      username: new OffenceTracker(max),
      address: new OffenceTracker(max),
      network: new OffenceTracker(max),
    };
  }

  /**
   * Counts one CONNECT on the given dimensions (all by default); returns those that passed their threshold. The
   * guard counts `PRE_AUTH_DIMENSIONS` on every attempt and `POST_AUTH_DIMENSIONS` on each successful login.
   */
  record(
    client: GuardClient,
    now: number,
    dimensions: readonly FlappingDimension[] = FLAPPING_DIMENSIONS,
  ): FlappingDetection[] {
    if (!this.config.enabled) return [];
    const detections: FlappingDetection[] = [];
    const ip = parseIp(client.address);
    const exempt = this.isExempt(ip);
    const keys: Record<FlappingDimension, string | undefined> = {
      // An empty client id is assigned by the server [MQTT-3.1.3-6]: every such client would share one key.
      client_id: client.clientId === '' ? undefined : client.clientId,
      username: client.username === undefined || client.username === '' ? undefined : client.username,
      address: exempt ? undefined : (normalizeIp(client.address) ?? client.address),
      network: exempt || ip === undefined ? undefined : networkOf(ip, this.config.ipv4_prefix, this.config.ipv6_prefix),
    };
    for (const dimension of dimensions) {
      const key = keys[dimension];
      const settings = this.config[dimension];
      if (key === undefined || !settings.enabled) continue;
      const counter = this.counters[dimension];
      const count = counter.hit(key, now, settings.window, settings.max_attempts + 1);
      if (count <= settings.max_attempts) continue;
      // A fresh window after a detection: a dry run reports once per burst, a real ban starts clean when it ends.
      counter.clear(key);
      const offence = this.offences[dimension].record(key, now, this.config.offence_memory);
      detections.push({
        dimension,
        key,
        banKind: dimension === 'network' ? 'cidr' : dimension,
        count,
        windowMs: settings.window,
        offence,
        banMs: escalatedDuration(
          offence,
          this.config.ban_duration,
          this.config.escalation_factor,
          this.config.max_ban_duration,
        ),
        dryRun: this.config.dry_run,
      });
    }
    return detections;
  }

  /** Attempts currently counted for a key, for tests and diagnostics. */
  count(dimension: FlappingDimension, key: string, now: number): number {
    return this.counters[dimension].count(key, now, this.config[dimension].window);
  }
}
