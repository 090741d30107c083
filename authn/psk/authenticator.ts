import type { AuthnOutcome, Authenticator, ConnectAttempt } from '../types.js';
import type { PskStore } from './store.js';

export interface PskAuthenticatorOptions {
  id: string;
  /** The PSK identity becomes the username (replacing any the client sent). */
  useIdentityAsUsername: boolean;
  /**
   * When set, an identity no longer in this store is denied: a key removed from the file after the
   * handshake must not keep authenticating new MQTT sessions on a resumed or long TLS connection.
   */
  store?: Pick<PskStore, 'has'> & Partial<Pick<PskStore, 'start' | 'stop' | 'check'>>;
  /** Start and stop `store` with the authenticator (it was created for this step from its `file` setting). */
  ownsStore?: boolean;
}

/**
 * Allows a client whose TLS session was established with a pre-shared key: the handshake already proved it
 * holds the key for `tls.pskIdentity`. Ignores everything else (certificate or plain connections).
 * Synchronous underneath; safe for any number of concurrent clients.
 */
export class PskAuthenticator implements Authenticator {
  readonly type = 'psk';
  readonly id: string;
  readonly #options: PskAuthenticatorOptions;

  constructor(options: PskAuthenticatorOptions) {
    this.id = options.id;
    this.#options = options;
  }

  async start(): Promise<void> {
    if (this.#options.ownsStore) await this.#options.store?.start?.();
  }

  async stop(): Promise<void> {
    if (this.#options.ownsStore) await this.#options.store?.stop?.();
  }

  async checkFiles(): Promise<void> {
    if (this.#options.ownsStore) await this.#options.store?.check?.();
  }

  async authenticate(attempt: ConnectAttempt, _signal: AbortSignal): Promise<AuthnOutcome> {
    const identity = attempt.tls?.pskIdentity;
    if (identity === undefined)
      return { kind: 'ignore', detail: attempt.tls ? 'TLS session did not use a PSK' : 'not a TLS connection' };
    if (this.#options.store && !this.#options.store.has(identity)) {
      return {
        kind: 'deny',
        reason: 'notAuthorized',
        detail: `PSK identity ${JSON.stringify(identity)} is no longer in the PSK file`,
      };
    }
    return {
      kind: 'allow',
      identity: {
        clientId: attempt.clientId,
        // Only a name the key vouches for: the CONNECT User Name alone is whatever the client wrote.
        username: this.#options.useIdentityAsUsername ? identity : undefined,
        groups: [],
        attributes: { 'psk.identity': identity },
        superuser: false,
        anonymous: false,
        authenticator: this.id,
      },
    };
  }
}
