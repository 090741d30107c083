import type { Identity } from '../authn/types.js';

export type AccessAction = 'connect' | 'publish' | 'subscribe' | 'receive';

/** The actions that concern a topic; `connect` concerns the connection itself. */
export type TopicAction = Exclude<AccessAction, 'connect'>;

/**
 * One authorization question. `topic` is a topic name for publish and receive, a topic filter (without the
 * `$share/group/` prefix, which is in `sharedGroup`) for subscribe. For `connect` (may this client stay
 * connected?) `topic` is `''`, `qos` 0, `retain` false and `sharedGroup` undefined.
 */
export interface AccessRequest {
  identity: Identity;
  listener: string;
  peerAddress: string;
  action: AccessAction;
  topic: string;
  qos: 0 | 1 | 2;
  retain: boolean;
  sharedGroup: string | undefined;
}

/** Where a decision came from: `policies/site.policy.yaml:42` with the rule's name, or a SQL/JWT source. */
export interface RuleRef {
  source: string;
  name: string;
  /** `file:line`, when the rule is in a file. */
  location?: string;
}

export interface AuthzDecision {
  allowed: boolean;
  /** The rule that decided; absent when nothing matched and the default deny applied. */
  rule?: RuleRef;
  /** Short human explanation, e.g. "no rule matched (default deny)". */
  reason: string;
}

export type AuthzOutcome = { kind: 'allow' | 'deny'; rule: RuleRef } | { kind: 'nomatch' };

/**
 * A source of rules consulted in configured order (policy files, SQL, JWT claims). The first allow or deny
 * wins. A source that throws or times out produces a deny (fail closed) unless configured `on_error: next`.
 */
export interface AuthzSource {
  readonly id: string;
  /** Answers synchronously when it can (compiled files, cache hit); returns a promise only on a remote miss. */
  authorize(request: AccessRequest): AuthzOutcome | Promise<AuthzOutcome>;
  /**
   * True only if `authorize` would allow `receive` of every topic name the filter `request.topic` can match, at
   * every QoS up to `request.qos` and either retain flag. Sources that cannot tell leave it out (or answer false),
   * and each delivery is then checked on its own.
   */
  receivesWholeFilter?(request: AccessRequest): boolean;
  start?(): Promise<void>;
  stop?(): Promise<void>;
}

/**
 * What the broker calls on every PUBLISH, SUBSCRIBE, will and retained delivery. Synchronous when the answer is
 * known, so the per-message path pays no promise.
 */
export interface Authorizer {
  check(request: AccessRequest): AuthzDecision | Promise<AuthzDecision>;
  /**
   * The decision `check` would take from its cache, or undefined when it would have to ask its sources. Keeps
   * nothing of `request`, so a caller may reuse one object for every lookup: the per-message path then builds a
   * request only on a miss.
   */
  cached?(request: AccessRequest): AuthzDecision | undefined;
  /**
   * Whether every delivery through a subscription (filter in `request.topic`, granted QoS in `request.qos`) would
   * pass its `receive` check, so the broker can skip the per-delivery checks. Absent or false: check each one.
   */
  receivesWholeFilter?(request: AccessRequest): boolean;
  /** Called after a policy swap or source change; the broker re-evaluates live subscriptions and connections. */
  onChange(listener: () => void): void;
  /** Drop cached decisions of one client (on disconnect) or all (on change). */
  invalidate(clientId?: string): void;
}
