import type { Identity } from '../authn/types.js';
import type { SourcePosition } from '../src/errors.js';
import type { AccessAction, TopicAction } from './types.js';

/**
 * The policy language as parsed, before compilation. Every element keeps the position it was written at, so
 * every message and every decision can point a reviewer at `file:line:column`.
 */
export type Effect = 'allow' | 'deny';

export const ACTIONS: readonly AccessAction[] = ['connect', 'publish', 'subscribe', 'receive'];
/** The actions a rule with topics may list; `connect` rules have no topics and stand alone. */
export const TOPIC_ACTIONS: readonly TopicAction[] = ['publish', 'subscribe', 'receive'];

/** Names a case may expect that are not rules. */
export const DEFAULT_DENY_RULE = 'default-deny';
export const SUPERUSER_RULE = 'superuser';
export const RESERVED_RULE_NAMES: readonly string[] = [DEFAULT_DENY_RULE, SUPERUSER_RULE];

/** Exact strings, and prefixes written with a trailing `*`. */
export interface TextSet {
  exact: readonly string[];
  prefixes: readonly string[];
}

/** Who a rule applies to. Each present field must hold (AND); values within a field are alternatives (OR). */
export interface SubjectSpec {
  all: boolean;
  users?: TextSet;
  clients?: TextSet;
  groups?: TextSet;
  authenticators?: TextSet;
  listeners?: TextSet;
  /** CIDR blocks (`10.0.0.0/8`, `::1/128`) or single addresses, as written. */
  addresses?: readonly string[];
  attributes?: Readonly<Record<string, TextSet>>;
  superuser?: boolean;
  anonymous?: boolean;
}

export interface ConditionSpec {
  qos?: readonly (0 | 1 | 2)[];
  retain?: boolean;
  shared?: boolean;
}

export interface RuleSpec {
  name: string;
  effect: Effect;
  /** Either `['connect']` alone, or topic actions only (the parser refuses a mix). */
  actions: readonly AccessAction[];
  subjects: SubjectSpec;
  /** Empty for a connect rule. */
  topics: readonly string[];
  topicPositions: readonly SourcePosition[];
  conditions: ConditionSpec;
  why?: string;
  position: SourcePosition;
}

export interface CaseSpec {
  name: string;
  identity: Identity;
  listener: string;
  peerAddress: string;
  action: AccessAction;
  topic: string;
  qos: 0 | 1 | 2;
  retain: boolean;
  sharedGroup: string | undefined;
  expect: Effect;
  /** The rule expected to decide, or `default-deny` / `superuser`. */
  rule?: string;
  position: SourcePosition;
}

export interface Diagnostic {
  severity: 'error' | 'warning';
  code: 'BULWARK_ERR_POLICY_PARSE' | 'BULWARK_ERR_POLICY_INVALID' | 'BULWARK_ERR_POLICY_CASES' | 'POLICY_WARNING';
  message: string;
  position?: SourcePosition;
  hint?: string;
}

export interface ParsedPolicyFile {
  file: string;
  /** `superusers:` as written, when written. */
  superusers?: { value: boolean; position: SourcePosition };
  rules: RuleSpec[];
  cases: CaseSpec[];
  diagnostics: Diagnostic[];
}

export function formatPosition(p: SourcePosition | undefined): string {
  return p ? `${p.file}:${p.line}:${p.column}` : '';
}

/** `file:line:column: message (hint)`, the form editors and CI annotations understand. */
export function formatDiagnostic(d: Diagnostic): string {
  const where = d.position ? `${formatPosition(d.position)}: ` : '';
  const level = d.severity === 'warning' ? 'warning: ' : 'error: ';
  return `${where}${level}${d.message}${d.hint ? ` (${d.hint})` : ''}`;
}
