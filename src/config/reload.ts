import { createHash } from 'node:crypto';
import { canonicalJson } from '../../audit/canonical.js';
import { AuditAction } from '../../audit/actions.js';
import type { AuditEvent } from '../../audit/events.js';
import type { BrokerConfig } from './schema.js';

/**
 * Configuration keys the running broker takes over at once when the file is re-read (SIGHUP). Each is read
 * afresh on every use, so switching it has no half-applied state. Everything else (listeners, chains, stores,
 * the audit writer's files and keys, …) is built once at start and needs a restart.
 */
export const LIVE_CONFIG_KEYS: readonly string[] = [
  'log_level',
  'check_receive_on_delivery',
  'audit.record_publish_allowed',
  'audit.record_subscribe_allowed',
  'audit.allowed_sample_every',
  'audit.include_payload',
  'audit.refusals',
];

/** What a re-read configuration changes, by key path only: values (which can be secrets) never leave here. */
export interface ConfigReloadPlan {
  /** Top-level keys, or `section.key` inside an object-valued section, whose value differs; sorted. */
  changed: string[];
  /** Of `changed`, what the broker applied live. */
  applied: string[];
  /** Of `changed`, what keeps its old value until the broker is restarted. */
  restartRequired: string[];
}

/**
 * Compares the configuration the broker runs with a newly validated one. Object-valued sections (`audit`,
 * `limits`, `guard`, …) are compared member by member, one level deep; lists (`listeners`) and scalars as a whole.
 */
export function planConfigReload(running: BrokerConfig, next: BrokerConfig): ConfigReloadPlan {
  const changed = changedKeys(running as Record<string, unknown>, next as Record<string, unknown>);
  const live = new Set(LIVE_CONFIG_KEYS);
  return {
    changed,
    applied: changed.filter((k) => live.has(k)),
    restartRequired: changed.filter((k) => !live.has(k)),
  };
}

function changedKeys(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const key of unionKeys(a, b)) {
    const x = a[key];
    const y = b[key];
    if (isPlainObject(x) && isPlainObject(y)) {
      for (const inner of unionKeys(x, y)) {
        if (!sameValue(x[inner], y[inner])) out.push(`${key}.${inner}`);
      }
    } else if (!sameValue(x, y)) {
      out.push(key);
    }
  }
  return out.sort();
}

function unionKeys(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])];
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function sameValue(x: unknown, y: unknown): boolean {
  return canonicalJson(x) === canonicalJson(y);
}

/** The new configuration with the live keys taken over: what the broker runs after a reload. */
export function applyLiveKeys(running: BrokerConfig, next: BrokerConfig, applied: readonly string[]): BrokerConfig {
  const out = structuredClone(running) as Record<string, unknown>;
  const source = next as Record<string, unknown>;
  for (const path of applied) {
    const [section, key] = path.split('.') as [string, string | undefined];
    if (key === undefined) {
      out[section] = structuredClone(source[section]);
    } else {
      const target = out[section] as Record<string, unknown>;
      target[key] = structuredClone((source[section] as Record<string, unknown>)[key]);
    }
  }
  return out as BrokerConfig;
}

/** SHA-256 (hex) of a configuration file's content, as `policy.old_hash` / `policy.new_hash` record it. */
export function contentHash(content: string | Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

export interface ReloadContext {
  file: string;
  oldHash: string;
  newHash: string | undefined;
  /** `signal:SIGHUP`. */
  actor: string;
}

/** `config.changed`, success: key paths and hashes only. */
export function configChangedEvent(ctx: ReloadContext, plan: ConfigReloadPlan): AuditEvent {
  const reason =
    plan.changed.length === 0
      ? 'configuration file re-read: no setting changed'
      : `configuration file re-read: ${plan.changed.length} settings changed, ${plan.applied.length} applied now, ${plan.restartRequired.length} take effect after a restart`;
  return {
    event: { action: AuditAction.configChanged, outcome: 'success', reason },
    actor: ctx.actor,
    policy: { file: ctx.file, old_hash: ctx.oldHash, ...(ctx.newHash ? { new_hash: ctx.newHash } : {}) },
    config: { changed: plan.changed, applied: plan.applied, restart_required: plan.restartRequired },
  };
}

/** `config.changed`, failure: the new file was refused and the running configuration stays. */
export function configRefusedEvent(ctx: ReloadContext, error: string): AuditEvent {
  return {
    event: {
      action: AuditAction.configChanged,
      outcome: 'failure',
      reason: 'the configuration file was refused; the running configuration stays',
    },
    actor: ctx.actor,
    policy: { file: ctx.file, old_hash: ctx.oldHash, ...(ctx.newHash ? { new_hash: ctx.newHash } : {}), error },
  };
}
