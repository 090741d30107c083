import { createHmac, randomBytes } from 'node:crypto';
import {
  InappropriateAuthError,
  InappropriateMatchingError,
  InsufficientAccessError,
  InvalidCredentialsError,
  InvalidDNSyntaxError,
  InvalidSyntaxError,
  NamingViolationError,
  NoSuchObjectError,
  ResultCodeError,
  SizeLimitExceededError,
  UnwillingToPerformError,
  type Entry,
} from 'ldapts';
import type { Secret } from '../secret.js';
import { raceAbort } from '../verify/race-abort.js';
import type { Authenticator, AuthnOutcome, ConnectAttempt, Identity } from '../types.js';
import { LdapConnectionPool, type LdapConnection, type LdapConnectionSettings } from './connection-pool.js';
import { escapeDnValue, escapeFilterValue, expandTemplate, templatePlaceholders } from './escape.js';
import { lookupGroups, stringValues, type GroupSettings, type UserEntry } from './groups.js';
import { TtlCache } from './ttl-cache.js';
import { hasControlCharacter } from '../../src/control-characters.js';

export type LdapUserLookup =
  { kind: 'bind'; dnTemplate: string } | { kind: 'search'; baseDn: string; filter: string; scope: 'one' | 'sub' };

export interface LdapAuthenticatorOptions {
  id?: string;
  connection: LdapConnectionSettings;
  /** Connections per purpose (user binds; service-account searches) and how many leases may wait. */
  pool: { maxConnections: number; maxWaiters: number };
  lookup: LdapUserLookup;
  /** Service account for search-then-bind and for group searches; required in `search` mode. */
  service?: { dn: string; password: Secret };
  /** A user the directory does not know: `deny` (badUserNameOrPassword) or `ignore` (next step decides). */
  userNotFound: 'deny' | 'ignore';
  groups?: GroupSettings;
  /** LDAP attributes copied to the identity as `ldap.<attribute>` (first value). */
  attributes: readonly string[];
  /** Members of this group (by name) are superusers. */
  superuserGroup?: string;
  cache: { maxEntries: number; bindTtlMs: number; groupTtlMs: number };
  /** Fails fast while the directory is known to be down (e.g. the broker's shared CircuitBreaker). */
  breaker?: { run<T>(task: () => Promise<T>): Promise<T> };
  /** Injected clock for the caches. */
  now?: () => number;
}

type Verification =
  | { kind: 'ok'; user: UserEntry; groups: string[] }
  | { kind: 'invalid' }
  | { kind: 'notFound' }
  | { kind: 'ambiguous' }
  | { kind: 'refused'; detail: string }
  | { kind: 'malformed'; detail: string };

/**
 * The longest user name (UTF-8 bytes) sent to the directory. Real names are far shorter (an e-mail address is at
 * most 254); a longer one is refused before any directory traffic, so a client cannot make the directory parse
 * kilobytes of DN or filter per attempt.
 */
export const MAX_LDAP_USERNAME_BYTES = 256;

/**
 * The longest client id (UTF-8 bytes) sent to the directory, when a DN template or filter uses `${clientid}`. The
 * broker's own client id limit can be raised to 65535 characters; in a template that would let a client send a
 * bind larger than the directory accepts before authentication (OpenLDAP closes the connection, which looks like
 * an outage and would open the breaker for everyone).
 */
export const MAX_LDAP_CLIENT_ID_BYTES = 256;

interface CachedBind {
  user: UserEntry;
}

/**
 * LDAP authentication (type `ldap`): bind as the user (DN template) or search-then-bind with a service
 * account, then resolve groups and attributes into the identity.
 *
 * Contract: called concurrently; identical attempts in flight share one directory round trip, and successes
 * are cached for `cache.bindTtlMs` (keyed by an HMAC of user, client id if templated, and password under a
 * per-process key; no plaintext is kept). An unreachable or stalled directory throws (or the chain's deadline
 * fires), which the chain turns into serverUnavailable. Wrong password: deny badUserNameOrPassword.
 */
export class LdapAuthenticator implements Authenticator {
  readonly id: string;
  readonly type = 'ldap';
  readonly #o: LdapAuthenticatorOptions;
  readonly #bindPool: LdapConnectionPool;
  readonly #servicePool: LdapConnectionPool | undefined;
  readonly #bindCache: TtlCache<CachedBind>;
  readonly #groupCache: TtlCache<string[]>;
  readonly #inFlight = new Map<string, Promise<Verification>>();
  readonly #cacheKey = randomBytes(32);
  readonly #keyOnClientId: boolean;
  readonly #readAttributes: string[];

