import type { Secret } from '../secret.js';
import { verifyPassword, type HashCheck, type StoredCredential } from './password-hash.js';
import type { VerificationServices } from './services.js';

export interface PasswordVerification {
  authenticator: string;
  username: string;
  password: Secret;
  credential: StoredCredential;
  signal: AbortSignal;
}

export type VerifiedPassword = HashCheck & { cached: boolean };

/**
 * Verifies a password through the shared machinery: the cache first (keyed by the stored credential too, so a
 * changed hash misses), then coalesced with identical in-flight attempts, then bounded by the hash pool.
 */
export async function verifyPasswordBounded(
  services: VerificationServices,
  v: PasswordVerification,
): Promise<VerifiedPassword> {
  const c = v.credential;
  const key = services.cache.key({
    authenticator: v.authenticator,
    username: v.username,
    secret: v.password,
    credentialVersion: [
      c.algorithm,
      c.hash,
      c.salt ?? '',
      c.iterations ?? '',
      c.saltPosition ?? '',
      c.encoding ?? '',
    ].join('\u0000'),
  });
  if (services.cache.get(key) === true) return { kind: 'match', cached: true };
  const check = await services.coalesce(
    `pw:${key}`,
    () => services.hashPool.run(() => verifyPassword(c, v.password)),
    v.signal,
  );
  if (check.kind === 'match') services.cache.set(key, true);
  return { ...check, cached: false };
}
