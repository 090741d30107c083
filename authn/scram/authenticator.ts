import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AuthExchange, AuthnOutcome, ConnectAttempt, EnhancedAuthenticator, Identity } from '../types.js';
import type { ScramCredentialStore } from './credential-store.js';
import {
  hash,
  hmac,
  isScramMechanism,
  mechanismParams,
  MIN_ITERATIONS,
  SCRAM_MECHANISMS,
  xor,
  type ScramCredential,
  type ScramMechanism,
} from './mechanism.js';
import { parseClientFinal, parseClientFirst } from './messages.js';

export interface ScramAuthenticatorOptions {
  id?: string;
  store: ScramCredentialStore;
  mechanisms?: readonly ScramMechanism[];
  /** Stored credentials below this are treated as unusable (the exchange fails as for an unknown user). */
  minIterations?: number;
  /** Iteration count announced for unknown users; set it to what real credentials use so both look alike. */
  unknownUserIterations?: number;
  /**
   * Key for the deterministic fake salt of unknown users (RFC 5802 §9). Random per process when unset, so a
   * restart changes the fake salts; configure it to keep them stable.
   */
  unknownUserSecret?: Buffer;
  /** Server nonce source; only tests replaying the RFC 7677 vector replace the random default. */
  serverNonce?: () => string;
}

/** The state between server-first and client-final. Only this module creates it, so `step` can trust it. */
class PendingExchange {
  constructor(
    readonly mechanism: ScramMechanism,
    readonly username: string,
    readonly gs2Header: string,
    readonly nonce: string,
    /** client-first-message-bare "," server-first-message: the first two thirds of the AuthMessage. */
    readonly authMessagePrefix: string,
    readonly credential: ScramCredential,
    /** False when the credential is the fake one for an unknown user or an unusable stored credential. */
    readonly genuine: boolean,
  ) {}
}

// The same text for a wrong password and an unknown user, in case the broker forwards details as a
// Reason String.
const FAILED = 'SCRAM proof did not verify (wrong password or unknown user)';

/**
 * SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as MQTT 5 enhanced authentication.
 *
 * `authenticate` gets client-first in the CONNECT's (or AUTH 0x19's) Authentication Data and answers
 * `continue` with server-first; `step` gets client-final and answers `allow` with server-final (`v=...`) in
 * `authData`, to be sent in CONNACK (or the final AUTH 0x00 of a re-authentication), or `deny notAuthorized`.
 * A `step` without pending state but with data starts a fresh exchange, so re-authentication works whichever
 * entry point the chain uses. Safe to call concurrently: all per-exchange state lives in the returned `state`.
 */
export class ScramAuthenticator implements EnhancedAuthenticator {
  readonly id: string;
  readonly type = 'scram';
  readonly methods: readonly ScramMechanism[];
  readonly #store: ScramCredentialStore;
  readonly #minIterations: number;
  /** Configured (`unknown_user_iterations`); otherwise what the store's credentials typically use. */
  readonly #unknownIterations: number | undefined;
  readonly #unknownSecret: Buffer;
  readonly #serverNonce: () => string;

