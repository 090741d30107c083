import type { AuditConfig } from './config.js';

/**
 * Decides, without allocating, whether an allowed PUBLISH or SUBSCRIBE decision is recorded. Sampling is a
 * counter (one in N), not random, so a reviewer can state exactly what fraction a log holds.
 */
export interface AllowedDecisionFilter {
  publish(): boolean;
  subscribe(): boolean;
}

export function createAllowedDecisionFilter(
  config: Pick<AuditConfig, 'record_publish_allowed' | 'record_subscribe_allowed' | 'allowed_sample_every'>,
): AllowedDecisionFilter {
  const every = config.allowed_sample_every;
  const one = (mode: 'none' | 'sampled' | 'all'): (() => boolean) => {
    if (mode === 'none') return () => false;
    if (mode === 'all') return () => true;
    let n = 0;
    return () => {
      n = n + 1 >= every ? 0 : n + 1;
      return n === 0;
    };
  };
  return { publish: one(config.record_publish_allowed), subscribe: one(config.record_subscribe_allowed) };
}
