import { spawnSync } from 'node:child_process';
import { createHash, pbkdf2Sync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { describe, expect, it } from 'vitest';
import { Secret } from '../../../authn/secret.js';
import { hashPassword, needsRehash, OWASP_ARGON2ID, verifyPassword } from '../../../authn/verify/password-hash.js';

const pw = (s: string) => new Secret(s);
const hasMosquittoPasswd = spawnSync('mosquitto_passwd', ['-h']).error === undefined;

/** Hashes written by the real `mosquitto_passwd` (Mosquitto 2), read back from its file. */
function mosquittoHash(password: string, algorithm: 'sha512' | 'sha512-pbkdf2'): string {
  const dir = mkdtempSync(join(tmpdir(), 'mosq-'));
  try {
    const file = join(dir, 'pw');
    const r = spawnSync('mosquitto_passwd', ['-c', '-H', algorithm, '-b', file, 'alice', password]);
    if (r.status !== 0) throw new Error('mosquitto_passwd failed');
    return readFileSync(file, 'utf8').trim().split(':').slice(1).join(':');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('password hash verification', () => {
  it('argon2id PHC hashes verify the right password and refuse a wrong one', async () => {
    const hash = await hashPassword(pw('argon-pass'));
    expect(hash.startsWith('$argon2id$v=19$m=19456,t=2,p=1$')).toBe(true);
    expect((await verifyPassword({ hash, algorithm: 'auto' }, pw('argon-pass'))).kind).toBe('match');
    expect((await verifyPassword({ hash, algorithm: 'auto' }, pw('argon-pasS'))).kind).toBe('mismatch');
  });

  it('bcrypt hashes verify (bcryptjs)', async () => {
    const hash = await bcrypt.hash('bcrypt-pass', 4);
    expect((await verifyPassword({ hash, algorithm: 'auto' }, pw('bcrypt-pass'))).kind).toBe('match');
    expect((await verifyPassword({ hash, algorithm: 'auto' }, pw('bcrypt-pas'))).kind).toBe('mismatch');
  });

  it('bcrypt refuses passwords longer than 72 bytes instead of truncating them', async () => {
    const long = 'a'.repeat(72);
    const hash = await bcrypt.hash(long, 4);
    expect((await verifyPassword({ hash, algorithm: 'auto' }, pw(`${long}extra`))).kind).toBe('mismatch');
  });

  it.skipIf(!hasMosquittoPasswd)('mosquitto_passwd $7$ PBKDF2-SHA512 hashes verify', async () => {
    const hash = mosquittoHash('mosq-pbkdf2', 'sha512-pbkdf2');
    expect(hash.startsWith('$7$101$')).toBe(true);
    expect((await verifyPassword({ hash, algorithm: 'auto' }, pw('mosq-pbkdf2'))).kind).toBe('match');
    expect((await verifyPassword({ hash, algorithm: 'auto' }, pw('mosq-pbkdf3'))).kind).toBe('mismatch');
  });

  it.skipIf(!hasMosquittoPasswd)('mosquitto_passwd $6$ SHA-512 hashes verify', async () => {
    const hash = mosquittoHash('mosq-sha', 'sha512');
    expect(hash.startsWith('$6$')).toBe(true);
    expect((await verifyPassword({ hash, algorithm: 'auto' }, pw('mosq-sha'))).kind).toBe('match');
    expect((await verifyPassword({ hash, algorithm: 'auto' }, pw('mosq-shA'))).kind).toBe('mismatch');
  });

  it('a $7$ hash built independently with PBKDF2-HMAC-SHA512 verifies (format cross-check)', async () => {
    const salt = Buffer.from('0123456789ab');
    const digest = pbkdf2Sync('x-pass', salt, 1000, 64, 'sha512');
    const hash = `$7$1000$${salt.toString('base64')}$${digest.toString('base64')}`;
    expect((await verifyPassword({ hash, algorithm: 'auto' }, pw('x-pass'))).kind).toBe('match');
  });

  it('salted sha256 with the salt as prefix or suffix verifies', async () => {
    const pre = createHash('sha256').update('NaCl').update('s-pass').digest('hex');
    const suf = createHash('sha256').update('s-pass').update('NaCl').digest('base64');
    expect(
      (await verifyPassword({ hash: pre, algorithm: 'sha256', salt: 'NaCl', saltPosition: 'prefix' }, pw('s-pass')))
        .kind,
    ).toBe('match');
    expect(
      (
        await verifyPassword(
          { hash: suf, algorithm: 'sha256', salt: 'NaCl', saltPosition: 'suffix', encoding: 'base64' },
          pw('s-pass'),
        )
      ).kind,
    ).toBe('match');
    expect(
      (await verifyPassword({ hash: pre, algorithm: 'sha256', salt: 'NaCl', saltPosition: 'suffix' }, pw('s-pass')))
        .kind,
    ).toBe('mismatch');
  });

  it('an unsalted sha256 or sha512 digest is refused as unsupported, even for the right password', async () => {
    for (const algorithm of ['sha256', 'sha512'] as const) {
      const hash = createHash(algorithm).update('u-pass').digest('hex');
      for (const salt of [undefined, '']) {
        expect(
          await verifyPassword({ hash, algorithm, ...(salt !== undefined ? { salt } : {}) }, pw('u-pass')),
        ).toEqual({
          kind: 'unsupported',
          detail: `unsalted ${algorithm} hashes are not supported (the row has no salt)`,
        });
      }
    }
  });

  it('pbkdf2-sha512 with a separate salt and iteration count verifies', async () => {
    const hash = pbkdf2Sync('p-pass', 'salt!', 2000, 64, 'sha512').toString('hex');
    expect(
      (await verifyPassword({ hash, algorithm: 'pbkdf2-sha512', salt: 'salt!', iterations: 2000 }, pw('p-pass'))).kind,
    ).toBe('match');
    expect(
      (await verifyPassword({ hash, algorithm: 'pbkdf2-sha512', salt: 'salt!', iterations: 2001 }, pw('p-pass'))).kind,
    ).toBe('mismatch');
  });

  it('unrecognised or malformed hashes are unsupported, never a match', async () => {
    for (const hash of ['plaintext', '$7$abc$x$y', '$6$only', '$argon2id$garbage', '$2b$04$short']) {
      expect((await verifyPassword({ hash, algorithm: 'auto' }, pw('plaintext'))).kind).toBe('unsupported');
    }
  });

  it('needsRehash is false only for argon2id with the current parameters', async () => {
    expect(needsRehash(await hashPassword(pw('x')), OWASP_ARGON2ID)).toBe(false);
    expect(
      needsRehash(await hashPassword(pw('x'), { memoryCost: 8192, timeCost: 1, parallelism: 1 }), OWASP_ARGON2ID),
    ).toBe(true);
    expect(needsRehash(await bcrypt.hash('x', 4))).toBe(true);
  });
});
