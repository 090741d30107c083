import type { ReasonName } from '../protocol/reason-codes.js';

/**
 * Label pairs kept at most. Reason names and configured step ids are few; an embedding that injects its own
 * authenticator could report any name, so past this bound new pairs share one `other` entry (one per reason).
 */
export const MAX_CONNECT_OUTCOME_KEYS = 256;

export const OTHER_AUTHENTICATOR = 'other';

export interface DeniedConnects {
  reason: ReasonName;
  /** The chain step (or `chain`) that refused; empty when the broker's own step did (validation, guard, policy). */
  authenticator: string;
  count: number;
}

/**
 * CONNECT decisions as plain numbers, counted once per CONNECT where the decision is made and read at scrape time
 * (docs/metrics.md): by the authenticator step that let the client in, or by refusal reason and deciding step.
 */
export class ConnectOutcomes {
  private readonly allowedBy = new Map<string, number>();
  private readonly deniedBy = new Map<string, DeniedConnects>();

  allowed(authenticator: string): void {
    // Once per accepted CONNECT: one lookup when the step is already counted, which is every time but the first.
    const count = this.allowedBy.get(authenticator);
    if (count !== undefined) this.allowedBy.set(authenticator, count + 1);
    else if (this.allowedBy.size < MAX_CONNECT_OUTCOME_KEYS) this.allowedBy.set(authenticator, 1);
    else this.allowedBy.set(OTHER_AUTHENTICATOR, (this.allowedBy.get(OTHER_AUTHENTICATOR) ?? 0) + 1);
  }

  denied(reason: ReasonName, authenticator: string | undefined): void {
    let by = authenticator ?? '';
    let key = `${reason}\u0000${by}`;
    let entry = this.deniedBy.get(key);
    if (entry === undefined && this.deniedBy.size >= MAX_CONNECT_OUTCOME_KEYS) {
      by = OTHER_AUTHENTICATOR;
      key = `${reason}\u0000${by}`;
      entry = this.deniedBy.get(key);
    }
    if (entry === undefined) this.deniedBy.set(key, { reason, authenticator: by, count: 1 });
    else entry.count++;
  }

  /** Allowed CONNECTs by the step id that authenticated them (`anonymous` for the chain's anonymous fallback). */
  allowedCounts(): ReadonlyMap<string, number> {
    return this.allowedBy;
  }

  deniedCounts(): Iterable<Readonly<DeniedConnects>> {
    return this.deniedBy.values();
  }
}