  constructor(options: LdapAuthenticatorOptions) {
    this.#o = options;
    this.id = options.id ?? 'ldap';
    if (options.lookup.kind === 'search' && !options.service) {
      throw new Error('ldap: search-then-bind needs a service account');
    }
    const { maxConnections, maxWaiters } = options.pool;
    this.#bindPool = new LdapConnectionPool(options.connection, maxConnections, maxWaiters, false);
    this.#servicePool = options.service
      ? new LdapConnectionPool(options.connection, maxConnections, maxWaiters, true)
      : undefined;
    const now = options.now ?? Date.now;
    this.#bindCache = new TtlCache(options.cache.maxEntries, options.cache.bindTtlMs, now);
    this.#groupCache = new TtlCache(options.cache.maxEntries, options.cache.groupTtlMs, now);
    const templates = [
      options.lookup.kind === 'bind' ? options.lookup.dnTemplate : options.lookup.filter,
      options.groups?.filter ?? '',
    ];
    this.#keyOnClientId = templates.some((t) => templatePlaceholders(t).has('clientid'));
    const schemas = options.groups?.schemas ?? [];
    this.#readAttributes = [
      ...new Set([
        ...options.attributes,
        ...(schemas.includes('posixGroup') ? ['uid'] : []),
        ...(schemas.includes('memberOf') ? ['memberOf'] : []),
      ]),
    ];
  }

  async stop(): Promise<void> {
    await Promise.all([this.#bindPool.close(), this.#servicePool?.close()]);
  }

  /**
   * A known user whose bind (and groups) were cached moments ago is allowed at once, and the refusals that need no
   * directory are given at once too: a reconnect storm of a directory's users then costs no promise, timer or
   * abort signal per connect. Undefined when only the directory can answer.
   */
  quickAnswer(attempt: ConnectAttempt): AuthnOutcome | undefined {
    const known = this.#answerWithoutDirectory(attempt);
    return typeof known === 'string' ? undefined : known;
  }

  async authenticate(attempt: ConnectAttempt, signal: AbortSignal): Promise<AuthnOutcome> {
    const known = this.#answerWithoutDirectory(attempt);
    if (typeof known !== 'string') return known;
    const key = known;
    const password = attempt.password as Secret;
    const result = await this.#coalesced(key, attempt, password, signal);
    switch (result.kind) {
      case 'ok':
        this.#bindCache.set(key, { user: result.user });
        if (this.#o.groups) this.#groupCache.set(result.user.dn, result.groups);
        return this.#allow(attempt, result.user, result.groups, 'directory');
      case 'invalid':
        return {
          kind: 'deny',
          reason: 'badUserNameOrPassword',
          detail: 'directory refused the bind (invalid credentials)',
        };
      case 'notFound':
        return this.#o.userNotFound === 'ignore'
          ? { kind: 'ignore', detail: 'user not found in the directory' }
          : { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'user not found in the directory' };
      case 'ambiguous':
        return { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'user search matched more than one entry' };
      case 'refused':
        return { kind: 'deny', reason: 'notAuthorized', detail: result.detail };
      case 'malformed':
        return { kind: 'deny', reason: 'badUserNameOrPassword', detail: result.detail };
    }
  }

  /** The answer when the directory is not needed, or the cache key to ask it with. */
  #answerWithoutDirectory(attempt: ConnectAttempt): AuthnOutcome | string {
    const { username, password } = attempt;
    if (username === undefined) return { kind: 'ignore', detail: 'no username presented' };
    if (password === undefined) return { kind: 'ignore', detail: 'no password presented' };
    // Some directories treat a simple bind with an empty password as an anonymous bind that succeeds
    // (RFC 4513 §5.1.2): it must never reach them.
    if (password.isEmpty) {
      return { kind: 'deny', reason: 'badUserNameOrPassword', detail: 'empty password refused' };
    }
    // Directories match uid case-insensitively and ignore surrounding spaces: " alice" would bind as alice
    // while policies see a different user name. Refuse such names instead of normalising them.
    if (username === '' || username !== username.trim() || hasControlCharacter(username)) {
      return {
        kind: 'deny',
        reason: 'badUserNameOrPassword',
        detail: 'user name empty, padded or with control characters',
      };
    }
    if (Buffer.byteLength(username) > MAX_LDAP_USERNAME_BYTES) {
      return {
        kind: 'deny',
        reason: 'badUserNameOrPassword',
        detail: `user name longer than ${MAX_LDAP_USERNAME_BYTES} bytes`,
      };
    }
    if (this.#keyOnClientId && Buffer.byteLength(attempt.clientId) > MAX_LDAP_CLIENT_ID_BYTES) {
      return {
        kind: 'deny',
        reason: 'clientIdentifierNotValid',
        detail: `client id longer than ${MAX_LDAP_CLIENT_ID_BYTES} bytes, and the directory lookup uses it`,
      };
    }
    const key = this.#digest(attempt, password);
    const cached = this.#bindCache.get(key);
    const cachedGroups = cached ? this.#groupCache.get(cached.user.dn) : undefined;
    if (cached && (cachedGroups || !this.#o.groups)) {
      return this.#allow(attempt, cached.user, cachedGroups ?? [], 'cached');
    }
    return key;
  }

  #allow(attempt: ConnectAttempt, user: UserEntry, groups: string[], source: string): AuthnOutcome {
    const attributes: Record<string, string> = { 'ldap.dn': user.dn, 'ldap.source': source };
    for (const name of this.#o.attributes) {
      const value = user.attributes[name.toLowerCase()]?.[0];
      if (value !== undefined) attributes[`ldap.${name}`] = value;
    }
    const identity: Identity = {
      clientId: attempt.clientId,
      username: attempt.username,
      groups,
      attributes,
      superuser: this.#o.superuserGroup !== undefined && groups.includes(this.#o.superuserGroup),
      anonymous: false,
      authenticator: this.id,
    };
    return { kind: 'allow', identity };
  }

  /** Cache and coalescing key: an HMAC, so neither memory nor a heap dump holds a guessable password digest. */
  #digest(attempt: ConnectAttempt, password: Secret): string {
    const h = createHmac('sha256', this.#cacheKey);
    const parts = [this.id, attempt.username ?? '', this.#keyOnClientId ? attempt.clientId : ''];
    for (const p of parts) h.update(`${Buffer.byteLength(p)}:`).update(p);
    h.update(`${password.length}:`).update(password.reveal());
    return h.digest('base64url');
  }

  /**
   * One directory round trip per distinct (user, password) at a time: a reconnect storm of one device fleet
   * makes one bind, not thousands. Each caller still gives up on its own signal.
   */
  async #coalesced(key: string, attempt: ConnectAttempt, password: Secret, signal: AbortSignal): Promise<Verification> {
    let shared = this.#inFlight.get(key);
    if (!shared) {
      const { connectTimeoutMs, operationTimeoutMs } = this.#o.connection;
      // The shared work outlives any one caller's deadline but not forever.
      // Worst case: two new connections (bind and service pools) and service bind, search, user bind, groups.
      const own = AbortSignal.timeout(2 * connectTimeoutMs + 4 * operationTimeoutMs);
      const task = (): Promise<Verification> => this.#verify(attempt, password, own);
      shared = (this.#o.breaker ? this.#o.breaker.run(task) : task()).finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, shared);
    }
    return await raceAbort(shared, signal);
  }

  async #verify(attempt: ConnectAttempt, password: Secret, signal: AbortSignal): Promise<Verification> {
    const values = { username: attempt.username ?? '', clientid: attempt.clientId };
    const lookup = this.#o.lookup;
    let user: UserEntry;
    let groups: string[] | undefined;
    if (lookup.kind === 'search') {
      const found = await this.#withService(signal, async (conn) => {
        try {
          const { searchEntries } = await conn.client.search(lookup.baseDn, {
            scope: lookup.scope,
            filter: expandTemplate(lookup.filter, values, escapeFilterValue),
            attributes: this.#readAttributes.length > 0 ? this.#readAttributes : ['1.1'],
            sizeLimit: 2,
          });
          return searchEntries;
        } catch (error) {
          // Only the search carries the user's name; the service bind before it is configuration.
          if (isRequestFault(error))
            return { kind: 'malformed', detail: requestFaultDetail(error, this.#keyOnClientId) } as const;
          throw error;
        }
      }).catch((error: unknown) => {
        if (error instanceof SizeLimitExceededError) return 'ambiguous' as const;
        throw error;
      });
      if (found === 'ambiguous') return { kind: 'ambiguous' };
      if (!Array.isArray(found)) return found;
      if (found.length > 1) return { kind: 'ambiguous' };
      const entry = found[0];
      if (!entry) return { kind: 'notFound' };
      user = this.#userEntry(entry, attempt);
      const bound = await this.#bindPool.withConnection(signal, (conn) => this.#bindUser(conn, user.dn, password));
      if (bound) return bound;
    } else {
      const dn = expandTemplate(lookup.dnTemplate, values, escapeDnValue);
      const outcome = await this.#bindPool.withConnection<
        Verification | { kind: 'entry'; user: UserEntry; groups: string[] | undefined }
      >(signal, async (conn) => {
        const refused = await this.#bindUser(conn, dn, password);
        if (refused) return refused;
        let entry: Entry = { dn };
        if (this.#readAttributes.length > 0) {
          try {
            const { searchEntries } = await conn.client.search(dn, {
              scope: 'base',
              filter: '(objectClass=*)',
              attributes: this.#readAttributes,
            });
            entry = searchEntries[0] ?? entry;
          } catch (error) {
            if (error instanceof NoSuchObjectError) return { kind: 'notFound' } as const;
            throw error;
          }
        }
        const u = this.#userEntry(entry, attempt);
        // Without a service account, groups are read with the user's own rights on this connection.
        const g = this.#o.groups && !this.#servicePool ? await lookupGroups(conn.client, this.#o.groups, u) : undefined;
        return { kind: 'entry', user: u, groups: g } as const;
      });
      if (outcome.kind !== 'entry') return outcome;
      user = outcome.user;
      groups = outcome.groups;
    }
    const groupSettings = this.#o.groups;
    if (groupSettings && groups === undefined) {
      groups = await this.#withService(signal, (conn) => lookupGroups(conn.client, groupSettings, user));
    }
    return { kind: 'ok', user, groups: groups ?? [] };
  }

  #userEntry(entry: Entry, attempt: ConnectAttempt): UserEntry {
    const attributes: Record<string, string[]> = {};
    for (const name of this.#readAttributes) attributes[name.toLowerCase()] = stringValues(entry, name);
    return { dn: entry.dn, username: attempt.username ?? '', clientId: attempt.clientId, attributes };
  }

  /** Binds as the user; undefined on success, a refusal otherwise. Transport failures throw. */
  async #bindUser(conn: LdapConnection, dn: string, password: Secret): Promise<Verification | undefined> {
    conn.boundAs = undefined;
    try {
      await conn.client.bind(dn, password.revealString());
      conn.boundAs = 'user';
      return undefined;
    } catch (error) {
      if (error instanceof InvalidCredentialsError) return { kind: 'invalid' };
      // Account states some servers report this way (disabled, must change password, weak auth refused).
      if (
        error instanceof UnwillingToPerformError ||
        error instanceof InappropriateAuthError ||
        error instanceof InsufficientAccessError
      ) {
        return { kind: 'refused', detail: `directory refused the bind (result code ${error.code})` };
      }
      // The DN was built from the user name: a directory that cannot parse it is answering the client, not failing.
      if (isRequestFault(error)) return { kind: 'malformed', detail: requestFaultDetail(error, this.#keyOnClientId) };
      throw error;
    }
  }

  async #withService<T>(signal: AbortSignal, task: (conn: LdapConnection) => Promise<T>): Promise<T> {
    const pool = this.#servicePool;
    const service = this.#o.service;
    if (!pool || !service) throw new Error('ldap: no service account configured');
    return await pool.withConnection(signal, async (conn) => {
      if (conn.boundAs !== 'service' || !conn.client.isBound) {
        try {
          await conn.client.bind(service.dn, service.password.revealString());
        } catch (error) {
          // A misconfigured service account is a backend failure, not the user's fault.
          if (error instanceof InvalidCredentialsError)
            throw new Error('ldap: service account bind refused', { cause: error });
          throw error;
        }
        conn.boundAs = 'service';
      }
      return await task(conn);
    });
  }
}

/**
 * Result codes by which a working directory says the request itself is unacceptable (RFC 4511 §4.1.9): invalid DN
 * syntax (34), invalid attribute syntax (21), inappropriate matching (18), naming violation (64). Where the request
 * carries the client's user name, they are the client's doing: a deny, never a backend failure for the breaker.
 */
function isRequestFault(error: unknown): error is ResultCodeError {
  return (
    error instanceof InvalidDNSyntaxError ||
    error instanceof InvalidSyntaxError ||
    error instanceof InappropriateMatchingError ||
    error instanceof NamingViolationError
  );
}

/** Names what the request carried of the client's: its user name, and its client id where a template uses it. */
function requestFaultDetail(error: ResultCodeError, withClientId: boolean): string {
  return `directory refused the user name${withClientId ? ' or client id' : ''} (result code ${error.code})`;
}