  constructor(options: ScramAuthenticatorOptions) {
    this.id = options.id ?? 'scram';
    this.methods = options.mechanisms ?? SCRAM_MECHANISMS;
    this.#store = options.store;
    this.#minIterations = Math.max(MIN_ITERATIONS, options.minIterations ?? MIN_ITERATIONS);
    this.#unknownIterations =
      options.unknownUserIterations === undefined
        ? undefined
        : Math.max(this.#minIterations, options.unknownUserIterations);
    this.#unknownSecret = options.unknownUserSecret ?? randomBytes(32);
    this.#serverNonce = options.serverNonce ?? ((): string => randomBytes(18).toString('base64'));
  }

  async start(): Promise<void> {
    await this.#store.start?.();
  }

  async stop(): Promise<void> {
    await this.#store.stop?.();
  }

  async checkFiles(): Promise<void> {
    await this.#store.check?.();
  }

  async authenticate(attempt: ConnectAttempt, signal: AbortSignal): Promise<AuthnOutcome> {
    const mechanism = attempt.authMethod;
    if (!isScramMechanism(mechanism) || !this.methods.includes(mechanism)) {
      return { kind: 'ignore', detail: 'not a SCRAM authentication method handled here' };
    }
    return await this.#begin(attempt, mechanism, attempt.authData, signal);
  }

  async step(exchange: AuthExchange, signal: AbortSignal): Promise<AuthnOutcome> {
    const mechanism = exchange.method;
    if (!isScramMechanism(mechanism) || !this.methods.includes(mechanism)) {
      return { kind: 'deny', reason: 'badAuthenticationMethod', detail: 'not a SCRAM method handled here' };
    }
    const pending = exchange.state;
    // No pending exchange, or a re-authentication (AUTH 0x19) arriving with the state of the finished exchange
    // and a message that is not a client-final (which always starts with "c=", RFC 5802 §7): start a new one.
    const isClientFinal = exchange.data?.subarray(0, 2).toString('latin1') === 'c=';
    if (!(pending instanceof PendingExchange) || (exchange.reauthentication && !isClientFinal)) {
      return await this.#begin(exchange.attempt, mechanism, exchange.data, signal);
    }
    if (pending.mechanism !== mechanism) {
      return { kind: 'deny', reason: 'protocolError', detail: 'authentication method changed mid-exchange' };
    }
    return this.#finish(exchange.attempt, pending, exchange.data);
  }

  async #begin(
    attempt: ConnectAttempt,
    mechanism: ScramMechanism,
    data: Buffer | undefined,
    signal: AbortSignal,
  ): Promise<AuthnOutcome> {
    if (!data) return { kind: 'deny', reason: 'notAuthorized', detail: 'missing SCRAM client-first-message' };
    const parsed = parseClientFirst(data);
    if (!parsed.ok) return { kind: 'deny', reason: 'notAuthorized', detail: `client-first-message: ${parsed.error}` };
    const first = parsed.value;
    // From here on the name being tried is known, whether or not the CONNECT carried one: abuse protection counts
    // failures against it and can refuse it before the proof is checked.
    const attemptedUsername = first.username;
    // We do not support acting on behalf of another identity (RFC 5802 §5.1 authzid).
    if (first.authzid !== undefined && first.authzid !== first.username) {
      return {
        kind: 'deny',
        reason: 'notAuthorized',
        detail: 'SCRAM authorization identity differs from user name',
        attemptedUsername,
      };
    }
    // Policies key on the user name; a CONNECT naming someone else than the SCRAM user would be ambiguous.
    if (attempt.username !== undefined && attempt.username !== first.username) {
      return {
        kind: 'deny',
        reason: 'notAuthorized',
        detail: 'CONNECT user name differs from the SCRAM user name',
        attemptedUsername,
      };
    }
    const stored = await this.#store.lookup(first.username, mechanism, signal);
    const genuine = stored !== undefined && stored.iterations >= this.#minIterations && stored.mechanism === mechanism;
    const credential = genuine ? stored : this.#fakeCredential(first.username, mechanism);
    const nonce = first.clientNonce + this.#serverNonce();
    const serverFirst = `r=${nonce},s=${credential.salt.toString('base64')},i=${credential.iterations}`;
    return {
      kind: 'continue',
      attemptedUsername,
      data: Buffer.from(serverFirst, 'utf8'),
      state: new PendingExchange(
        mechanism,
        first.username,
        first.gs2Header,
        nonce,
        `${first.bare},${serverFirst}`,
        credential,
        genuine,
      ),
    };
  }

  #finish(attempt: ConnectAttempt, pending: PendingExchange, data: Buffer | undefined): AuthnOutcome {
    const refuse = (detail: string): AuthnOutcome => ({
      kind: 'deny',
      reason: 'notAuthorized',
      detail,
      attemptedUsername: pending.username,
    });
    if (!data) return refuse('missing SCRAM client-final-message');
    const parsed = parseClientFinal(data);
    if (!parsed.ok) return refuse(`client-final-message: ${parsed.error}`);
    const final = parsed.value;
    if (!Buffer.from(final.channelBinding, 'base64').equals(Buffer.from(pending.gs2Header, 'utf8'))) {
      return refuse('channel binding data does not match the gs2-header');
    }
    if (final.nonce !== pending.nonce) {
      return refuse('nonce does not match the server-first-message');
    }
    const { storedKey, serverKey } = pending.credential;
    const { length } = mechanismParams(pending.mechanism);
    const authMessage = `${pending.authMessagePrefix},${final.withoutProof}`;
    const clientSignature = hmac(pending.mechanism, storedKey, authMessage);
    const proof = final.proof.length === length ? final.proof : Buffer.alloc(length);
    const candidate = hash(pending.mechanism, xor(proof, clientSignature));
    const verified = timingSafeEqual(candidate, storedKey) && final.proof.length === length && pending.genuine;
    if (!verified) return refuse(FAILED);
    const serverSignature = hmac(pending.mechanism, serverKey, authMessage);
    const identity: Identity = {
      clientId: attempt.clientId,
      username: pending.username,
      groups: [],
      attributes: { 'scram.mechanism': pending.mechanism },
      superuser: false,
      anonymous: false,
      authenticator: this.id,
    };
    return { kind: 'allow', identity, authData: Buffer.from(`v=${serverSignature.toString('base64')}`, 'utf8') };
  }

  /** RFC 5802 §9: answer unknown users with a salt that is stable per user, so probing reveals nothing. */
  #fakeCredential(username: string, mechanism: ScramMechanism): ScramCredential {
    const derive = (label: string, size: number): Buffer =>
      createHmac('sha512', this.#unknownSecret)
        .update(`${label}\0${mechanism}\0${username}`)
        .digest()
        .subarray(0, size);
    const { length } = mechanismParams(mechanism);
    return {
      mechanism,
      // As long as most real salts of the store are (a length only unknown users had would give them away); 16
      // bytes, what `bulwark passwd` makes, where the store cannot tell. At most what one HMAC-SHA-512 gives.
      salt: derive('salt', Math.min(64, this.#store.typicalSaltLength?.(mechanism) ?? 16)),
      iterations: Math.max(
        this.#minIterations,
        this.#unknownIterations ?? this.#store.typicalIterations?.(mechanism) ?? this.#minIterations,
      ),
      storedKey: derive('stored-key', length),
      serverKey: derive('server-key', length),
    };
  }
}
