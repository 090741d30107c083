import { describe, expect, it } from 'vitest';
import type { ConnectAttempt, Identity } from '../../../authn/types.js';
import { attemptedGuardClient, guardClientOf, verifiedGuardClient } from '../../../src/seams.js';

const attempt = (username: string | undefined): ConnectAttempt => ({
  listener: 'tcp',
  clientId: 'device-1',
  username,
  password: undefined,
  protocolVersion: 5,
  peer: { address: '192.0.2.7', port: 50000 },
  tls: undefined,
  authMethod: undefined,
  authData: undefined,
});

const identity = (username: string | undefined, attributes: Record<string, string> = {}): Identity => ({
  clientId: 'device-1',
  username,
  groups: [],
  attributes,
  superuser: false,
  anonymous: username === undefined,
  authenticator: 'test',
});

describe('which user name the guard is given', () => {
  it.each<[string, string | undefined, string | undefined, string | undefined]>([
    ['the CONNECT User Name when the step checked that one', 'carol', undefined, 'carol'],
    ["SCRAM's n= without a CONNECT User Name", undefined, 'bob', 'bob'],
    ["SCRAM's n= over a CONNECT User Name naming someone else", 'mallory', 'bob', 'bob'],
    ['nobody when neither names anyone', undefined, undefined, undefined],
  ])('counts a failure against %s', (_, connectName, tried, expected) => {
    expect(attemptedGuardClient(attempt(connectName), tried).username).toBe(expected);
  });

  it.each<[string, string | undefined, Identity, string | undefined]>([
    ["the token's subject, not the CONNECT User Name", 'carol', identity('dave', { 'jwt.sub': 'dave' }), 'dave'],
    ['the certificate-mapped name of a client that sent none', undefined, identity('sensor-1'), 'sensor-1'],
    ['no name for an anonymous client, whatever it wrote', 'carol', identity(undefined), undefined],
  ])('counts a success, and matches a live client, by %s', (_, connectName, who, expected) => {
    const client = verifiedGuardClient(attempt(connectName), who);
    expect(client.username).toBe(expected);
    expect(client.jwtSubject).toBe(who.attributes['jwt.sub']);
  });

  it('checks the CONNECT as sent before authentication', () => {
    expect(guardClientOf(attempt('carol'))).toEqual({
      clientId: 'device-1',
      username: 'carol',
      address: '192.0.2.7',
      certFingerprint: undefined,
      jwtSubject: undefined,
      // Not matched by the guard: named in its refusal records, and part of the key that bounds them.
      port: 50000,
      listener: 'tcp',
    });
  });
});
