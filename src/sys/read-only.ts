import type { AuthzDecision, RuleRef } from '../../authz/types.js';

/**
 * `$SYS` belongs to the broker: a client that could publish there would forge the statistics every monitor reads,
 * retained until the next interval overwrites them. The broker refuses such a publish before it asks the policy,
 * so neither a superuser nor an `allow publish` rule lifts it (Mosquitto 2 does the same whatever its ACL says).
 * The broker's own publisher (`sys-topics.ts`) calls `Broker.publish` and is never asked.
 */
export const SYS_READ_ONLY_RULE: RuleRef = Object.freeze({ source: 'broker', name: 'sys-topics-are-read-only' });

export const SYS_PUBLISH_REFUSED: AuthzDecision = Object.freeze({
  allowed: false,
  rule: SYS_READ_ONLY_RULE,
  reason: 'only the broker publishes to $SYS (refused before the policy is asked)',
});

/** `$SYS` itself and every topic below it; `$SYSTEM/x` and `$sys/x` are other topics, left to the policy. */
export function isSysTopic(topic: string): boolean {
  return topic.startsWith('$SYS') && (topic.length === 4 || topic.charCodeAt(4) === 0x2f);
}

/** The broker's answer before any policy is asked: a refusal, or undefined when the policy decides. */
export function refusedByBroker(req: { readonly action: string; readonly topic: string }): AuthzDecision | undefined {
  return req.action === 'publish' && isSysTopic(req.topic) ? SYS_PUBLISH_REFUSED : undefined;
}
