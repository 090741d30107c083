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
 * Whether this exact password was verified against this stored credential recently: the cache alone, no hashing
 * and no waiting, so an authenticator can answer a known client's reconnect without a promise.
 */
export function isVerifiedRecently(services: VerificationServices, v: Omit<PasswordVerification, 'signal'>): boolean {
  return services.cache.enabled && services.cache.get(cacheKey(services, v)) === true;
}

function cacheKey(services: VerificationServices, v: Omit<PasswordVerification, 'signal'>): string {
  return services.cache.key({
    authenticator: v.authenticator,
    username: v.username,
    secret: v.password,
    credentialVersion: credentialVersion(v.credential),
  });
}

/** A stored credential is never changed once built (its fields are readonly), so its version string is built once. */
const VERSIONS = new WeakMap<StoredCredential, string>();

function credentialVersion(c: StoredCredential): string {
  let version = VERSIONS.get(c);
  if (version === undefined) {
    version = [c.algorithm, c.hash, c.salt ?? '', c.iterations ?? '', c.saltPosition ?? '', c.encoding ?? ''].join(
      '\u0000',
    );
    VERSIONS.set(c, version);
  }
  return version;
}

/**
 * Verifies a password through the shared machinery: the cache first (keyed by the stored credential too, so a
 * changed hash misses), then coalesced with identical in-flight attempts, then bounded by the hash pool.
 */
export async function verifyPasswordBounded(
  services: VerificationServices,
  v: PasswordVerification,
): Promise<VerifiedPassword> {
  const c = v.credential;
  const key = cacheKey(services, v);
  if (services.cache.get(key) === true) return { kind: 'match', cached: true };
  const check = await services.coalesce(
    `pw:${key}`,
    () => services.hashPool.run(() => verifyPassword(c, v.password)),
    v.signal,
  );
  if (check.kind === 'match') services.cache.set(key, true);
  return { ...check, cached: false };
}
