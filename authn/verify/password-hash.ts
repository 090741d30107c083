import { createHash, pbkdf2 } from 'node:crypto';
import { promisify } from 'node:util';
import * as argon2 from 'argon2';
import bcrypt from 'bcryptjs';
import { constantTimeEqual, type Secret } from '../secret.js';

const pbkdf2Async = promisify(pbkdf2);

/** How a stored password hash is to be read. `auto` recognises PHC/modular-crypt prefixes. */
export const HASH_ALGORITHMS = [
  'auto',
  'argon2',
  'bcrypt',
  'mosquitto',
  'pbkdf2-sha512',
  'pbkdf2-sha256',
  'sha256',
  'sha512',
] as const;
export type HashAlgorithm = (typeof HASH_ALGORITHMS)[number];

export interface StoredCredential {
  readonly hash: string;
  readonly algorithm: HashAlgorithm;
  /** For the salted algorithms that keep the salt apart from the hash (SQL tables). */
  readonly salt?: string;
  /** PBKDF2 iterations when they are not part of the hash string. */
  readonly iterations?: number;
  /** sha256/sha512: whether the salt is hashed before (`prefix`) or after (`suffix`) the password. */
  readonly saltPosition?: 'prefix' | 'suffix';
  /** Encoding of a bare digest (sha*, pbkdf2-*); the salt is used as the UTF-8 string it is. */
  readonly encoding?: 'hex' | 'base64';
}

export type HashCheck = { kind: 'match' } | { kind: 'mismatch' } | { kind: 'unsupported'; detail: string };

/** OWASP Password Storage Cheat Sheet (2023) argon2id parameters: m=19 MiB, t=2, p=1. */
export interface Argon2Params {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}
export const OWASP_ARGON2ID: Argon2Params = { memoryCost: 19456, timeCost: 2, parallelism: 1 };

export function hashPassword(password: Secret, params: Argon2Params = OWASP_ARGON2ID): Promise<string> {
  return argon2.hash(password.reveal(), { type: argon2.argon2id, ...params });
}

/** True when the stored hash is not argon2id with exactly the current parameters. */
export function needsRehash(hash: string, params: Argon2Params = OWASP_ARGON2ID): boolean {
  if (!hash.startsWith('$argon2id$')) return true;
  try {
    return argon2.needsRehash(hash, params);
  } catch {
    return true;
  }
}

export function detectAlgorithm(hash: string): HashAlgorithm | undefined {
  if (/^\$argon2(id|i|d)\$/.test(hash)) return 'argon2';
  if (/^\$2[aby]\$\d\d\$/.test(hash)) return 'bcrypt';
  if (/^\$[67]\$/.test(hash)) return 'mosquitto';
  return undefined;
}

/**
 * Checks a password against a stored hash. Digest comparisons are constant-time; argon2 and bcrypt compare
 * inside their libraries. A malformed hash is `unsupported`, never a match.
 */
