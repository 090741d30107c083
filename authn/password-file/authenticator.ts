import type { AuditEvent } from '../../audit/events.js';
import { Secret } from '../secret.js';
import { NO_ATTRIBUTES, type Authenticator, type AuthnOutcome, type ConnectAttempt } from '../types.js';
import { hashPassword, needsRehash, type Argon2Params, type StoredCredential } from '../verify/password-hash.js';
import type { VerificationServices } from '../verify/services.js';
import { isVerifiedRecently, verifyPasswordBounded } from '../verify/verify-password.js';
import type { PasswordFileUser } from './format.js';
import { PasswordFileStore } from './store.js';

export interface PasswordFileOptions {
  id: string;
  file: string;
  /** `ignore` lets a later step try users this file does not know; `deny` makes the file authoritative. */
  unknownUser: 'ignore' | 'deny';
  /** Rewrite a user's hash as argon2id with `argon2` parameters after a successful login with an older hash. */
  rehash: boolean;
  argon2: Argon2Params;
  watch: boolean;
  reloadDebounceMs: number;
  verification: VerificationServices;
  onEvent: (event: AuditEvent) => void;
}

/**
 * One credential object per loaded user, so the verification cache can reuse what it derives from it (a reload
 * replaces the user objects, and with them these).
 */
const CREDENTIALS = new WeakMap<PasswordFileUser, StoredCredential>();

function credentialOf(user: PasswordFileUser): StoredCredential {
  let credential = CREDENTIALS.get(user);
  if (credential === undefined) {
    credential = { hash: user.hash, algorithm: 'auto' };
    CREDENTIALS.set(user, credential);
  }
  return credential;
}

/**
 * Users from a YAML file with argon2id, bcrypt or Mosquitto `mosquitto_passwd` hashes. Runs concurrently for
 * many clients; verifications go through the shared hash pool, coalescer and cache.
 */
export class PasswordFileAuthenticator implements Authenticator {
  readonly type = 'password-file';
  readonly id: string;
  readonly store: PasswordFileStore;
  #dummyHash: Promise<string> | undefined;

  constructor(private readonly options: PasswordFileOptions) {
    this.id = options.id;
    this.store = new PasswordFileStore(options.file, {
      id: options.id,
      onEvent: options.onEvent,
      watch: options.watch,
      debounceMs: options.reloadDebounceMs,
    });
  }

  start(): Promise<void> {
    return this.store.start();
  }

  stop(): Promise<void> {
    return this.store.stop();
  }

  checkFiles(): Promise<void> {
    return this.store.check();
  }

  /** A known user whose password was verified against the same stored hash moments ago is allowed at once. */
  quickAnswer(attempt: ConnectAttempt): AuthnOutcome | undefined {
    const { username, password } = attempt;
    if (username === undefined || password === undefined || password.isEmpty) return undefined;
    const user = this.store.lookup(username);
    if (!user) return undefined;
    const verification = {
      authenticator: this.id,
      username,
      password,
      credential: credentialOf(user),
    };
    if (!isVerifiedRecently(this.options.verification, verification)) return undefined;
    return this.#allow(attempt, username, user);
  }

  #allow(attempt: ConnectAttempt, username: string, user: PasswordFileUser): AuthnOutcome {
    return {
      kind: 'allow',
      identity: {
        clientId: attempt.clientId,
        username,
        groups: user.groups,
        attributes: NO_ATTRIBUTES,
        superuser: user.superuser,
        anonymous: false,
        authenticator: this.id,
      },
    };
  }

  async authenticate(attempt: ConnectAttempt, signal: AbortSignal): Promise<AuthnOutcome> {
    const { username, password } = attempt;
    if (username === undefined) return { kind: 'ignore', detail: 'no username presented' };
    if (password === undefined) return { kind: 'ignore', detail: 'no password presented' };
    // Some backends treat an empty password as an anonymous bind; we refuse it everywhere.
    if (password.isEmpty) return { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'empty password refused' };
    const user = this.store.lookup(username);
    if (!user) {
      if (this.options.unknownUser === 'ignore') return { kind: 'ignore', detail: 'unknown user' };
      // Spend the same work as for a known user, so timing does not tell which usernames exist.
      await verifyPasswordBounded(this.options.verification, {
        authenticator: this.id,
        username: '\u0000unknown',
        password,
        credential: { hash: await this.#dummy(), algorithm: 'argon2' },
        signal,
      });
      return { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'unknown user' };
    }
    const check = await verifyPasswordBounded(this.options.verification, {
      authenticator: this.id,
      username,
      password,
      credential: credentialOf(user),
      signal,
    });
    if (check.kind === 'unsupported') {
      return {
        kind: 'deny',
        reason: 'badUserNameOrPassword',
        detail: `${check.detail} (${this.options.file}:${user.line})`,
      };
    }
    if (check.kind === 'mismatch') return { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'wrong password' };
    if (this.options.rehash && !check.cached && needsRehash(user.hash, this.options.argon2)) {
      this.#rehash(username, user.hash, password);
    }
    return this.#allow(attempt, username, user);
  }

  /** Fire-and-forget: the login has succeeded already; a failed rehash is reported, never fatal. */
  #rehash(username: string, oldHash: string, password: Secret): void {
    const copy = new Secret(password.reveal());
    void this.options.verification.hashPool
      .run(() => hashPassword(copy, this.options.argon2))
      .then((newHash) => this.store.updateHash(username, oldHash, newHash))
      .then((changed) => {
        if (changed) {
          this.options.onEvent({
            event: {
              action: 'credentials.rehashed',
              outcome: 'success',
              reason: 'hash upgraded to current argon2id parameters',
            },
            user: { name: username },
            policy: { file: this.options.file },
            actor: 'broker',
            labels: { authenticator: this.id },
          });
        }
      })
      .catch((error: unknown) => {
        this.options.onEvent({
          event: {
            action: 'credentials.rehash_failed',
            outcome: 'failure',
            reason: error instanceof Error ? error.name : 'error',
          },
          user: { name: username },
          policy: { file: this.options.file },
          actor: 'broker',
          labels: { authenticator: this.id },
        });
      });
  }

  #dummy(): Promise<string> {
    this.#dummyHash ??= hashPassword(new Secret('bulwark-timing-equaliser'), this.options.argon2);
    return this.#dummyHash;
  }
}
