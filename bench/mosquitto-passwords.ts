import { pbkdf2, timingSafeEqual } from 'node:crypto';

/** One user of a Mosquitto password file: PBKDF2-HMAC-SHA512 parameters and the derived hash. */
export interface PasswordEntry {
  iterations: number;
  salt: Buffer;
  hash: Buffer;
}

/**
 * Reads a Mosquitto password file of `$7$` entries (`user:$7$ITERATIONS$SALT$HASH`, PBKDF2-HMAC-SHA512 over the
 * decoded salt, base64 fields), the format `mosquitto_passwd` 2.x writes. Other formats are refused rather than
 * silently never matching. Used by the bench's aedes launcher, so aedes checks the very file Mosquitto checks.
 */
export function parseMosquittoPasswords(text: string): Map<string, PasswordEntry> {
  const users = new Map<string, PasswordEntry>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.lastIndexOf(':');
    const m = /^\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(line.slice(colon + 1));
    if (colon <= 0 || !m) throw new Error(`password file line ${i + 1}: not a $7$ (PBKDF2-SHA512) entry`);
    users.set(line.slice(0, colon), {
      iterations: Number(m[1]),
      salt: Buffer.from(m[2] as string, 'base64'),
      hash: Buffer.from(m[3] as string, 'base64'),
    });
  });
  return users;
}

/** Whether `password` matches the entry; PBKDF2 runs on libuv's thread pool, off the event loop. */
export function verifyMosquittoPassword(entry: PasswordEntry, password: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    pbkdf2(password, entry.salt, entry.iterations, entry.hash.length, 'sha512', (error, derived) => {
      resolve(error === null && derived.length === entry.hash.length && timingSafeEqual(derived, entry.hash));
    });
  });
}
