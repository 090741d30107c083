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
  // object spread was a large part of what recording an event cost the broker. Each object's members are added in
  // sorted order, so the audit writer serialises it with one JSON.stringify (audit/canonical.ts).
  const event: AuditEvent['event'] = { action, code: reason, outcome: allowed ? 'success' : 'failure' };
  if (result.kind === 'deny') event.reason = result.detail;
  const user: NonNullable<AuditEvent['user']> = {};
  if (result.kind === 'allow') user.groups = result.identity.groups;
  if (username !== undefined) user.name = username;
  const steps: AuditStep[] = [];
  for (let i = 0; i < result.steps.length; i++) {
    const s = result.steps[i]!;
    const step: AuditStep =
      s.detail === undefined
        ? { answer: s.answer, duration_ms: s.durationMs, id: s.id, type: s.type }
        : { answer: s.answer, detail: s.detail, duration_ms: s.durationMs, id: s.id, type: s.type };
    steps.push(step);
  }
  const by = result.kind === 'allow' ? result.identity.authenticator : result.decidedBy;
  const authn: NonNullable<AuditEvent['authn']> =
    attempt.authMethod === undefined ? { by, steps } : { by, method: attempt.authMethod, steps };
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
