/**
 * The audit event shape every subsystem records. Field names follow ECS (Elastic Common Schema) nesting:
 * `event.action`, `event.outcome`, `client.ip`, `user.name`, with an `mqtt.*`, `authn.*`, `authz.*`, `guard.*`
 * namespace of our own. The writer adds `@timestamp`, `seq`, `prev_hash` and `hash`. Secrets never go in here:
 * there is no field for a password, token, key or authentication data, and payloads only when configured.
 */
export type AuditOutcome = 'success' | 'failure' | 'unknown';

export interface AuditEvent {
  event: {
    /** Stable dotted id, e.g. `authn.allowed`, `authz.publish_denied`, `guard.banned`. See docs/audit.md. */
    action: string;
    outcome: AuditOutcome;
    /** Human-readable reason for the outcome. */
    reason?: string;
    /** MQTT 5 reason name that went on the wire, e.g. `notAuthorized`. */
    code?: string;
  };
  client?: { ip?: string; port?: number };
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
  };
  authn?: {
    by?: string;
    steps?: ReadonlyArray<{ id: string; type: string; answer: string; duration_ms: number; detail?: string }>;
    method?: string;
  };
  authz?: { rule?: string; rule_name?: string; source?: string; action?: string; explanation?: string };
  guard?: { key?: string; dimension?: string; count?: number; window_ms?: number; until?: string; dry_run?: boolean };
  tls?: { error?: string; subject?: string; fingerprint?: string };
  policy?: { file?: string; old_hash?: string; new_hash?: string; error?: string };
  /** Who performed an administrative action: `cli:root@unix-socket`, `broker`, ... */
  actor?: string;
  /** Anything else, flat string values only. */
  labels?: Record<string, string>;
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
