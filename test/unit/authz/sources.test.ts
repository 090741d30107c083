import { describe, expect, it } from 'vitest';
import { Secret } from '../../../authn/secret.js';
import { ChainAuthorizer } from '../../../authz/authorizer.js';
import { authorizationConfigSchema } from '../../../authz/config.js';
import { createAuthorization, shippedPolicyPath } from '../../../authz/create.js';
import { JwtClaimSource } from '../../../authz/sources/jwt.js';
import { compileQuery, rowsToRules, SqlAclSource, type SqlExecutor } from '../../../authz/sources/sql.js';
import type { AuthzDecision } from '../../../authz/types.js';
import { identity, request } from './helpers.js';

function sync(d: AuthzDecision | Promise<AuthzDecision>): AuthzDecision {
  if (d instanceof Promise) throw new Error('expected a synchronous decision');
  return d;
}

describe('JWT claim source', () => {
  const chain = (onError: 'deny' | 'next' = 'deny') =>
    new ChainAuthorizer([{ source: new JwtClaimSource(), onError, timeoutMs: 100, cacheable: true }]);

  it('applies the rules carried in the identity, in the policy grammar', () => {
    const id = identity({
      username: 'alice',
      aclRules: [
        { name: 'own', allow: ['publish', 'subscribe'], topics: ['u/${username}/#'] },
        { name: 'no-admin', deny: 'publish', topics: ['u/+/admin'] },
      ],
    });
    const c = chain();
    expect(sync(c.check(request('publish', 'u/alice/x', { identity: id })))).toMatchObject({
      allowed: true,
      rule: { source: 'jwt', name: 'own', location: 'jwt:aclRules:1' },
    });
    expect(sync(c.check(request('publish', 'u/alice/admin', { identity: id }))).rule?.name).toBe('no-admin');
    expect(sync(c.check(request('publish', 'u/bob/x', { identity: id }))).allowed).toBe(false);
  });

  it('accepts the rules as a YAML or JSON string and as { rules: [...] }', () => {
    const fromString = identity({ aclRules: JSON.stringify([{ name: 'a', allow: 'publish', topics: ['x'] }]) });
    const fromObject = identity({ aclRules: { rules: [{ name: 'a', allow: 'publish', topics: ['x'] }] } });
    expect(sync(chain().check(request('publish', 'x', { identity: fromString }))).allowed).toBe(true);
    expect(sync(chain().check(request('publish', 'x', { identity: fromObject }))).allowed).toBe(true);
  });

  it('says nothing for identities without a claim', () => {
    expect(new JwtClaimSource().authorize(request('publish', 'x'))).toEqual({ kind: 'nomatch' });
  });

  it('a claim that does not parse denies (fail closed), or passes on with on_error: next', () => {
    const id = identity({ aclRules: [{ name: 'bad', allow: 'fly', topics: ['x'] }] });
    expect(sync(chain().check(request('publish', 'x', { identity: id })))).toMatchObject({
      allowed: false,
      rule: { name: 'source-error' },
    });
    expect(sync(chain('next').check(request('publish', 'x', { identity: id })))).toMatchObject({
      allowed: false,
      reason: 'no rule matched (default deny)',
    });
  });
});

