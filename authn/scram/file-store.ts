import { readFile } from 'node:fs/promises';
import { BulwarkError } from '../../src/errors.js';
import type { ScramCredentialStore } from './credential-store.js';
import { decodeScramCredential, encodeScramCredential } from './credential-format.js';
import { MIN_ITERATIONS, type ScramCredential, type ScramMechanism } from './mechanism.js';

/**
 * The SCRAM credential file: one `username:SCRAM-SHA-256$i:salt$StoredKey:ServerKey` per line, a user may have
 * one line per mechanism; `#` starts a comment line. User names cannot contain `:` or line breaks.
 */
export function parseScramCredentialFile(
  text: string,
  file: string,
  minIterations: number = MIN_ITERATIONS,
): Map<string, ScramCredential> {
  const users = new Map<string, ScramCredential>();
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const where = { file, line: index + 1, column: 1 };
    if (colon <= 0) {
      throw new BulwarkError('BULWARK_ERR_PASSWORD_FILE', 'expected username:credential', where, 'see docs/scram.md');
    }
    const username = line.slice(0, colon);
    const decoded = decodeScramCredential(line.slice(colon + 1), minIterations);
    if (!decoded.ok) {
      throw new BulwarkError(
        'BULWARK_ERR_PASSWORD_FILE',
        `invalid SCRAM credential for user "${username}": ${decoded.error}`,
        { ...where, column: colon + 2 },
        'regenerate it with `bulwark passwd`',
      );
    }
    const key = entryKey(username, decoded.credential.mechanism);
    if (users.has(key)) {
      throw new BulwarkError(
        'BULWARK_ERR_PASSWORD_FILE',
        `duplicate ${decoded.credential.mechanism} credential for user "${username}"`,
        where,
        'keep one line per user and mechanism',
      );
    }
    users.set(key, decoded.credential);
  });
  return users;
}

export function formatScramCredentialLine(username: string, credential: ScramCredential): string {
  if (/[:\r\n]/.test(username) || username === '') {
    throw new BulwarkError(
      'BULWARK_ERR_PASSWORD_FILE',
      'SCRAM user names cannot be empty or contain ":" or line breaks',
    );
  }
  return `${username}:${encodeScramCredential(credential)}`;
}

function entryKey(username: string, mechanism: ScramMechanism): string {
  return `${mechanism}\n${username}`;
}

/** File-backed store. `reload()` swaps the table atomically; a broken file throws and the old table stays live. */
export class ScramCredentialFile implements ScramCredentialStore {
  readonly kind = 'file';
  #users = new Map<string, ScramCredential>();
  #typical = new Map<ScramMechanism, number>();
  #typicalSalt = new Map<ScramMechanism, number>();
  #loaded: Promise<void> | undefined;

  constructor(
    readonly path: string,
    private readonly minIterations: number = MIN_ITERATIONS,
  ) {}

  async start(): Promise<void> {
    this.#loaded ??= this.reload();
    await this.#loaded;
  }

  /** Reads and parses the file as start does, keeping nothing (`bulwark config check`). */
  async check(): Promise<void> {
    await this.#read();
  }

  async reload(): Promise<void> {
    this.#users = await this.#read();
    this.#typical = mostCommon(this.#users.values(), (c) => c.iterations);
    this.#typicalSalt = mostCommon(this.#users.values(), (c) => c.salt.length);
  }

  async #read(): Promise<Map<string, ScramCredential>> {
    return parseScramCredentialFile(await readFile(this.path, 'utf8'), this.path, this.minIterations);
  }

  typicalIterations(mechanism: ScramMechanism): number | undefined {
    return this.#typical.get(mechanism);
  }

  typicalSaltLength(mechanism: ScramMechanism): number | undefined {
    return this.#typicalSalt.get(mechanism);
  }

  get size(): number {
    return this.#users.size;
  }

  async lookup(username: string, mechanism: ScramMechanism): Promise<ScramCredential | undefined> {
    // Load on first use when the broker did not call start(); a failed load is retried on the next call.
    if (!this.#loaded) {
      this.#loaded = this.reload().catch((error: unknown) => {
        this.#loaded = undefined;
        throw error;
      });
    }
    await this.#loaded;
    return this.#users.get(entryKey(username, mechanism));
  }
}

/** Per mechanism, the value (iteration count, salt length) most credentials have (the higher one on a tie). */
function mostCommon(
  credentials: Iterable<ScramCredential>,
  value: (c: ScramCredential) => number,
): Map<ScramMechanism, number> {
  const counts = new Map<ScramMechanism, Map<number, number>>();
  for (const c of credentials) {
    const byCount = counts.get(c.mechanism) ?? new Map<number, number>();
    byCount.set(value(c), (byCount.get(value(c)) ?? 0) + 1);
    counts.set(c.mechanism, byCount);
  }
  const typical = new Map<ScramMechanism, number>();
  for (const [mechanism, byCount] of counts) {
    let best: [number, number] | undefined;
    for (const [v, n] of byCount) if (!best || n > best[1] || (n === best[1] && v > best[0])) best = [v, n];
    if (best) typical.set(mechanism, best[0]);
  }
  return typical;
}
