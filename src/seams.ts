import { certificateFingerprint, recordableUsername, type ConnectAttempt, type Identity } from '../authn/types.js';
import type { ReasonName } from './protocol/reason-codes.js';

/**
 * What the abuse-protection subsystem sees of a connecting client. `username` is whichever name the question is
 * about (see the builders below): the guard counts and matches what it is given, so choosing the name is the
 * broker's job, and never the CONNECT User Name where the client could name somebody else freely.
 */
export interface GuardClient {
  clientId: string;
  username: string | undefined;
  address: string;
  certFingerprint: string | undefined;
  jwtSubject: string | undefined;
  /** Peer port and listener name: not matched by anything, only named in the guard's refusal records. */
  port?: number;
  listener?: string;
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
  /**
   * Block list and throttle for a user name authentication revealed before verifying its proof (SCRAM's `n=` when
   * the CONNECT had no User Name). Counts nothing: the attempt was counted by `checkConnect`.
   */
  checkUsername?(client: GuardClient): GuardVerdict;
  /** May refuse a client whose successful login trips flapping on its client id or username. */
  recordAuthResult(client: GuardClient, ok: boolean): GuardVerdict | void;
  /** Checks the block list again once the identity is known (its user name, a JWT subject). */
  checkBlocklist?(client: GuardClient): GuardVerdict;
}

/** Before authentication: the CONNECT as sent, for the cheap refusals (a banned or locked-out User Name). */
export function guardClientOf(attempt: ConnectAttempt): GuardClient {
  return guardClient(attempt, recordableUsername(attempt), undefined);
}

/**
 * A failed authentication is counted against the name that was tried: the one the authenticator checked the
 * credential for (SCRAM's `n=`), else the CONNECT User Name.
 */
export function attemptedGuardClient(attempt: ConnectAttempt, attemptedUsername: string | undefined): GuardClient {
  return guardClient(attempt, attemptedUsername ?? recordableUsername(attempt), undefined);
}

/**
 * Who authenticated: successes (flapping counts, failure-count resets, "known client" marks), the block-list check
 * after authentication and the matching of live clients against a new ban all use the identity's user name. A
 * client holding dave's credential that writes `carol` in its CONNECT is dave here, and an anonymous client has
 * no user name at all.
 */
export function verifiedGuardClient(attempt: ConnectAttempt, identity: Identity): GuardClient {
  return guardClient(attempt, identity.username, identity.attributes['jwt.sub']);
}

/** The three differ only in whose name and JWT subject they carry; one builder keeps one object shape. */
function guardClient(
  attempt: ConnectAttempt,
  username: string | undefined,
  jwtSubject: string | undefined,
): GuardClient {
  return {
    clientId: attempt.clientId,
    username,
    address: attempt.peer.address,
    certFingerprint: certificateFingerprint(attempt.tls),
    jwtSubject,
    port: attempt.peer.port,
    listener: attempt.listener,
  };
}
