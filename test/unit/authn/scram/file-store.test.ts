import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ScramAuthenticator } from '../../../../authn/scram/authenticator.js';
import { decodeScramCredential, encodeScramCredential } from '../../../../authn/scram/credential-format.js';
import {
  formatScramCredentialLine,
  parseScramCredentialFile,
  ScramCredentialFile,
} from '../../../../authn/scram/file-store.js';
import { deriveScramCredential } from '../../../../authn/scram/mechanism.js';
import { BulwarkError } from '../../../../src/errors.js';
import { ScramClient } from '../../../helpers/scram-client.js';
import { attempt, signal } from './fixtures.js';

describe('SCRAM credential file', () => {
  it('stores salt, iterations and keys but never the password', async () => {
    const credential = await deriveScramCredential('s3cret-pass', 'SCRAM-SHA-512', 8192);
    const line = formatScramCredentialLine('alice', credential);
    expect(line).toMatch(/^alice:SCRAM-SHA-512\$8192:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
    expect(line).not.toContain('s3cret-pass');
    expect(decodeScramCredential(line.slice('alice:'.length))).toEqual({ ok: true, credential });
  });

  it('reports the line of a broken entry', async () => {
    const good = formatScramCredentialLine('alice', await deriveScramCredential('pw', 'SCRAM-SHA-256', 4096));
    const text = `# users\n${good}\nbob:SCRAM-SHA-256$4096:c2FsdA==$short:short\n`;
    let error: unknown;
    try {
      parseScramCredentialFile(text, 'scram.txt');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(BulwarkError);
    expect((error as BulwarkError).code).toBe('BULWARK_ERR_PASSWORD_FILE');
    expect((error as BulwarkError).describe()).toMatch(/^scram\.txt:3:5: /);
  });

  it('refuses an iteration count below the minimum and duplicate lines', async () => {
    const cred = await deriveScramCredential('pw', 'SCRAM-SHA-256', 4096);
    const weak = encodeScramCredential(cred).replace('$4096:', '$1000:');
    expect(() => parseScramCredentialFile(`a:${weak}\n`, 'f')).toThrow(/iteration count/);
    const line = formatScramCredentialLine('a', cred);
    expect(() => parseScramCredentialFile(`${line}\n${line}\n`, 'f')).toThrow(/duplicate/);
  });

  it('refuses to derive a credential with fewer than 4096 iterations', async () => {
    await expect(deriveScramCredential('pw', 'SCRAM-SHA-256', 4095)).rejects.toThrow(RangeError);
  });

  it('refuses user names that would break the file', async () => {
    const cred = await deriveScramCredential('pw', 'SCRAM-SHA-256', 4096);
    expect(() => formatScramCredentialLine('a:b', cred)).toThrow(BulwarkError);
    expect(() => formatScramCredentialLine('a\nb', cred)).toThrow(BulwarkError);
  });

  it('authenticates from the file and keeps the old table when a reload fails', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scram-file-'));
    const path = join(dir, 'scram.txt');
    writeFileSync(
      path,
      formatScramCredentialLine('alice', await deriveScramCredential('pw', 'SCRAM-SHA-256', 4096)) + '\n',
    );
    const store = new ScramCredentialFile(path);
    const auth = new ScramAuthenticator({ store });
    const login = async (): Promise<string> => {
      const client = new ScramClient({ hash: 'SHA-256', username: 'alice', password: 'pw' });
      const connect = attempt('SCRAM-SHA-256', client.clientFirst());
      const first = await auth.authenticate(connect, signal());
      if (first.kind !== 'continue') return first.kind;
      const final = await auth.step(
        {
          attempt: connect,
          method: 'SCRAM-SHA-256',
          data: client.clientFinal(first.data),
          state: first.state,
          reauthentication: false,
        },
        signal(),
      );
      return final.kind;
    };
    expect(await login()).toBe('allow');
    writeFileSync(path, 'garbage without a colon\n');
    await expect(store.reload()).rejects.toThrow(BulwarkError);
    expect(await login()).toBe('allow');
    writeFileSync(path, '# nobody\n');
    await store.reload();
    expect(await login()).toBe('deny');
  });
});
