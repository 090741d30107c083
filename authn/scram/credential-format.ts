import { isScramMechanism, mechanismParams, MIN_ITERATIONS, type ScramCredential } from './mechanism.js';

/**
 * One credential as text, in PostgreSQL's `pg_authid.rolpassword` layout so operators can recognise it:
 * `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, all binary values base64.
 */
export function encodeScramCredential(credential: ScramCredential): string {
  const b64 = (b: Buffer): string => b.toString('base64');
  return `${credential.mechanism}$${credential.iterations}:${b64(credential.salt)}$${b64(credential.storedKey)}:${b64(credential.serverKey)}`;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Parses {@link encodeScramCredential}'s output; returns the reason on failure (never echoing key material). */
export function decodeScramCredential(
  text: string,
  minIterations: number = MIN_ITERATIONS,
): { ok: true; credential: ScramCredential } | { ok: false; error: string } {
  const m = /^(SCRAM-SHA-(?:256|512))\$(\d{1,10}):([^$:]+)\$([^$:]+):([^$:]+)$/.exec(text.trim());
  if (!m) return { ok: false, error: 'expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>' };
  const [, mechanism, iterText, salt, stored, server] = m;
  if (!isScramMechanism(mechanism)) return { ok: false, error: 'unknown mechanism' };
  const iterations = Number(iterText);
  if (iterations < minIterations) return { ok: false, error: `iteration count below the minimum of ${minIterations}` };
  for (const v of [salt, stored, server]) {
    if (v === undefined || !BASE64.test(v)) return { ok: false, error: 'salt and keys must be base64' };
  }
  const credential: ScramCredential = {
    mechanism,
    iterations,
    salt: Buffer.from(salt ?? '', 'base64'),
    storedKey: Buffer.from(stored ?? '', 'base64'),
    serverKey: Buffer.from(server ?? '', 'base64'),
  };
  const { length } = mechanismParams(mechanism);
  if (credential.storedKey.length !== length || credential.serverKey.length !== length) {
    return { ok: false, error: `StoredKey and ServerKey must be ${length} bytes for ${mechanism}` };
  }
  if (credential.salt.length < 8) return { ok: false, error: 'salt must be at least 8 bytes' };
  return { ok: true, credential };
}
