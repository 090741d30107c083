import type { AuditEvent } from '../../audit/events.js';
import type { BanEntry, GuardClient } from './ban-entry.js';
import { formatDuration } from '../config/duration.js';

/**
 * Audit events of the guard. Stable ids, see docs/abuse-protection.md:
 * - state changes, delivered through the guard's `onEvent` callback: `guard.banned`, `guard.unbanned`,
 *   `guard.ban_expired`, `guard.flapping_detected`, `guard.throttled` (a key starts being refused; a lockout that
 *   escalates to a ban is `guard.banned` with `labels.scope: throttle`);
 * - per-CONNECT decisions, returned in the refusal for the CONNECT step to record once: `guard.blocked`
 *   (a block-list entry matched) and `guard.throttle_refused` (a throttled key tried again).
 */
export type GuardEventAction =
  | 'guard.banned'
  | 'guard.unbanned'
  | 'guard.ban_expired'
  | 'guard.flapping_detected'
  | 'guard.throttled'
  | 'guard.blocked'
  | 'guard.throttle_refused';

/**
 * The guard judges what a CONNECT claims, before (or regardless of) authentication: its username is evidence, not
 * an identity, so it goes in `mqtt.username` and never in `user.name`.
 */
function clientFields(client: GuardClient): Pick<AuditEvent, 'client' | 'mqtt'> {
  const mqtt: NonNullable<AuditEvent['mqtt']> = { client_id: client.clientId };
  if (client.username !== undefined) mqtt.username = client.username;
  // The listener is part of the key that bounds repeated refusals (audit/refusal-limiter.ts), and evidence.
  if (client.listener !== undefined) mqtt.listener = client.listener;
  return {
    client: client.port === undefined ? { ip: client.address } : { ip: client.address, port: client.port },
    mqtt,
  };
}

/**
 * `guard.dimension` as docs/audit.md defines it for SIEM rules: the guard's own names, except that an address is
 * `ip` (the ECS word, as in `client.ip`). A block is `cidr` (a block-list entry) or `network` (flapping's /24 or
 * /64 count, banned as a `cidr` entry); `username` is the name tried or claimed, not the verified `user.name`.
 */
export function auditDimension(dimension: string): string {
  return dimension === 'address' ? 'ip' : dimension;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function bannedEvent(entry: BanEntry, actor: string, labels?: Record<string, string>): AuditEvent {
  return {
    event: {
      action: 'guard.banned',
      outcome: 'success',
      reason: entry.reason || `${entry.kind} banned`,
      code: 'banned',
    },
    guard: {
      key: entry.value,
      dimension: auditDimension(entry.kind),
      ...(entry.until === null ? {} : { until: entry.until }),
    },
    actor,
    labels: { by: entry.by, created: entry.created, until: entry.until ?? 'forever', ...labels },
  };
}

export function unbannedEvent(entry: BanEntry, actor: string): AuditEvent {
  return {
    event: { action: 'guard.unbanned', outcome: 'success', reason: `${entry.kind} unbanned` },
    guard: { key: entry.value, dimension: auditDimension(entry.kind) },
    actor,
    labels: { by: entry.by, created: entry.created, until: entry.until ?? 'forever' },
  };
}

export function banExpiredEvent(entry: BanEntry): AuditEvent {
  return {
    event: { action: 'guard.ban_expired', outcome: 'success', reason: `${entry.kind} ban expired` },
    guard: {
      key: entry.value,
      dimension: auditDimension(entry.kind),
      ...(entry.until === null ? {} : { until: entry.until }),
    },
    actor: 'broker',
    labels: { by: entry.by, created: entry.created },
  };
}

export interface CountedKey {
  dimension: string;
  key: string;
  count: number;
  windowMs: number;
}

export function flappingDetectedEvent(
  client: GuardClient,
  detected: CountedKey & { banMs: number; offence: number; dryRun: boolean },
  now: number,
): AuditEvent {
  const what = detected.dryRun ? 'would ban' : 'banning';
  return {
    event: {
      action: 'guard.flapping_detected',
      outcome: 'success',
      reason: `${detected.count} connection attempts in ${formatDuration(detected.windowMs)}; ${what} ${detected.dimension} for ${formatDuration(detected.banMs)} (offence ${detected.offence})`,
    },
    ...clientFields(client),
    guard: {
      key: detected.key,
      dimension: auditDimension(detected.dimension),
      count: detected.count,
      window_ms: detected.windowMs,
      until: iso(now + detected.banMs),
      dry_run: detected.dryRun,
    },
    actor: 'guard:flapping',
    labels: { offence: String(detected.offence) },
  };
}

export function throttledEvent(
  client: GuardClient,
  locked: CountedKey & { untilMs: number; offence: number; escalated: boolean },
): AuditEvent {
  // An escalated lockout is a ban and is recorded as one, so "every ban" queries need no second action id.
  return {
    event: {
      action: locked.escalated ? 'guard.banned' : 'guard.throttled',
      outcome: 'success',
      reason: `${locked.count} failed authentications in ${formatDuration(locked.windowMs)}; ${auditDimension(locked.dimension)} ${locked.escalated ? 'banned' : 'locked out'} (lockout ${locked.offence})`,
      code: locked.escalated ? 'banned' : 'connectionRateExceeded',
    },
    ...clientFields(client),
    guard: {
      key: locked.key,
      dimension: auditDimension(locked.dimension),
      count: locked.count,
      window_ms: locked.windowMs,
      until: iso(locked.untilMs),
    },
    actor: 'guard:throttle',
    labels: { offence: String(locked.offence), scope: 'throttle' },
  };
}

export function blockedEvent(client: GuardClient, entry: BanEntry): AuditEvent {
  return {
    event: {
      action: 'guard.blocked',
      outcome: 'failure',
      reason: `block list: ${entry.kind} ${entry.reason ? `(${entry.reason})` : ''}`.trim(),
      code: 'banned',
    },
    ...clientFields(client),
    guard: {
      key: entry.value,
      dimension: auditDimension(entry.kind),
      ...(entry.until === null ? {} : { until: entry.until }),
    },
    labels: { by: entry.by },
  };
}

export function throttleRefusedEvent(
  client: GuardClient,
  refusal: { dimension: string; key: string; untilMs: number; reason: 'banned' | 'connectionRateExceeded' },
): AuditEvent {
  return {
    event: {
      action: 'guard.throttle_refused',
      outcome: 'failure',
      reason: `${refusal.dimension} throttled after failed authentications`,
      code: refusal.reason,
    },
    ...clientFields(client),
    guard: { key: refusal.key, dimension: auditDimension(refusal.dimension), until: iso(refusal.untilMs) },
  };
}