export async function verifyPassword(stored: StoredCredential, password: Secret): Promise<HashCheck> {
  const algorithm = stored.algorithm === 'auto' ? detectAlgorithm(stored.hash) : stored.algorithm;
  if (!algorithm) return { kind: 'unsupported', detail: 'stored hash has an unrecognised format' };
  const verdict = (ok: boolean): HashCheck => (ok ? { kind: 'match' } : { kind: 'mismatch' });
  switch (algorithm) {
    case 'argon2':
      try {
        return verdict(await argon2.verify(stored.hash, password.reveal()));
      } catch {
        return { kind: 'unsupported', detail: 'stored argon2 hash is malformed' };
      }
    case 'bcrypt':
      if (!/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(stored.hash)) {
        return { kind: 'unsupported', detail: 'stored bcrypt hash is malformed' };
      }
      // bcrypt reads at most 72 bytes; longer passwords are refused rather than silently truncated.
      if (password.length > 72) return { kind: 'mismatch' };
      return verdict(await bcrypt.compare(password.revealString(), stored.hash));
    case 'mosquitto':
      return verifyMosquitto(stored.hash, password);
    case 'pbkdf2-sha512':
    case 'pbkdf2-sha256': {
      if (stored.salt === undefined || stored.salt === '') {
        return { kind: 'unsupported', detail: `${algorithm} needs a salt` };
      }
      const expected = decodeDigest(stored.hash, stored.encoding ?? 'hex');
      if (!expected) return { kind: 'unsupported', detail: `stored ${algorithm} digest is malformed` };
      const derived = await pbkdf2Async(
        password.reveal(),
        Buffer.from(stored.salt, 'utf8'),
        stored.iterations ?? 100_000,
        expected.length,
        algorithm === 'pbkdf2-sha512' ? 'sha512' : 'sha256',
      );
      return verdict(constantTimeEqual(derived, expected));
    }
    case 'sha256':
    case 'sha512': {
      // An unsalted digest falls to precomputed tables, and one password gives every user the same digest.
      if (stored.salt === undefined || stored.salt === '') {
        return { kind: 'unsupported', detail: `unsalted ${algorithm} hashes are not supported (the row has no salt)` };
      }
      const expected = decodeDigest(stored.hash, stored.encoding ?? 'hex');
      if (!expected) return { kind: 'unsupported', detail: `stored ${algorithm} digest is malformed` };
      const salt = Buffer.from(stored.salt, 'utf8');
      const h = createHash(algorithm);
      if (stored.saltPosition === 'suffix') h.update(password.reveal()).update(salt);
      else h.update(salt).update(password.reveal());
      return verdict(constantTimeEqual(h.digest(), expected));
    }
    default:
      return { kind: 'unsupported', detail: 'unknown hash algorithm' };
  }
}

/**
 * Mosquitto 2 `mosquitto_passwd` formats (src/password_mosq.c): `$6$<salt>$<hash>` is SHA-512 over the password
 * followed by the salt bytes; `$7$<iterations>$<salt>$<hash>` is PBKDF2-HMAC-SHA512 with a 64-byte output.
 * Salt and hash are standard base64 of the raw bytes (12-byte salts by default, 101 iterations by default).
 */
async function verifyMosquitto(hash: string, password: Secret): Promise<HashCheck> {
  const parts = hash.split('$');
  const b64 = /^[A-Za-z0-9+/]+={0,2}$/;
  if (parts[1] === '6' && parts.length === 4 && b64.test(parts[2] ?? '') && b64.test(parts[3] ?? '')) {
    const salt = Buffer.from(parts[2] ?? '', 'base64');
    const expected = Buffer.from(parts[3] ?? '', 'base64');
    const digest = createHash('sha512').update(password.reveal()).update(salt).digest();
    return { kind: constantTimeEqual(digest, expected) ? 'match' : 'mismatch' };
  }
  if (parts[1] === '7' && parts.length === 5 && /^\d{1,7}$/.test(parts[2] ?? '')) {
    const iterations = Number(parts[2]);
    if (iterations < 1 || !b64.test(parts[3] ?? '') || !b64.test(parts[4] ?? '')) {
      return { kind: 'unsupported', detail: 'stored mosquitto $7$ hash is malformed' };
    }
    const salt = Buffer.from(parts[3] ?? '', 'base64');
    const expected = Buffer.from(parts[4] ?? '', 'base64');
    if (expected.length === 0 || expected.length > 64) {
      return { kind: 'unsupported', detail: 'stored mosquitto $7$ hash is malformed' };
    }
    const derived = await pbkdf2Async(password.reveal(), salt, iterations, expected.length, 'sha512');
    return { kind: constantTimeEqual(derived, expected) ? 'match' : 'mismatch' };
  }
  return { kind: 'unsupported', detail: 'stored mosquitto hash is malformed' };
}

function decodeDigest(value: string, encoding: 'hex' | 'base64'): Buffer | undefined {
  const trimmed = value.trim();
  if (encoding === 'hex') {
    return /^(?:[0-9a-fA-F]{2})+$/.test(trimmed) ? Buffer.from(trimmed, 'hex') : undefined;
  }
  return /^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed, 'base64') : undefined;
}