describe('SQL query compilation', () => {
  it('turns placeholders into positional parameters for PostgreSQL and MySQL', () => {
    const q =
      'SELECT permission, action, topic FROM acl WHERE username = ${username} OR clientid = ${clientid} OR host = ${peerhost}';
    expect(compileQuery(q, 'postgres')).toEqual({
      ok: true,
      text: 'SELECT permission, action, topic FROM acl WHERE username = $1 OR clientid = $2 OR host = $3',
      params: ['username', 'clientid', 'peerhost'],
    });
    expect(compileQuery(q, 'mysql')).toMatchObject({
      ok: true,
      text: expect.stringContaining('username = ? OR clientid = ?'),
    });
  });

  it('refuses quoted placeholders, unknown placeholders and queries without any', () => {
    expect(compileQuery("SELECT * FROM acl WHERE u = '${username}'", 'postgres')).toMatchObject({
      ok: false,
      message: /do not quote/,
    });
    expect(compileQuery('SELECT * FROM acl WHERE u = ${user}', 'postgres')).toMatchObject({
      ok: false,
      message: /unknown placeholder/,
    });
    expect(compileQuery('SELECT * FROM acl', 'mysql')).toMatchObject({ ok: false, message: /no placeholder/ });
  });

  it('reads rows with permission, action, topic, qos and retain', () => {
    const rules = rowsToRules(
      [
        { permission: 'allow', action: 'all', topic: 'a/#', qos: null, retain: null },
        { PERMISSION: 'deny', ACTION: 'publish,subscribe', TOPIC: 'a/${username}', qos: '1,2', retain: 1 },
      ],
      'pg',
    );
    expect(rules[0]).toMatchObject({ effect: 'allow', actions: ['publish', 'subscribe', 'receive'], conditions: {} });
    expect(rules[1]).toMatchObject({
      effect: 'deny',
      actions: ['publish', 'subscribe'],
      conditions: { qos: [1, 2], retain: true },
    });
  });

  it.each([
    [{ permission: 'maybe', action: 'publish', topic: 'a' }, /permission/],
    [{ permission: 'allow', action: 'write', topic: 'a' }, /action/],
    [{ permission: 'allow', action: 'publish', topic: 'a/#/b' }, /topic/],
    [{ permission: 'allow', action: 'publish', topic: 'a', qos: 3 }, /qos/],
    [{ permission: 'allow', action: 'publish', topic: 'a', retain: 'perhaps' }, /retain/],
  ])('a damaged row makes the lookup fail rather than be skipped: %j', (row, message) => {
    expect(() => rowsToRules([row], 'pg')).toThrow(message);
  });
});

