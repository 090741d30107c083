import { describe, expect, it } from 'vitest';
import { ScramClient } from '../../../helpers/scram-client.js';

// RFC 5802 §5 (SCRAM-SHA-1) and RFC 7677 §3 (SCRAM-SHA-256), user "user", password "pencil".
const VECTORS = [
  {
    hash: 'SHA-1' as const,
    clientNonce: 'fyko+d2lbbFgONRv9qkxdawL',
    clientFirst: 'n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL',
    serverFirst: 'r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096',
    clientFinal: 'c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=',
    serverFinal: 'v=rmF9pqV8S7suAoZWja4dJRkFsKQ=',
  },
  {
    hash: 'SHA-256' as const,
    clientNonce: 'rOprNGfwEbeRWgbNEkqO',
    clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
    serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
    clientFinal:
      'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
    serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
  },
];

describe('the test SCRAM client', () => {
  for (const v of VECTORS) {
    it(`reproduces the SCRAM-${v.hash} test vector of the RFC`, () => {
      const client = new ScramClient({ hash: v.hash, username: 'user', password: 'pencil', nonce: v.clientNonce });
      expect(client.clientFirst().toString()).toBe(v.clientFirst);
      expect(client.clientFinal(Buffer.from(v.serverFirst)).toString()).toBe(v.clientFinal);
      expect(client.verifyServerFinal(Buffer.from(v.serverFinal))).toBe(true);
    });

    it(`rejects a forged SCRAM-${v.hash} server signature`, () => {
      const client = new ScramClient({ hash: v.hash, username: 'user', password: 'pencil', nonce: v.clientNonce });
      client.clientFirst();
      client.clientFinal(Buffer.from(v.serverFirst));
      const forged = Buffer.from(v.serverFinal.slice(2), 'base64');
      forged[0] = (forged[0] ?? 0) ^ 1;
      expect(client.verifyServerFinal(Buffer.from(`v=${forged.toString('base64')}`))).toBe(false);
    });
  }

  it('refuses a server nonce that does not extend its own', () => {
    const client = new ScramClient({ hash: 'SHA-256', username: 'user', password: 'pencil', nonce: 'abc' });
    client.clientFirst();
    expect(() => client.clientFinal(Buffer.from('r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'))).toThrow(/nonce/);
  });
});
