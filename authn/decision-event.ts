import type { AuditEvent } from '../audit/events.js';
import { ReasonCode } from '../src/protocol/reason-codes.js';
import type { ChainResult, ConnectAttempt } from './types.js';

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
  return {
    event: {
      action,
      outcome: allowed ? 'success' : 'failure',
      code: reason,
      ...(result.kind === 'deny' ? { reason: result.detail } : {}),
    },
    client: { ip: attempt.peer.address, port: attempt.peer.port },
    user: {
      ...(username !== undefined ? { name: username } : {}),
      ...(result.kind === 'allow' ? { groups: result.identity.groups } : {}),
    },
    mqtt: {
      client_id: attempt.clientId,
      listener: attempt.listener,
      protocol_version: attempt.protocolVersion,
      reason_code: ReasonCode[reason],
    },
    authn: {
      by: result.kind === 'allow' ? result.identity.authenticator : result.decidedBy,
      steps: result.steps.map((s) => ({
        id: s.id,
        type: s.type,
        answer: s.answer,
        duration_ms: s.durationMs,
        ...(s.detail !== undefined ? { detail: s.detail } : {}),
      })),
      ...(attempt.authMethod !== undefined ? { method: attempt.authMethod } : {}),
    },
  };
}
