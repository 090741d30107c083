import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { Secret } from '../secret.js';

const pbkdf2Async = promisify(pbkdf2);

/** The SASL mechanisms this server implements, which are also the MQTT 5 Authentication Method names. */
export const SCRAM_MECHANISMS = ['SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;
export type ScramMechanism = (typeof SCRAM_MECHANISMS)[number];

/** RFC 7677 §4: at least 4096 iterations for SCRAM-SHA-256; we apply the same floor to SHA-512. */
export const MIN_ITERATIONS = 4096;

interface MechanismParams {
  digest: 'sha256' | 'sha512';
  length: number;
}

const PARAMS: Record<ScramMechanism, MechanismParams> = {
  'SCRAM-SHA-256': { digest: 'sha256', length: 32 },
  'SCRAM-SHA-512': { digest: 'sha512', length: 64 },
};

export function isScramMechanism(value: string | undefined): value is ScramMechanism {
  return value !== undefined && (SCRAM_MECHANISMS as readonly string[]).includes(value);
}

export function mechanismParams(mechanism: ScramMechanism): MechanismParams {
  return PARAMS[mechanism];
}

/**
 * What the server keeps for one user and mechanism (RFC 5802 §3): enough to verify a proof and to prove
 * itself, never enough to log in as the user.
 */
export interface ScramCredential {
  mechanism: ScramMechanism;
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

export function hmac(mechanism: ScramMechanism, key: Buffer, data: string | Buffer): Buffer {
  return createHmac(PARAMS[mechanism].digest, key).update(data).digest();
}

export function hash(mechanism: ScramMechanism, data: Buffer): Buffer {
  return createHash(PARAMS[mechanism].digest).update(data).digest();
}

export function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] ?? 0) ^ (b[i] ?? 0);
  return out;
}

/**
 * Normalises a password before hashing. RFC 5802 asks for SASLprep (RFC 4013); printable ASCII is unchanged by
 * it, and for anything else we apply its main step, Unicode NFKC. Passwords using characters SASLprep maps to
 * nothing or prohibits may therefore differ from a client doing full SASLprep: see docs/scram.md.
 */
export function normalizePassword(password: string): string {
  return /^[\x20-\x7e]*$/.test(password) ? password : password.normalize('NFKC');
}

/**
 * Derives the stored credential for a password (RFC 5802 §3: SaltedPassword = Hi(password, salt, i),
 * StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey = HMAC(SaltedPassword, "Server Key")).
 * Used by `bulwark passwd` and by tests; runs PBKDF2 on the libuv threadpool.
 */
export async function deriveScramCredential(
  password: Secret | string,
  mechanism: ScramMechanism,
  iterations: number,
  salt: Buffer = randomBytes(16),
): Promise<ScramCredential> {
  if (!Number.isInteger(iterations) || iterations < MIN_ITERATIONS) {
    throw new RangeError(`SCRAM iteration count must be an integer of at least ${MIN_ITERATIONS}`);
  }
  const plain = password instanceof Secret ? password.revealString() : password;
  const { digest, length } = PARAMS[mechanism];
  const salted = await pbkdf2Async(Buffer.from(normalizePassword(plain), 'utf8'), salt, iterations, length, digest);
  const clientKey = hmac(mechanism, salted, 'Client Key');
  return {
    mechanism,
    salt: Buffer.from(salt),
    iterations,
    storedKey: hash(mechanism, clientKey),
    serverKey: hmac(mechanism, salted, 'Server Key'),
  };
}
