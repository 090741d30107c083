import type { CompiledPolicy } from '../compile.js';
import type { PolicyManager } from '../policy-manager.js';
import type { AccessRequest, AuthzOutcome, AuthzSource } from '../types.js';

/**
 * The policy files as a source: reads whatever policy the manager has in force at the moment of the check, so a
 * swap takes effect for the next check without locking.
 */
export class PolicyFileSource implements AuthzSource {
  constructor(
    readonly manager: PolicyManager,
    readonly id: string = 'file',
  ) {}

  authorize(req: AccessRequest): AuthzOutcome {
    return this.manager.current.authorize(req);
  }

  receivesWholeFilter(req: AccessRequest): boolean {
    return this.manager.current.receivesWholeFilter(req);
  }

  onChange(listener: () => void): void {
    this.manager.onChange(() => listener());
  }
}

/** A fixed compiled policy as a source (tests, the benchmark, embedded use). */
export class StaticPolicySource implements AuthzSource {
  constructor(
    readonly policy: CompiledPolicy,
    readonly id: string = policy.sourceId,
  ) {}

  authorize(req: AccessRequest): AuthzOutcome {
    return this.policy.authorize(req);
  }

  receivesWholeFilter(req: AccessRequest): boolean {
    return this.policy.receivesWholeFilter(req);
  }
}
