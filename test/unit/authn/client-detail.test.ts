import { describe, expect, it } from 'vitest';
import { clientReasonString } from '../../../authn/client-detail.js';
import { AuthenticationChain } from '../../../authn/chain.js';
import type { Authenticator, AuthnOutcome } from '../../../authn/types.js';
import { attempt } from './fakes.js';

/** A step that answers one fixed outcome, or throws the given error. */
function step(answer: AuthnOutcome | Error): Authenticator {
  return {
    id: 'db',
    type: 'fake',
    authenticate: () => (answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer)),
  };
}

async function refuse(answer: AuthnOutcome | Error): Promise<string> {
  const chain = new AuthenticationChain({
    steps: [{ authenticator: step(answer), onError: 'deny', timeoutMs: 1_000 }],
    anonymous: false,
  });
  const r = await chain.authenticate(attempt());
  if (r.kind !== 'deny') throw new Error(`expected a deny, got ${r.kind}`);
  return clientReasonString(r);
}

describe('what a refused client is told', () => {
  it.each([
    [
      'a backend error',
      new Error('error 28P01: password authentication failed for user "bulwark"'),
      'authentication service unavailable',
    ],
    [
      'a step’s own deny detail',
      { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'no row for user' } as const,
      'bad user name or password',
    ],
    [
      'a policy-style deny',
      { kind: 'deny', reason: 'notAuthorized', detail: 'directory refused the bind (result code 53)' } as const,
      'not authorized',
    ],
    [
      'a deny that offers a client detail',
      { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'x', clientDetail: 'token exp check failed' } as const,
      'token exp check failed',
    ],
    ['nobody answering', { kind: 'ignore' } as const, 'not authorized'],
  ])('%s', async (_name, answer, expected) => {
    expect(await refuse(answer)).toBe(expected);
  });

  it('a server-side failure never carries a step’s own text, even one offered for the client', () => {
    expect(clientReasonString({ reason: 'serverUnavailable', clientDetail: 'db 10.0.0.5 down' })).toBe(
      'authentication service unavailable',
    );
  });
});
