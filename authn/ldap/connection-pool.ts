import { Socket, connect as netConnect } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { Client, ResultCodeError } from 'ldapts';
import { abortReason, raceAbort } from '../verify/race-abort.js';

export interface LdapConnectionSettings {
  /** `ldap://host:port` or `ldaps://host:port`. */
  url: string;
  /** Upgrade `ldap://` with StartTLS before anything else is sent; a failed upgrade is an error, never plaintext. */
  startTls: boolean;
  /** CA, server name and the like for LDAPS and StartTLS; certificates are always verified. */
  tls: ConnectionOptions;
  connectTimeoutMs: number;
  operationTimeoutMs: number;
}

/** One leased connection. `boundAs` lets the pool skip a service rebind on a connection already bound. */
export interface LdapConnection {
  readonly client: Client;
  boundAs: 'service' | 'user' | undefined;
}

interface Waiter {
  resolve: (c: LdapConnection) => void;
  reject: (e: Error) => void;
  /** Its caller gave up (deadline, abort): whatever arrives for it later belongs to the pool. */
  gaveUp: boolean;
}

/**
 * A bounded pool of LDAP connections leased exclusively: a bind changes a connection's identity, so two
 * authentications never share one at the same time. Waiting is bounded too; beyond `maxWaiters` a lease fails
 * at once (the chain answers serverUnavailable). A connection that saw a transport error, a timeout or an
 * abort is discarded rather than returned, since its state is unknown.
 */
export class LdapConnectionPool {
  readonly #idle: LdapConnection[] = [];
  readonly #waiters: Waiter[] = [];
  #total = 0;
  #closed = false;

  constructor(
    private readonly settings: LdapConnectionSettings,
    readonly maxConnections: number,
    readonly maxWaiters: number,
    /** Service connections re-bind themselves if ldapts transparently reconnects (ldap:// and ldaps:// only). */
    private readonly autoRebind: boolean,
  ) {}

  get size(): number {
    return this.#total;
  }

  /** Runs `task` on a leased connection; rejects when `signal` aborts (and discards the connection then). */
  async withConnection<T>(signal: AbortSignal, task: (connection: LdapConnection) => Promise<T>): Promise<T> {
    const connection = await this.#acquire(signal);
    let healthy = false;
    try {
      const result = await raceAbort(task(connection), signal);
      healthy = true;
      return result;
    } catch (error) {
      // A result code (e.g. 49 invalid credentials) comes over a working connection; anything else does not.
      healthy = error instanceof ResultCodeError;
      if (healthy) connection.boundAs = undefined;
      throw error;
    } finally {
      this.#release(connection, healthy && connection.client.isConnected);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) w.reject(new Error('LDAP pool closed'));
    const idle = this.#idle.splice(0);
    this.#total -= idle.length;
    await Promise.all(idle.map((c) => c.client.unbind().catch(() => undefined)));
  }

  async #acquire(signal: AbortSignal): Promise<LdapConnection> {
    signal.throwIfAborted();
    if (this.#closed) throw new Error('LDAP pool closed');
    const idle = this.#idle.pop();
    if (idle) return idle;
    if (this.#total < this.maxConnections) {
      this.#total++;
      const opening = this.#open();
      try {
        return await raceAbort(opening, signal);
      } catch (error) {
        // Aborted while connecting: close the connection if it still comes up, and free the slot.
        opening.then(
          (c) => c.client.unbind().catch(() => undefined),
          () => undefined,
        );
        this.#total--;
        this.#wakeForCapacity();
        throw error;
      }
    }
    if (this.#waiters.length >= this.maxWaiters) throw new Error('LDAP connection pool exhausted');
    return await new Promise<LdapConnection>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (c) => {
          signal.removeEventListener('abort', onAbort);
          resolve(c);
        },
        reject: (e) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
        gaveUp: false,
      };
      const onAbort = (): void => {
        waiter.gaveUp = true;
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(abortReason(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  #release(connection: LdapConnection, reusable: boolean): void {
    if (!reusable || this.#closed) {
      this.#total--;
      connection.client.unbind().catch(() => undefined);
      this.#wakeForCapacity();
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve(connection);
    else this.#idle.push(connection);
  }

  /**
   * A slot freed up: open a fresh connection for the first waiter, if any. The waiter may give up before the
   * connection is up; the connection then goes to the next waiter or to the idle list (or is closed when the pool
   * is), so the slot it holds is never lost.
   */
  #wakeForCapacity(): void {
    const waiter = this.#waiters.shift();
    if (!waiter) return;
    this.#total++;
    this.#open().then(
      (connection) => {
        if (waiter.gaveUp || this.#closed) this.#release(connection, connection.client.isConnected);
        else waiter.resolve(connection);
      },
      (error: unknown) => {
        this.#total--;
        if (!waiter.gaveUp) waiter.reject(error instanceof Error ? error : new Error(String(error)));
        this.#wakeForCapacity();
      },
    );
  }

  async #open(): Promise<LdapConnection> {
    const s = this.settings;
    let connected = false;
    let raw: Socket | undefined;
    const client = new Client({
      url: s.url,
      timeout: s.operationTimeoutMs,
      connectTimeout: s.connectTimeoutMs,
      // Only for ldaps://: ldapts given tlsOptions on an ldap:// client breaks the later StartTLS handshake.
      ...(s.url.startsWith('ldaps:') ? { tlsOptions: { ...s.tls } } : {}),
      autoRebind: this.autoRebind && !s.startTls,
      // ldapts reconnects transparently when a socket closes, but would not redo StartTLS: a StartTLS
      // connection gets exactly one socket, so a bind can never go out in plaintext after a reconnect.
      ...(s.startTls
        ? {
            createConnection: ((port: number, host: string): Socket => {
              if (!connected) {
                connected = true;
                raw = netConnect(port, host);
                return raw;
              }
              const refused = new Socket();
              process.nextTick(() => refused.destroy(new Error('StartTLS connection lost; not reconnecting')));
              return refused;
            }) as typeof netConnect,
          }
        : {}),
    });
    if (s.startTls) {
      // ldapts bounds the TCP connect and the StartTLS request, but not the TLS handshake after it: a directory
      // (or a proxy in front of it) that stalls there would hold the pool slot forever. The whole upgrade gets the
      // connect deadline; past it the socket is destroyed, which fails the handshake.
      const timer = setTimeout(
        () => raw?.destroy(new Error(`StartTLS not completed within ${s.connectTimeoutMs} ms`)),
        s.connectTimeoutMs,
      );
      try {
        // A fresh options object per connection (ldapts stores the socket in it), and the URL host, so the
        // certificate is checked against the directory's name rather than Node's default of "localhost".
        await client.startTLS({ host: new URL(s.url).hostname, ...s.tls });
      } catch (error) {
        raw?.destroy();
        await client.unbind().catch(() => undefined);
        throw error;
      } finally {
        clearTimeout(timer);
      }
    }
    return { client, boundAs: undefined };
  }
}
