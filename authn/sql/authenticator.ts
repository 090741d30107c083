import type { CircuitBreaker } from '../verify/breaker.js';
import { isClientInputError } from '../../src/sql-client-input-error.js';
import type { Authenticator, AuthnOutcome, ConnectAttempt } from '../types.js';
import type { HashAlgorithm, StoredCredential } from '../verify/password-hash.js';
import type { VerificationServices } from '../verify/services.js';
import { verifyPasswordBounded } from '../verify/verify-password.js';
import type { SqlBackend } from './backend.js';
import { bindValues, type CompiledQuery } from './query-template.js';

export interface SqlAuthenticatorOptions {
  id: string;
  type: 'postgres' | 'mysql';
  backend: SqlBackend;
  /** Circuit-breaker name; steps sharing a database share it. */
  backendName: string;
  query: CompiledQuery;
  /** Used when the row has no `algorithm` column (or it is NULL). */
  hash: { algorithm: HashAlgorithm; saltPosition: 'prefix' | 'suffix'; encoding: 'hex' | 'base64'; iterations: number };
  unknownUser: 'ignore' | 'deny';
  /** Upper bound for one shared lookup (connect + query timeouts). */
  lookupDeadlineMs: number;
  verification: VerificationServices;
}

/** The database refused the lookup because of a value the client supplied (see `isClientInputError`). */
const INPUT_REFUSED = Symbol('input refused');

/** Columns the configured query returns, by name. Only `password_hash` is required. */
export const SQL_COLUMNS = ['password_hash', 'algorithm', 'salt', 'is_superuser', 'groups'] as const;

/**
 * Looks the user up with one parameterised query, then verifies the password through the shared hash pool.
 * Any database failure (refused, timeout, circuit open) is thrown, so the chain fails closed with
 * serverUnavailable; the breaker's half-open probe brings the step back when the database returns.
 */
export class SqlAuthenticator implements Authenticator {
  readonly id: string;
  readonly type: 'postgres' | 'mysql';

  readonly #breaker: CircuitBreaker;

  constructor(private readonly options: SqlAuthenticatorOptions) {
    this.id = options.id;
    this.type = options.type;
    // Made now rather than at the first lookup, so the backend is known (metrics: answering) before anyone logs in.
    this.#breaker = options.verification.breaker(options.backendName);
  }

  stop(): Promise<void> {
    return this.options.backend.close();
  }

  async authenticate(attempt: ConnectAttempt, signal: AbortSignal): Promise<AuthnOutcome> {
    const { username, password } = attempt;
    if (username === undefined) return { kind: 'ignore', detail: 'no username presented' };
    if (password === undefined) return { kind: 'ignore', detail: 'no password presented' };
    if (password.isEmpty) return { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'empty password refused' };

    const rows = await this.#lookup(attempt, signal);
    if (rows === INPUT_REFUSED) {
      return { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'the database cannot compare this user name' };
    }
    const row = rows[0];
    if (!row) {
      return this.options.unknownUser === 'ignore'
        ? { kind: 'ignore', detail: 'no row for user' }
        : { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'no row for user' };
    }
    const credential = this.#credential(row);
    if (typeof credential === 'string') return { kind: 'deny', reason: 'badUserNameOrPassword', detail: credential };
    const check = await verifyPasswordBounded(this.options.verification, {
      authenticator: this.id,
      username,
      password,
      credential,
      signal,
    });
    if (check.kind === 'unsupported') return { kind: 'deny', reason: 'badUserNameOrPassword', detail: check.detail };
    if (check.kind === 'mismatch') return { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'wrong password' };
    return {
      kind: 'allow',
      identity: {
        clientId: attempt.clientId,
        username,
        groups: parseGroups(row['groups']),
        attributes: {},
        superuser: truthy(row['is_superuser']),
        anonymous: false,
        authenticator: this.id,
      },
    };
  }

  #lookup(attempt: ConnectAttempt, signal: AbortSignal): Promise<Record<string, unknown>[] | typeof INPUT_REFUSED> {
    const { backend, verification, query } = this.options;
    const values = bindValues(query, attempt);
    // Identical lookups in flight (a reconnect storm of one client) share one round trip.
    const key = `sql:${this.id}:${JSON.stringify(values)}`;
    const breaker = this.#breaker;
    // The shared round trip must not die with whichever caller started it, so it gets its own deadline; a
    // saturated pool is overload, not a database failure, so it stays outside the breaker.
    return verification.coalesce(
      key,
      () => {
        const own = AbortSignal.timeout(this.options.lookupDeadlineMs);
        // A query refused because of the client's own values is an answer from a working database: it reaches the
        // breaker as a value, so no client can open the breaker (and lock everyone out) by choosing a user name.
        const ask = (): Promise<Record<string, unknown>[] | typeof INPUT_REFUSED> =>
          backend.query(query.text, values, own).catch((error: unknown) => {
            if (isClientInputError(error)) return INPUT_REFUSED;
            throw error;
          });
        return verification.sqlPool.run(() => breaker.run(ask), own);
      },
      signal,
    );
  }

  #credential(row: Record<string, unknown>): StoredCredential | string {
    const hash = asText(row['password_hash']);
    if (hash === undefined || hash === '') return 'row has no password_hash';
    const algorithmColumn = asText(row['algorithm']);
    const algorithm = (algorithmColumn ?? this.options.hash.algorithm) as HashAlgorithm;
    const salt = asText(row['salt']);
    return {
      hash,
      algorithm: normaliseAlgorithm(algorithm),
      ...(salt !== undefined ? { salt } : {}),
      saltPosition: this.options.hash.saltPosition,
      encoding: this.options.hash.encoding,
      iterations: this.options.hash.iterations,
    };
  }
}

/** Accepts the spellings databases commonly hold (`argon2id`, `bcrypt`, `sha256`, `pbkdf2_sha512`). */
function normaliseAlgorithm(a: string): HashAlgorithm {
  const v = a.trim().toLowerCase().replace(/_/g, '-');
  if (v === 'argon2id' || v === 'argon2i' || v === 'argon2d') return 'argon2';
  if (v === 'plain-sha256' || v === 'salted-sha256') return 'sha256';
  if (v === 'plain-sha512' || v === 'salted-sha512') return 'sha512';
  return v as HashAlgorithm;
}

function asText(v: unknown): string | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  return undefined;
}

function truthy(v: unknown): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return Number(v) === 1;
  const s = asText(v)?.trim().toLowerCase();
  return s === '1' || s === 'true' || s === 't' || s === 'yes';
}

/** A Postgres text[] arrives as an array; MySQL has none, so a comma-separated string is accepted too. */
function parseGroups(v: unknown): string[] {
  if (Array.isArray(v)) return v.filter((g): g is string => typeof g === 'string' && g !== '');
  const s = asText(v);
  if (!s) return [];
  return s
    .split(',')
    .map((g) => g.trim())
    .filter((g) => g !== '');
}
