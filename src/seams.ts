import type { ConnectAttempt } from '../authn/types.js';
import type { ReasonName } from './protocol/reason-codes.js';

/** What the abuse-protection subsystem sees of a connecting client. */
export interface GuardClient {
  clientId: string;
  username: string | undefined;
  address: string;
  certFingerprint: string | undefined;
  jwtSubject: string | undefined;
}

export type GuardVerdict =
  | { kind: 'pass' }
  | { kind: 'refuse'; reason: Extract<ReasonName, 'banned' | 'connectionRateExceeded'>; detail: string };

/**
 * The CONNECT pipeline's view of abuse protection: checked before authentication, told the result after.
 * The guard records its own audit events (bans, throttling); the broker records the refused CONNECT.
 */
export interface ConnectGuard {
  checkConnect(client: GuardClient): GuardVerdict;
  /** May refuse a client whose successful login trips flapping on its client id or username. */
  recordAuthResult(client: GuardClient, ok: boolean): GuardVerdict | void;
  /** Checks the block list again once the identity is known (a JWT subject). */
  checkBlocklist?(client: GuardClient): GuardVerdict;
}

export function guardClientOf(attempt: ConnectAttempt, jwtSubject?: string): GuardClient {
  return {
    clientId: attempt.clientId,
    username: attempt.username,
    address: attempt.peer.address,
    certFingerprint: attempt.tls?.certificate?.fingerprint256,
    jwtSubject,
  };
}
