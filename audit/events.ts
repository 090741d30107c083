/**
 * The audit event shape every subsystem records. Field names follow ECS (Elastic Common Schema) nesting:
 * `event.action`, `event.outcome`, `client.ip`, `user.name`, with an `mqtt.*`, `authn.*`, `authz.*`, `guard.*`
 * namespace of our own. The writer adds `@timestamp`, `seq`, `prev_hash` and `hash`. Secrets never go in here:
 * there is no field for a password, token, key or authentication data, and payloads only when configured.
 */
export type AuditOutcome = 'success' | 'failure' | 'unknown';

/**
 * An event recorded for every connection may carry its producer's own writer of its record body. It must return
 * exactly `canonicalJsonWith(event, { '@timestamp', seq, prev_hash })` (audit/canonical.ts): the generic writer
 * ends in `JSON.stringify`, which walks a record's two dozen members generically and was the largest single cost
 * of an anonymous connect's record (3.8 µs of 5; a writer that knows the shape takes 1.4). A symbol member, so
 * neither the canonical writer nor `JSON.stringify` ever writes it; a producer that sets one keeps a test proving
 * the two byte-identical over every variant of its event.
 */
export const WRITE_RECORD_BODY: unique symbol = Symbol('bulwark.audit.write-record-body');

export type RecordBodyWriter = (this: AuditEvent, timestamp: string, seq: number, prevHash: string) => string;

export interface AuditEvent {
  [WRITE_RECORD_BODY]?: RecordBodyWriter;
  event: {
    /** Stable dotted id, e.g. `authn.allowed`, `authz.publish_denied`, `guard.banned`. See docs/audit.md. */
    action: AuditActionName;
    outcome: AuditOutcome;
    /** Human-readable reason for the outcome. */
    reason?: string;
    /** MQTT 5 reason name that went on the wire, e.g. `notAuthorized`. */
    code?: string;
  };
  client?: { ip?: string; port?: number };
  /** The verified identity: never a username nobody verified (that is `mqtt.username`). */
  user?: { name?: string; groups?: readonly string[] };
  mqtt?: {
    client_id?: string;
    listener?: string;
    protocol_version?: number;
    topic?: string;
    qos?: number;
    retain?: boolean;
    reason_code?: number;
    payload?: string;
    /** The CONNECT's username field as the client sent it, not verified: evidence of what was claimed. */
    username?: string;
  };
  authn?: {
    by?: string;
    steps?: ReadonlyArray<{ id: string; type: string; answer: string; duration_ms: number; detail?: string }>;
    method?: string;
  };
  authz?: { rule?: string; rule_name?: string; source?: string; action?: string; explanation?: string };
  guard?: { key?: string; dimension?: string; count?: number; window_ms?: number; until?: string; dry_run?: boolean };
  tls?: {
    error?: string;
    subject?: string;
    fingerprint?: string;
    /** `proxy`: a trusted proxy verified the client certificate and reported its CN (audit/record-schema.ts). */
    source?: 'proxy';
  };
  policy?: { file?: string; old_hash?: string; new_hash?: string; error?: string };
  /** `config.changed`: key paths (never values) that changed, took effect now, or wait for a restart. */
  config?: { changed?: readonly string[]; applied?: readonly string[]; restart_required?: readonly string[] };
  /** Who performed an administrative action: `cli:root@unix-socket`, `broker`, ... */
  actor?: string;
  /** The audit log's own bookkeeping (checkpoints, sealed torn tails, retention, dropped events). See docs/audit.md. */
  audit?: AuditSelfFields;
  /** Anything else, flat string values only. */
  labels?: Record<string, string>;
}

/** Fields of the `audit.*` records the writer itself adds to the chain. */
export interface AuditSelfFields {
  /** A rotated or torn file this record is about (base name inside the audit directory). */
  file?: string;
  /** First and last sequence number, record count and last hash of a file deleted by retention. */
  first_seq?: number;
  last_seq?: number;
  last_hash?: string;
  records?: number;
  /** Byte offset, length and SHA-256 (hex) of a torn tail sealed at start-up. */
  offset?: number;
  length?: number;
  sha256?: string;
  /** Events dropped and write failures while the log could not be written (`audit.write_recovered`). */
  dropped?: number;
  failures?: number;
  /**
   * Why: `max_files`, `max_age` (retention); `interval`, `rotation`, `shutdown` (checkpoint); `window_end`,
   * `shutdown` (refusals suppressed).
   */
  reason?: string;
  /** `audit.refusals_suppressed`: the action of the refusals counted, not recorded one by one. */
  action?: string;
  /** `audit.refusals_suppressed`: refusals of the key in the interval counted only here. */
  suppressed?: number;
  /** `audit.refusals_suppressed`: refusals of the key in the interval that were recorded one by one. */
  recorded?: number;
  /** `audit.refusals_suppressed`: the interval the counts cover (ISO 8601; start inclusive, end exclusive). */
  window_start?: string;
  window_end?: string;
  /** `audit.refusals_suppressed`: true for the key that counts refusals beyond the limiter's key bound. */
  overflow?: boolean;
  /** An Ed25519 signature over the chain head: see docs/audit.md "Checkpoints". */
  checkpoint?: AuditCheckpoint;
}

export interface AuditCheckpoint {
  /** Sequence number and hash of the record just before the checkpoint record (the chain head it signs). */
  seq: number;
  hash: string;
  /** base64url SHA-256 of the signing key's SPKI DER encoding. */
  key_id: string;
  /** The signing key's SPKI DER, base64: lets a log be checked without a key file; trust needs --public-key. */
  public_key: string;
  /** base64 Ed25519 signature over `bulwark-audit-checkpoint-v2\n<seq>\n<hash>\n<audit.reason>` (record.ts). */
  signature: string;
}

/** The broker's single entry point into the audit log. Never throws; never blocks the caller. */
export interface AuditSink {
  record(event: AuditEvent): void;
  /** False when the sink is configured `fail-closed` and cannot currently write: refuse new security actions. */
  readonly writable: boolean;
}

/** A sink that forwards to the structured log; used until the audit writer is configured, and in unit tests. */
export class MemoryAuditSink implements AuditSink {
  readonly events: AuditEvent[] = [];
  readonly writable = true;
  constructor(private readonly limit = 10_000) {}
  record(event: AuditEvent): void {
    if (this.events.length >= this.limit) this.events.shift();
    this.events.push(event);
  }
}

export { AuditAction, type AuditActionName } from './actions.js';
import type { AuditActionName } from './actions.js';
