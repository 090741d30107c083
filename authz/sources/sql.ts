import { LRUCache } from 'lru-cache';
import type { Secret } from '../../authn/secret.js';
import type { AuditEvent } from '../../audit/events.js';
import { CircuitBreaker } from '../../authn/verify/breaker.js';
import { ConcurrencyPool, PoolSaturatedError } from '../../authn/verify/pool.js';
import { DEFAULT_VERIFICATION } from '../../authn/verify/services.js';
import { BulwarkError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { isClientInputError } from '../../src/sql-client-input-error.js';
import { CompiledPolicy, type Verdict } from '../compile.js';
import { ACTIONS, TOPIC_ACTIONS, type RuleSpec } from '../model.js';
import { parseTopicPattern } from '../topic.js';
import type { AccessAction, AccessRequest, AuthzOutcome, AuthzSource } from '../types.js';

export type SqlDialect = 'postgres' | 'mysql';
export type QueryParameter = 'username' | 'clientid' | 'peerhost';

/** Runs one parameterised query. Implemented over pg and mysql2 pools below. */
export interface SqlExecutor {
  query(text: string, values: ReadonlyArray<string | null>): Promise<ReadonlyArray<Record<string, unknown>>>;
  close(): Promise<void>;
}

export interface SqlConnectionOptions {
  host: string;
  port: number;
  user: string;
  password?: Secret;
  database: string;
  /** Connect with TLS. `ca` is PEM text; `rejectUnauthorized` defaults to true. */
  tls?: { ca?: string; servername?: string; rejectUnauthorized?: boolean };
  poolSize?: number;
}

export interface SqlAclSourceOptions {
  id: string;
  dialect: SqlDialect;
  /** SQL with `${username}`, `${clientid}`, `${peerhost}` placeholders, each sent as a query parameter. */
  query: string;
  connection?: SqlConnectionOptions;
  /** Replaces the pool built from `connection` (embedding, tests). */
  executor?: SqlExecutor;
  cacheTtlMs: number;
  cacheMaxEntries: number;
  /** Passed to the driver as the statement timeout; the chain enforces its own deadline too. */
  queryTimeoutMs: number;
  /**
   * Consecutive failed lookups that make the source fail fast (`breaker_failure_threshold`), and for how long
   * before one probe (`breaker_reset_ms`). Defaults: those of the authentication backends (`DEFAULT_VERIFICATION`).
   */
  breaker?: { failureThreshold: number; resetMs: number };
  /**
   * Lookups beyond the pool's connections that may wait for one (default 1000); more are refused at once. Only
   * embedding code and tests change it.
   */
  maxQueuedLookups?: number;
  /** Hears the breaker open (`authz.source_unavailable`) and close again (`authz.source_recovered`). */
  onAvailabilityChange?: (event: AuditEvent) => void;
  now?: () => number;
  logger?: Logger;
}

const PARAM = /\$\{([a-z]+)\}/g;

/**
 * Rewrites `${name}` placeholders into the dialect's positional parameters (`$1` for PostgreSQL, `?` for MySQL).
 * Values never enter the SQL text. A placeholder inside quotes would be sent as literal text, so it is refused.
 */
export function compileQuery(
  query: string,
  dialect: SqlDialect,
): { ok: true; text: string; params: QueryParameter[] } | { ok: false; message: string } {
  const params: QueryParameter[] = [];
  let error: string | undefined;
  const text = query.replace(PARAM, (whole, name: string, offset: number) => {
    if (name !== 'username' && name !== 'clientid' && name !== 'peerhost') {
      error ??= `unknown placeholder ${whole}; use \${username}, \${clientid} or \${peerhost}`;
      return whole;
    }
    const before = query[offset - 1];
    const after = query[offset + whole.length];
    if (before === "'" || before === '"' || after === "'" || after === '"') {
      error ??= `do not quote ${whole}: it is sent as a query parameter`;
      return whole;
    }
    params.push(name);
    return dialect === 'postgres' ? `$${params.length}` : '?';
  });
  if (error) return { ok: false, message: error };
  if (params.length === 0) {
    return { ok: false, message: 'the query uses no placeholder, so every client would get the same rows' };
  }
  return { ok: true, text, params };
}

function column(row: Record<string, unknown>, name: string): unknown {
  if (name in row) return row[name];
  for (const k of Object.keys(row)) if (k.toLowerCase() === name) return row[k];
  return undefined;
}

/**
 * `connect` alone, or topic actions. `all` (and `pubsub`) mean the three topic actions only: a row such as
 * `deny all secret/#` is about topics and must not refuse the connection, so connect is granted or refused only
 * by a row whose action is exactly `connect`.
 */
function parseActions(v: unknown): AccessAction[] | undefined {
  if (typeof v !== 'string') return undefined;
  const s = v.trim().toLowerCase();
  if (s === 'all' || s === 'pubsub') return [...TOPIC_ACTIONS];
  const out: AccessAction[] = [];
  for (const part of s.split(',')) {
    const a = ACTIONS.find((x) => x === part.trim());
    if (!a) return undefined;
    if (!out.includes(a)) out.push(a);
  }
  if (out.includes('connect') && out.length > 1) return undefined;
  return out.length > 0 ? out : undefined;
}

function parseQos(v: unknown): (0 | 1 | 2)[] | undefined | false {
  if (v === null || v === undefined || v === '') return undefined;
  const parts = typeof v === 'number' ? [v] : typeof v === 'string' ? v.split(',').map((x) => Number(x.trim())) : [];
  if (parts.length === 0) return false;
  const out: (0 | 1 | 2)[] = [];
  for (const p of parts) {
    if (p !== 0 && p !== 1 && p !== 2) return false;
    out.push(p);
  }
  return out;
}

function parseRetain(v: unknown): boolean | undefined | 'bad' {
  if (v === null || v === undefined) return undefined;
  if (v === true || v === 1 || v === '1' || v === 't' || v === 'true') return true;
  if (v === false || v === 0 || v === '0' || v === 'f' || v === 'false') return false;
  return 'bad';
}

/**
 * Turns ACL rows (permission, action, topic, optional qos and retain) into rules. A row whose action is `connect`
 * answers connect requests; its other columns are ignored. A row that does not parse makes the whole lookup fail,
 * so a damaged table denies rather than silently dropping a deny row.
 */
export function rowsToRules(rows: ReadonlyArray<Record<string, unknown>>, sourceId: string): RuleSpec[] {
  return rows.map((row, i) => {
    const where = `${sourceId} row ${i + 1}`;
    const permission = String(column(row, 'permission') ?? '').toLowerCase();
    if (permission !== 'allow' && permission !== 'deny') {
      throw new BulwarkError('BULWARK_ERR_POLICY_INVALID', `${where}: permission must be allow or deny`);
    }
    const actions = parseActions(column(row, 'action'));
    if (!actions) {
      throw new BulwarkError(
        'BULWARK_ERR_POLICY_INVALID',
        `${where}: action must be connect (alone), or publish, subscribe, receive, all or a comma list of them`,
      );
    }
    const position = { file: sourceId, line: i + 1, column: 0 };
    if (actions[0] === 'connect') {
      // A connect row answers "may this client connect?"; topic, qos and retain say nothing about that.
      return {
        name: `row-${i + 1}`,
        effect: permission,
        actions,
        subjects: { all: true },
        topics: [],
        topicPositions: [],
        conditions: {},
        position,
      };
    }
    const topic = column(row, 'topic');
    if (typeof topic !== 'string' || !parseTopicPattern(topic).ok) {
      throw new BulwarkError('BULWARK_ERR_POLICY_INVALID', `${where}: topic is not a valid topic filter`);
    }
    const qos = parseQos(column(row, 'qos'));
    if (qos === false) throw new BulwarkError('BULWARK_ERR_POLICY_INVALID', `${where}: qos must be 0, 1, 2 or a list`);
    const retain = parseRetain(column(row, 'retain'));
    if (retain === 'bad') throw new BulwarkError('BULWARK_ERR_POLICY_INVALID', `${where}: retain must be boolean`);
    return {
      name: `row-${i + 1}`,
      effect: permission,
      actions,
      subjects: { all: true },
      topics: [topic],
      topicPositions: [position],
      conditions: { qos, retain },
      position,
    };
  });
}

interface Entry {
  at: number;
  /** The client's rows, compiled; or the refusal when the database could not take the client's values. */
  policy: CompiledPolicy | Verdict;
}

function answer(policy: CompiledPolicy | Verdict, req: AccessRequest): AuthzOutcome {
  return policy instanceof CompiledPolicy ? policy.authorize(req) : policy;
}

/**
 * PostgreSQL or MySQL/MariaDB ACL table. Rows for one (username, client id, peer host) are fetched with the
 * configured parameterised query, compiled like a policy file (deny wins, then first allow) and kept for
 * `cacheTtlMs` in a bounded cache, so checks after the first answer synchronously. Concurrent misses for the
 * same key share one query. Errors propagate to the chain, which applies the fail-closed rule and `on_error`.
 *
 * One exception: a query the database refuses because of the client's own values (a client id or user name a
 * LATIN1 database or latin1 column cannot hold, see `isClientInputError`) is an answer from a working database,
 * not a failure. It denies every request of that identity, named as such, and is cached like rows. Were it a
 * failure, `on_error: next` would let a client skip this source's deny rows by choosing its client id, and
 * `on_error: deny` would report every such request as a backend outage.
 *
 * A database that keeps failing opens a circuit breaker: lookups then fail at once (the chain applies `on_error`)
 * instead of each costing a connection attempt, a wait for the deadline and a warning in the log, at the rate
 * clients publish. One probe per reset period finds the database again.
 */
export class SqlAclSource implements AuthzSource {
  readonly id: string;
  readonly #opts: SqlAclSourceOptions;
  readonly #query: { text: string; params: QueryParameter[] };
  readonly #cache: LRUCache<string, Entry>;
  readonly #inflight = new Map<string, Promise<CompiledPolicy | Verdict>>();
  #executor: SqlExecutor | undefined;
  readonly #now: () => number;
  readonly #refused: Verdict;
  readonly #breaker: CircuitBreaker;
  /**
   * As many lookups at once as the pool has connections; the rest wait here, bounded, and outside the breaker: a
   * flood of new identities is overload of a working database, and counted as failures it would open the breaker
   * for every client (with `on_error: next`, skipping this table's deny rows for everyone).
   */
  readonly #lookups: ConcurrencyPool;
  #saturationLoggedAt = Number.NEGATIVE_INFINITY;

  constructor(opts: SqlAclSourceOptions) {
    const q = compileQuery(opts.query, opts.dialect);
    if (!q.ok) throw new BulwarkError('BULWARK_ERR_CONFIG_INVALID', `authz source ${opts.id}: ${q.message}`);
    this.id = opts.id;
    this.#opts = opts;
    this.#query = q;
    this.#cache = new LRUCache<string, Entry>({ max: Math.max(1, opts.cacheMaxEntries) });
    this.#executor = opts.executor;
    this.#now = opts.now ?? Date.now;
    this.#breaker = new CircuitBreaker(opts.id, {
      failureThreshold: opts.breaker?.failureThreshold ?? DEFAULT_VERIFICATION.breakerFailureThreshold,
      resetTimeoutMs: opts.breaker?.resetMs ?? DEFAULT_VERIFICATION.breakerResetMs,
      now: this.#now,
      onStateChange: (state) => {
        if (state !== 'half-open') this.#availabilityChanged(state);
      },
    });
    this.#lookups = new ConcurrencyPool(
      `authz source ${opts.id}`,
      opts.connection?.poolSize ?? 4,
      opts.maxQueuedLookups ?? 1000,
    );
    this.#refused = Object.freeze({
      kind: 'deny',
      allowed: false,
      rule: Object.freeze({ source: opts.id, name: 'identity-not-representable' }),
      reason: `denied by ${opts.id}: the table cannot hold this client's identity`,
    });
  }

  async start(): Promise<void> {
    if (this.#executor) return;
    const c = this.#opts.connection;
    if (!c) throw new BulwarkError('BULWARK_ERR_CONFIG_INVALID', `authz source ${this.id}: no connection configured`);
    this.#executor =
      this.#opts.dialect === 'postgres'
        ? await postgresExecutor(c, this.#opts.queryTimeoutMs, this.#opts.logger)
        : await mysqlExecutor(c, this.#opts.queryTimeoutMs);
  }

  async stop(): Promise<void> {
    const e = this.#executor;
    this.#executor = undefined;
    this.#cache.clear();
    if (e && e !== this.#opts.executor) await e.close();
  }

  /** False while the breaker fails lookups fast after consecutive failures (`authz.source_unavailable`). */
  get available(): boolean {
    return this.#breaker.state === 'closed';
  }

  /** Drops cached rows, e.g. after an administrator changed the table. */
  clear(): void {
    this.#cache.clear();
  }

  authorize(req: AccessRequest): AuthzOutcome | Promise<AuthzOutcome> {
    const id = req.identity;
    const key = `${id.username ?? '\u0000'}\u0001${id.clientId}\u0001${req.peerAddress}`;
    const entry = this.#cache.get(key);
    if (entry && this.#now() - entry.at < this.#opts.cacheTtlMs) return answer(entry.policy, req);
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#fetch(key, req).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending.then((policy) => answer(policy, req));
  }

  async #fetch(key: string, req: AccessRequest): Promise<CompiledPolicy | Verdict> {
    const executor = this.#executor;
    if (!executor) throw new Error(`authz source ${this.id} is not started`);
    const values = this.#query.params.map((p) =>
      p === 'username' ? (req.identity.username ?? null) : p === 'clientid' ? req.identity.clientId : req.peerAddress,
    );
    // A refusal of the client's own values is an answer from a working database: a value, so that it never counts
    // towards the breaker (no client can make the source fail fast for everyone by choosing its client id).
    type Answer = { rows: Awaited<ReturnType<SqlExecutor['query']>> } | { refused: unknown };
    const ask = (): Promise<Answer> => {
      // Stopped while this lookup waited for a connection: the pool it would use is closed, which says nothing
      // about the database, so it must not reach the breaker (an outage recorded at every shutdown under load).
      if (this.#executor !== executor) return Promise.reject(new Error(`authz source ${this.id} is stopped`));
      return this.#breaker.run(async (): Promise<Answer> => {
        try {
          return { rows: await executor.query(this.#query.text, values) };
        } catch (error) {
          if (isClientInputError(error)) return { refused: error };
          throw error;
        }
      });
    };
    let result: Answer;
    let asked = false;
    try {
      // The wait for a connection is bounded by the lookup's own deadline: past it the answer is not wanted.
      result = await this.#lookups.run((): Promise<Answer> => {
        asked = true;
        return ask();
      }, AbortSignal.timeout(this.#opts.queryTimeoutMs));
    } catch (error) {
      if (error instanceof PoolSaturatedError) this.#saturated();
      // A deadline reached while still waiting for a connection is the same overload as a full queue; as a plain
      // timeout the chain would log it once per request, the flood the queue's bound is there to prevent.
      else if (!asked) {
        this.#saturated();
        throw new PoolSaturatedError(`authz source ${this.id}`);
      }
      throw error;
    }
    let policy: CompiledPolicy | Verdict;
    if ('rows' in result) {
      policy = new CompiledPolicy(rowsToRules(result.rows, this.id), { sourceId: this.id, superusers: false });
    } else {
      // The database's message can quote the offending bytes: log the code only. The denial itself is audited.
      this.#opts.logger?.debug(
        { event: 'authz.sql_input_refused', source: this.id, code: errorCode(result.refused) },
        'the ACL table cannot hold this client identity: denied',
      );
      policy = this.#refused;
    }
    this.#cache.set(key, { at: this.#now(), policy });
    return policy;
  }

  /** Refused for want of a connection: said at most every 10 s, since a flood would say it per request. */
  #saturated(): void {
    const now = this.#now();
    if (now - this.#saturationLoggedAt < 10_000) return;
    this.#saturationLoggedAt = now;
    this.#opts.logger?.warn(
      { event: 'authz.source_saturated', source: this.id, queued: this.#lookups.queued },
      'authorization source saturated: lookups beyond its connections and queue are refused (on_error applies)',
    );
  }

  #availabilityChanged(state: 'open' | 'closed'): void {
    const { logger, onAvailabilityChange } = this.#opts;
    if (state === 'open')
      logger?.warn(
        { event: 'authz.source_unavailable', source: this.id, retry_in_ms: this.#breaker.options.resetTimeoutMs },
        'authorization source unavailable: its lookups fail at once (on_error applies) until a probe succeeds',
      );
    else logger?.info({ event: 'authz.source_recovered', source: this.id }, 'authorization source answers again');
    onAvailabilityChange?.(sourceAvailabilityEvent(this.id, state));
  }
}

/** The audit record of a SQL policy source's breaker opening (`authz.source_unavailable`) or closing again. */
export function sourceAvailabilityEvent(source: string, state: 'open' | 'closed'): AuditEvent {
  return {
    event: {
      action: state === 'open' ? 'authz.source_unavailable' : 'authz.source_recovered',
      outcome: state === 'open' ? 'failure' : 'success',
      reason:
        state === 'open'
          ? 'circuit breaker opened after consecutive failed lookups; on_error applies until a probe succeeds'
          : 'the database answered again',
    },
    actor: 'broker',
    authz: { source },
  };
}

function errorCode(error: unknown): string | undefined {
  const { code, sqlState } = error as { code?: unknown; sqlState?: unknown };
  if (typeof sqlState === 'string') return typeof code === 'string' ? `${code} (${sqlState})` : sqlState;
  return typeof code === 'string' ? code : undefined;
}

function tlsOptions(
  c: SqlConnectionOptions,
): { ca?: string; servername?: string; rejectUnauthorized: boolean } | undefined {
  if (!c.tls) return undefined;
  return { ca: c.tls.ca, servername: c.tls.servername, rejectUnauthorized: c.tls.rejectUnauthorized ?? true };
}

async function postgresExecutor(c: SqlConnectionOptions, timeoutMs: number, logger?: Logger): Promise<SqlExecutor> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({
    host: c.host,
    port: c.port,
    user: c.user,
    password: c.password?.revealString(),
    database: c.database,
    max: c.poolSize ?? 4,
    ssl: tlsOptions(c),
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    statement_timeout: timeoutMs,
  });
  // An idle client's error must not crash the broker; the next query reconnects.
  pool.on('error', (e) => logger?.warn({ event: 'authz.sql_pool_error', error: e.message }, 'postgres pool error'));
  return {
    async query(text, values) {
      const client = await pool.connect();
      let result: { rows: unknown[] };
      try {
        result = await client.query({ text, values: [...values] });
      } catch (error) {
        // `pool.query` discards the connection on any error. A value the database could not take leaves it healthy:
        // discarding it would make every such client (new client ids are free) cost the server a new backend.
        client.release(isClientInputError(error) ? undefined : (error as Error));
        throw error;
      }
      client.release();
      return result.rows as Array<Record<string, unknown>>;
    },
    close: () => pool.end(),
  };
}

async function mysqlExecutor(c: SqlConnectionOptions, timeoutMs: number): Promise<SqlExecutor> {
  const mysql = await import('mysql2/promise');
  const pool = mysql.createPool({
    host: c.host,
    port: c.port,
    user: c.user,
    password: c.password?.revealString(),
    database: c.database,
    connectionLimit: c.poolSize ?? 4,
    connectTimeout: timeoutMs,
    ssl: tlsOptions(c),
  });
  return {
    async query(text, values) {
      const [rows] = await pool.execute({ sql: text, timeout: timeoutMs }, [...values]);
      if (!Array.isArray(rows)) return [];
      return rows as Array<Record<string, unknown>>;
    },
    close: () => pool.end(),
  };
}
