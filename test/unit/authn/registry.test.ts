import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { createBuiltinRegistry } from '../../../authn/builtin.js';
import { authenticationConfigSchema } from '../../../authn/config.js';
import { AuthenticatorRegistry, defineAuthenticatorType, type AuthenticatorContext } from '../../../authn/registry.js';
import { Secret } from '../../../authn/secret.js';
import { compileQuery, bindValues } from '../../../authn/sql/query-template.js';
import { VerificationServices } from '../../../authn/verify/services.js';
import { BulwarkError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { attempt, FakeAuthenticator } from './fakes.js';

const ctx = (baseDir = '.'): AuthenticatorContext => ({
  verification: new VerificationServices(),
  onEvent: () => undefined,
  logger: silentLogger,
  baseDir,
});

describe('authenticator registry and chain configuration', () => {
  it('a type registered from another folder becomes a member of the steps union with the common keys', async () => {
    const registry = createBuiltinRegistry([
      defineAuthenticatorType({
        type: 'fake-ext',
        settings: z.object({ script: z.enum(['allow', 'deny', 'ignore']) }).strict(),
        create: (s, id) => new FakeAuthenticator(id, s.script),
      }),
    ]);
    const chain = registry.parseAndBuild(
      {
        steps: [
          { type: 'fake-ext', id: 'first', script: 'ignore', on_error: 'next' },
          { type: 'fake-ext', id: 'second', script: 'allow', timeout_ms: 100 },
        ],
      },
      ctx(),
    );
    expect(chain.steps.map((s) => [s.authenticator.id, s.onError, s.timeoutMs])).toEqual([
      ['first', 'next', 5_000],
      ['second', 'deny', 100],
    ]);
    const r = await chain.authenticate(attempt());
    expect(r.kind === 'allow' && r.identity.authenticator).toBe('second');
  });

  it('registerAuthenticatorType is the same mechanism in one call', () => {
    const registry = new AuthenticatorRegistry().registerAuthenticatorType(
      'fake-x',
      z.object({}).strict(),
      (_s, id) => new FakeAuthenticator(id, 'allow'),
    );
    expect(registry.types).toEqual(['fake-x']);
  });

  it('a type registered twice is refused', () => {
    expect(() =>
      createBuiltinRegistry().registerAuthenticatorType(
        'jwt',
        z.object({}),
        (_s, id) => new FakeAuthenticator(id, 'allow'),
      ),
    ).toThrow(/twice/);
  });

  it('an unknown step type is a configuration error naming the path', () => {
    expect(() => createBuiltinRegistry().parseAndBuild({ steps: [{ type: 'kerberos' }] }, ctx())).toThrow(BulwarkError);
  });

  it('two steps of the same type need distinct ids', () => {
    const dir = mkdtempSync(join(tmpdir(), 'reg-'));
    try {
      writeFileSync(join(dir, 'a.yaml'), 'users: {}\n');
      expect(() =>
        createBuiltinRegistry().parseAndBuild(
          {
            steps: [
              { type: 'password-file', file: 'a.yaml' },
              { type: 'password-file', file: 'a.yaml' },
            ],
          },
          ctx(dir),
        ),
      ).toThrow(/duplicate id "password-file"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('anonymous is off unless configured, and an invalid username_pattern is refused', () => {
    const schema = createBuiltinRegistry().chainSchema();
    expect(schema.parse({}).anonymous).toBe(false);
    expect(
      schema.safeParse({ steps: [{ type: 'password-file', file: 'x', when: { username_pattern: '([' } }] }).success,
    ).toBe(false);
  });

  it('preconditions from configuration are compiled and applied', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reg-'));
    try {
      writeFileSync(join(dir, 'u.yaml'), `users:\n  dev-1:\n    hash: '${await bcrypt.hash('reg-pw', 4)}'\n`);
      const chain = createBuiltinRegistry().parseAndBuild(
        {
          steps: [
            {
              type: 'password-file',
              file: 'u.yaml',
              watch: false,
              when: { listeners: ['tls'], username_pattern: '^dev-' },
            },
          ],
        },
        ctx(dir),
      );
      await chain.start();
      const onTls = await chain.authenticate(
        attempt({ listener: 'tls', username: 'dev-1', password: new Secret('reg-pw') }),
      );
      const onTcp = await chain.authenticate(
        attempt({ listener: 'tcp', username: 'dev-1', password: new Secret('reg-pw') }),
      );
      expect(onTls.kind).toBe('allow');
      expect(onTcp.steps[0]?.answer).toBe('skipped');
      await chain.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the authentication section schema carries verification defaults', () => {
    const parsed = authenticationConfigSchema().parse({}) as { verification: Record<string, number> };
    expect(parsed.verification).toMatchObject({
      hash_concurrency: 2,
      cache_max_entries: 10_000,
      breaker_failure_threshold: 5,
    });
  });
});

describe('SQL query templates', () => {
  it('turns placeholders into positional bind parameters for postgres and mysql', () => {
    const sql =
      'SELECT password_hash FROM u WHERE username = ${username} AND (client = ${clientid} OR host = ${ peerhost })';
    expect(compileQuery(sql, 'postgres')).toEqual({
      text: 'SELECT password_hash FROM u WHERE username = $1 AND (client = $2 OR host = $3)',
      params: ['username', 'clientid', 'peerhost'],
    });
    expect(compileQuery(sql, 'mysql').text).toBe(
      'SELECT password_hash FROM u WHERE username = ? AND (client = ? OR host = ?)',
    );
  });

  it('binds values without touching the SQL text, and binds NULL for an absent certificate', () => {
    const q = compileQuery('SELECT 1 FROM u WHERE username = ${username} AND cn = ${cert_cn}', 'postgres');
    expect(bindValues(q, attempt({ username: "'; DROP TABLE u; --" }))).toEqual(["'; DROP TABLE u; --", null]);
    expect(q.text).not.toContain('DROP');
  });

  it('refuses an unknown placeholder and a query without an identity placeholder', () => {
    expect(() => compileQuery('SELECT 1 WHERE u = ${user}', 'postgres')).toThrow(/unknown placeholder/);
    expect(() => compileQuery('SELECT password_hash FROM u WHERE host = ${peerhost}', 'mysql')).toThrow(
      /query must select by/,
    );
  });
});
