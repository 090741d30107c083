import { AuditAction } from '../audit/actions.js';
import type { AuditEvent, AuditSink } from '../audit/events.js';

const MAX_EARLY_EVENTS = 10_000;

/**
 * The broker's audit sink from its first moment: events recorded before the audit writer is open (credential
 * reloads while chains start, restored state) are held, bounded, and handed to the writer once it opens, so the
 * log starts complete.
 */
export class SwitchableAuditSink implements AuditSink {
  private target: AuditSink | undefined;
  private early: AuditEvent[] = [];
  private lost = 0;

  get writable(): boolean {
    return this.target?.writable ?? true;
  }

  record(event: AuditEvent): void {
    if (this.target) {
      this.target.record(event);
      return;
    }
    if (this.early.length >= MAX_EARLY_EVENTS) {
      this.lost++;
      return;
    }
    this.early.push(event);
  }

  attach(target: AuditSink): void {
    this.target = target;
    for (const event of this.early) target.record(event);
    this.early = [];
    if (this.lost > 0) {
      target.record({
        event: {
          action: AuditAction.auditEarlyEventsDropped,
          outcome: 'failure',
          reason: `${this.lost} events recorded before the audit log opened were dropped`,
        },
        actor: 'broker',
      });
      this.lost = 0;
    }
  }
}
