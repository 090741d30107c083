import type { AuditEvent } from '../audit/events.js';
import { z } from 'zod';
import { createBuiltinRegistry } from './builtin.js';
import { verificationConfigSchema, type AuthenticatorRegistry } from './registry.js';
import { VerificationServices, type VerificationSettings } from './verify/services.js';

export { preconditionSchema, stepCommonShape, verificationConfigSchema } from './registry.js';

/**
 * The `authentication` section: the global chain (`anonymous`, `steps`) and the shared `verification` bounds.
 * A listener's own `authentication` uses `registry.chainSchema()` (no `verification`). Built from a registry
 * so that every registered authenticator type is one member of the `steps` union.
 */
export function authenticationConfigSchema(registry: AuthenticatorRegistry = createBuiltinRegistry()) {
  const chain = registry.chainSchema() as unknown as z.ZodObject;
  return chain
    .extend({ verification: verificationConfigSchema })
    .describe('Authentication chain and verification bounds.');
}

export type VerificationConfig = z.output<typeof verificationConfigSchema>;

export function verificationSettings(c: VerificationConfig): VerificationSettings {
  return {
    hashConcurrency: c.hash_concurrency,
    hashQueue: c.hash_queue,
    sqlConcurrency: c.sql_concurrency,
    sqlQueue: c.sql_queue,
    cacheMaxEntries: c.cache_max_entries,
    cacheTtlMs: c.cache_ttl_ms,
    breakerFailureThreshold: c.breaker_failure_threshold,
    breakerResetMs: c.breaker_reset_ms,
  };
}

/**
 * The broker's one VerificationServices. Breaker transitions become `authn.backend_unavailable` /
 * `authn.backend_recovered` events for the audit log.
 */
export function createVerificationServices(
  c: VerificationConfig,
  onEvent?: (event: AuditEvent) => void,
): VerificationServices {
  return new VerificationServices(verificationSettings(c), {
    onBreakerChange: (backend, state) => {
      if (state !== 'half-open') onEvent?.(backendBreakerEvent(backend, state));
    },
  });
}

/** The audit record of a backend's breaker opening (`authn.backend_unavailable`) or closing again. */
export function backendBreakerEvent(backend: string, state: 'open' | 'closed'): AuditEvent {
  return {
    event: {
      action: state === 'open' ? 'authn.backend_unavailable' : 'authn.backend_recovered',
      outcome: state === 'open' ? 'failure' : 'success',
      reason: state === 'open' ? 'circuit breaker opened after consecutive failures' : 'backend answered again',
    },
    actor: 'broker',
    labels: { backend },
  };
}
