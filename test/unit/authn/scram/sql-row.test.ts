import { describe, expect, it } from 'vitest';
import { encodeScramCredential } from '../../../../authn/scram/credential-format.js';
import { deriveScramCredential } from '../../../../authn/scram/mechanism.js';
import { credentialFromRow, ScramSqlStore } from '../../../../authn/scram/sql-store.js';

describe('SCRAM credential rows', () => {
  it('accepts binary columns, base64 text columns and a single credential column alike', async () => {
    const c = await deriveScramCredential('pw', 'SCRAM-SHA-256', 4096);
    const b64 = (b: Buffer): string => b.toString('base64');
    expect(
      credentialFromRow(
        { salt: c.salt, iterations: 4096, stored_key: c.storedKey, server_key: c.serverKey },
        'SCRAM-SHA-256',
        4096,
      ),
    ).toEqual(c);
    expect(
      credentialFromRow(
        { salt: b64(c.salt), iterations: '4096', stored_key: b64(c.storedKey), server_key: b64(c.serverKey) },
        'SCRAM-SHA-256',
        4096,
      ),
    ).toEqual(c);
    expect(credentialFromRow({ credential: encodeScramCredential(c) }, 'SCRAM-SHA-256', 4096)).toEqual(c);
  });

  it('throws on rows that do not decode instead of treating them as unknown users', async () => {
    const c = await deriveScramCredential('pw', 'SCRAM-SHA-256', 4096);
    expect(() =>
      credentialFromRow(
        { salt: c.salt, iterations: 100, stored_key: c.storedKey, server_key: c.serverKey },
        'SCRAM-SHA-256',
        4096,
      ),
    ).toThrow(/iteration/);
    expect(() =>
      credentialFromRow({ salt: c.salt, iterations: 4096, stored_key: c.storedKey }, 'SCRAM-SHA-256', 4096),
    ).toThrow();
    expect(() => credentialFromRow({ credential: encodeScramCredential(c) }, 'SCRAM-SHA-512', 4096)).toThrow(
      /mechanism/,
    );
  });

  it('passes user name and mechanism as parameters and refuses ambiguous results', async () => {
    const c = await deriveScramCredential('pw', 'SCRAM-SHA-256', 4096);
    const seen: unknown[][] = [];
    const row = { credential: encodeScramCredential(c) };
    const store = new ScramSqlStore(
      'test',
      async (_sql, params) => {
        seen.push([...params]);
        return params[0] === 'twice' ? [row, row] : [row];
      },
      'SELECT credential FROM t WHERE username = $1 AND mechanism = $2',
    );
    await store.lookup("o'brien", 'SCRAM-SHA-256', new AbortController().signal);
    expect(seen).toEqual([["o'brien", 'SCRAM-SHA-256']]);
    await expect(store.lookup('twice', 'SCRAM-SHA-256', new AbortController().signal)).rejects.toThrow(/more than one/);
  });
});
