import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSigningKey } from '../../audit/signing-key.js';
import { existingUnknownUserSecret, UNKNOWN_USER_SECRET_FILE } from '../../authn/scram/unknown-user-secret.js';
import { readBearerToken } from '../../src/metrics/bearer-token.js';
import { readOwnerOnlyFile } from '../../src/owner-only-file.js';

const dir = mkdtempSync(join(tmpdir(), 'bw-owner-only-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const refuse = (why: string, hint?: string): never => {
  throw new Error(`refused: ${why}${hint ? ` (${hint})` : ''}`);
};

function file(name: string, content: string, mode = 0o600): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

/** A FIFO with owner-only permissions: reading it would wait for a writer that never comes. */
function fifo(name: string): string {
  const path = join(dir, name);
  execFileSync('mkfifo', ['-m', '600', path]);
  return path;
}

describe('readOwnerOnlyFile', () => {
  it("reads a regular file that is its owner's alone", () => {
    expect(readOwnerOnlyFile(file('ok', 'secret-bytes'), refuse).toString()).toBe('secret-bytes');
  });

  it('refuses a file group or others may read or write, naming the mode and the fix', () => {
    const path = file('open', 'secret-bytes', 0o640);
    expect(() => readOwnerOnlyFile(path, refuse)).toThrow(
      `refused: readable or writable by group or others (mode 640) (chmod 600 ${path})`,
    );
  });

  it('refuses a FIFO at once instead of waiting on it', () => {
    expect(() => readOwnerOnlyFile(fifo('pipe'), refuse, { notRegularHint: 'replace it' })).toThrow(
      'refused: not a regular file (replace it)',
    );
  });

  it('follows a symbolic link unless told not to', () => {
    const target = file('target', 'through-the-link');
    const link = join(dir, 'link');
    symlinkSync(target, link);
    expect(readOwnerOnlyFile(link, refuse).toString()).toBe('through-the-link');
    expect(() => readOwnerOnlyFile(link, refuse, { noFollow: true })).toThrow(
      'refused: a symbolic link, which is not followed here (replace the link with the file it points to)',
    );
  });

  it('refuses a file it cannot open with the error code, or passes a missing one on to a caller that makes it', () => {
    const missing = join(dir, 'missing');
    expect(() => readOwnerOnlyFile(missing, refuse)).toThrow('refused: cannot read (ENOENT)');
    expect(() => readOwnerOnlyFile(missing, refuse, { passMissing: true })).toThrow(
      expect.objectContaining({ code: 'ENOENT' }),
    );
  });
});

describe('the secrets read through it', () => {
  it('a metrics token file that is a FIFO stops the start with its setting named, instead of holding it', () => {
    expect(() => readBearerToken(fifo('token-pipe'), dir)).toThrow(
      /metrics\.bearer_token_file .*token-pipe: not a regular file/,
    );
  });

  it("the broker's own signing key is not read through a link planted in data_dir; a configured one may be a link", () => {
    const real = file(
      'real.key',
      generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    );
    const link = join(dir, 'audit-signing.key');
    symlinkSync(real, link);
    expect(() => loadSigningKey(link, false, true)).toThrow(
      /audit signing key .*audit-signing\.key: a symbolic link, which is not followed here/,
    );
    expect(loadSigningKey(link, false).keyId).toMatch(/^[\w-]{43}$/);
  });

  it('a SCRAM unknown-user secret in data_dir is not read through a link; a missing one is for start to make', () => {
    const dataDir = mkdtempSync(join(dir, 'scram-data-'));
    expect(existingUnknownUserSecret(dataDir)).toBeUndefined();
    symlinkSync(file('other-secret', 'x'.repeat(64)), join(dataDir, UNKNOWN_USER_SECRET_FILE));
    expect(() => existingUnknownUserSecret(dataDir)).toThrow(
      /SCRAM unknown-user secret .*: a symbolic link, which is not followed here/,
    );
    expect(() => existingUnknownUserSecret(dataDir)).toThrow(
      expect.objectContaining({ hint: 'delete it: the next start makes a new one' }),
    );
  });

  it('an audit signing key that is a FIFO, or unreadable, is refused as such (not as "not a PEM private key")', () => {
    expect(() => loadSigningKey(fifo('key-pipe'), false)).toThrow(/audit signing key .*key-pipe: not a regular file/);
    const open = file('key-open', '-----BEGIN PRIVATE KEY-----\n', 0o644);
    expect(() => loadSigningKey(open, false)).toThrow(
      /audit signing key .*key-open: readable or writable by group or others \(mode 644\)/,
    );
  });
});
