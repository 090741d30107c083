import type { ReasonName } from '../src/protocol/reason-codes.js';
import type { ClientDetail } from './types.js';

/**
 * The Reason String a refused client gets when the refusal carries no `clientDetail`. One text per reason code, so
 * the answer does not tell an unknown user from a wrong password, nor show a backend's error (an unauthenticated
 * client must learn nothing about the database, the directory or their failures).
 */
const UNAVAILABLE = 'authentication service unavailable';
const GENERIC: Partial<Record<ReasonName, string>> = {
  serverUnavailable: UNAVAILABLE,
  badUserNameOrPassword: 'bad user name or password',
  notAuthorized: 'not authorized',
  badAuthenticationMethod: 'authentication method not supported',
};

export function clientReasonString(result: { reason: ReasonName; clientDetail?: ClientDetail }): string {
  // A server-side failure never gets a step's own text, even one that offered it.
  if (result.reason === 'serverUnavailable') return UNAVAILABLE;
  return result.clientDetail ?? GENERIC[result.reason] ?? 'authentication failed';
}
