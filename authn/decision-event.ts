import type { AuditEvent } from '../audit/events.js';
import { ReasonCode } from '../src/protocol/reason-codes.js';
import type { ChainResult, ConnectAttempt } from './types.js';

type AuditStep = NonNullable<NonNullable<AuditEvent['authn']>['steps']>[number];

/**
 * The one structured event per authentication decision (issue 4): listener, client id, username, peer, each
 * step consulted with its answer and duration, and the outcome. Built only from fields that cannot hold a
 * secret (the password and authentication data are never read). `continue` rounds are not decisions.
 */
export function authnDecisionEvent(
  attempt: ConnectAttempt,
  result: Exclude<ChainResult, { kind: 'continue' }>,
  reauthentication = false,
): AuditEvent {
  const allowed = result.kind === 'allow';
  const action = reauthentication
    ? allowed
      ? 'authn.reauth_allowed'
      : 'authn.reauth_denied'
    : allowed
      ? 'authn.allowed'
      : 'authn.denied';
  const reason = result.kind === 'allow' ? 'success' : result.reason;
  const username = result.kind === 'allow' ? (result.identity.username ?? attempt.username) : attempt.username;
  // Built by assignment rather than with conditional spreads: one of these is recorded for every CONNECT, and
  // object spread was a large part of what recording an event cost the broker.
  const event: AuditEvent['event'] = { action, outcome: allowed ? 'success' : 'failure', code: reason };
  if (result.kind === 'deny') event.reason = result.detail;
  const user: NonNullable<AuditEvent['user']> = {};
  if (username !== undefined) user.name = username;
  if (result.kind === 'allow') user.groups = result.identity.groups;
  const steps: AuditStep[] = [];
  for (let i = 0; i < result.steps.length; i++) {
    const s = result.steps[i]!;
    const step: AuditStep = { id: s.id, type: s.type, answer: s.answer, duration_ms: s.durationMs };
    if (s.detail !== undefined) step.detail = s.detail;
    steps.push(step);
  }
  const authn: NonNullable<AuditEvent['authn']> = {
    by: result.kind === 'allow' ? result.identity.authenticator : result.decidedBy,
    steps,
  };
  if (attempt.authMethod !== undefined) authn.method = attempt.authMethod;
  return {
    event,
    client: { ip: attempt.peer.address, port: attempt.peer.port },
    user,
    mqtt: {
      client_id: attempt.clientId,
      listener: attempt.listener,
      protocol_version: attempt.protocolVersion,
      reason_code: ReasonCode[reason],
    },
    authn,
  };
}