describe('SQL source cache', () => {
  /** A tiny in-process executor implementing the real interface; the real databases are in test/integration. */
  function executor(rows: Array<Record<string, unknown>>) {
    const calls: Array<ReadonlyArray<string | null>> = [];
    const e: SqlExecutor = {
      async query(_text, values) {
        calls.push(values);
        return rows;
      },
      async close() {},
    };
    return { e, calls };
  }

  it('answers from the cache synchronously until the TTL passes, then asks again', async () => {
    let now = 1_000;
    const { e, calls } = executor([{ permission: 'allow', action: 'publish', topic: 'a/${username}' }]);
    const source = new SqlAclSource({
      id: 'pg',
      dialect: 'postgres',
      query: 'SELECT * FROM acl WHERE username = ${username}',
      executor: e,
      cacheTtlMs: 100,
      cacheMaxEntries: 10,
      queryTimeoutMs: 100,
      now: () => now,
    });
    const req = request('publish', 'a/alice');
    const first = source.authorize(req);
    expect(first).toBeInstanceOf(Promise);
    expect(await first).toMatchObject({ kind: 'allow', rule: { source: 'pg', name: 'row-1' } });
    expect(source.authorize(req)).toMatchObject({ kind: 'allow' });
    now += 100;
    expect(source.authorize(req)).toBeInstanceOf(Promise);
    expect(calls).toEqual([['alice'], ['alice']]);
  });

  it('shares one query among concurrent misses for the same client', async () => {
    const { e, calls } = executor([]);
    const source = new SqlAclSource({
      id: 'pg',
      dialect: 'postgres',
      query: 'SELECT * FROM acl WHERE clientid = ${clientid}',
      executor: e,
      cacheTtlMs: 1_000,
      cacheMaxEntries: 10,
      queryTimeoutMs: 100,
    });
    const results = await Promise.all([
      source.authorize(request('publish', 'a')),
      source.authorize(request('publish', 'b')),
    ]);
    expect(results).toEqual([{ kind: 'nomatch' }, { kind: 'nomatch' }]);
    expect(calls).toHaveLength(1);
  });

  it('a value the database refuses (SQLSTATE class 22) is a deny kept for the TTL; other errors stay failures', async () => {
    let now = 0;
    const errors: Array<Error & { code?: string; sqlState?: string }> = [];
    let calls = 0;
    const e: SqlExecutor = {
      async query() {
        calls++;
        const next = errors.shift();
        if (next) throw next;
        return [];
      },
      async close() {},
    };
    const source = new SqlAclSource({
      id: 'acl',
      dialect: 'postgres',
      query: 'SELECT * FROM acl WHERE clientid = ${clientid}',
      executor: e,
      cacheTtlMs: 100,
      cacheMaxEntries: 10,
      queryTimeoutMs: 100,
      now: () => now,
    });
    const refusal = {
      kind: 'deny',
      allowed: false,
      rule: { source: 'acl', name: 'identity-not-representable' },
      reason: "denied by acl: the table cannot hold this client's identity",
    };
    errors.push(Object.assign(new Error('untranslatable character'), { code: '22P05' }));
    expect(await source.authorize(request('publish', 'a'))).toEqual(refusal);
    // Same identity, another topic or action: answered from the cache, synchronously, without a query.
    expect(source.authorize(request('connect', ''))).toEqual(refusal);
    expect(calls).toBe(1);
    now += 100;
    errors.push(Object.assign(new Error('Illegal mix of collations'), { code: 'ER_CANT_AGGREGATE_2COLLATIONS' }));
    expect(await source.authorize(request('subscribe', 'a'))).toEqual(refusal);
    now += 100;
    // Not the client's doing: thrown to the chain (which applies on_error), and not cached.
    errors.push(Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' }));
    await expect(source.authorize(request('publish', 'a'))).rejects.toThrow('connection refused');
    errors.push(Object.assign(new Error('syntax error'), { code: '42601' }));
    await expect(source.authorize(request('publish', 'a'))).rejects.toThrow('syntax error');
    expect(await source.authorize(request('publish', 'a'))).toEqual({ kind: 'nomatch' });
    expect(calls).toBe(5);
  });

  it('refuses a configuration whose query concatenates values', () => {
    expect(
      () =>
        new SqlAclSource({
          id: 'pg',
          dialect: 'postgres',
          query: "SELECT * FROM acl WHERE username = '${username}'",
          connection: { host: '127.0.0.1', port: 5432, user: 'u', database: 'd', password: new Secret('pw') },
          cacheTtlMs: 1,
          cacheMaxEntries: 1,
          queryTimeoutMs: 1,
        }),
    ).toThrow(/do not quote/);
  });
});

describe('configuration', () => {
  it('defaults to the policy files as the only source, with caching and watching on', () => {
    const c = authorizationConfigSchema.parse({});
    expect(c).toMatchObject({
      policy_files: [],
      sources: [{ type: 'file', id: 'file', on_error: 'deny' }],
      watch: true,
      run_cases_on_reload: true,
      cache_max_entries: 100_000,
    });
  });

  it('fills SQL defaults and rejects unknown keys', () => {
    const c = authorizationConfigSchema.parse({
      sources: [{ type: 'mysql', database: 'd', user: 'u', query: 'SELECT 1 WHERE u = ${username}' }],
    });
    expect(c.sources[0]).toMatchObject({
      type: 'mysql',
      port: 3306,
      on_error: 'deny',
      cache_ttl_ms: 30_000,
      timeout_ms: 2_000,
    });
    expect(authorizationConfigSchema.safeParse({ policy_file: 'x' }).success).toBe(false);
  });

  it('with no policy files, runs the shipped default policy (local mode)', async () => {
    const sub = createAuthorization(authorizationConfigSchema.parse({ watch: false }), { baseDir: process.cwd() });
    await sub.start();
    try {
      expect(sub.manager.files).toEqual([shippedPolicyPath()]);
      const local = request('publish', 'x', { identity: identity({ anonymous: true, username: undefined }) });
      expect(sync(sub.authorizer.check(local)).allowed).toBe(true);
      expect(sync(sub.authorizer.check({ ...local, topic: '$SYS/x' })).rule?.name).toBe('no-client-writes-to-sys');
    } finally {
      await sub.stop();
    }
  });

  it('refuses to start on a policy that does not load', async () => {
    const sub = createAuthorization(authorizationConfigSchema.parse({ policy_files: ['does-not-exist.policy.yaml'] }), {
      baseDir: process.cwd(),
    });
    await expect(sub.start()).rejects.toThrow(/does-not-exist\.policy\.yaml:1:1: error: cannot read the file/);
  });
});
