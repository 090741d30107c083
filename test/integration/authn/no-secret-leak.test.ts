import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { inspect } from 'node:util';
import { SignJWT } from 'jose';
import { afterAll, describe, expect, inject, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import { createBuiltinRegistry } from '../../../authn/builtin.js';
import { createVerificationServices } from '../../../authn/config.js';
import { verificationConfigSchema } from '../../../authn/registry.js';
import { Secret } from '../../../authn/secret.js';
import { hashPassword } from '../../../authn/verify/password-hash.js';
import { createLogger } from '../../../src/log.js';
import type { SqlServiceInfo } from '../../helpers/services/types.js';
import { attempt } from '../../unit/authn/fakes.js';
import { createMysqlTable, createPgTable, seedUsers, tableName } from './sql-fixtures.js';

/**
 * Runs every authenticator of this folder through accept, refuse and failure paths and gathers everything
 * they produce that could reach an operator: chain results and step details, audit events, thrown errors,
 * structured log lines (the broker logs attempts and results through pino), console output. None of it
 * may contain a test password, token, HMAC secret or database password.
 */
const SECRETS = {
  filePassword: 'leak-file-pass-7Qz',
  wrongPassword: 'leak-wrong-pass-9Xy',
  hmacSecret: 'leak-hmac-secret-leak-hmac-secret-42',
  sqlPassword: 'sql-argon-pw',
  sqlWrong: 'leak-sql-wrong-3Kp',
};
const tokens: string[] = [];
const collected: string[] = [];
const logLines: string[] = [];
const events: AuditEvent[] = [];
const dir = mkdtempSync(join(tmpdir(), 'leak-'));
const logger = createLogger(
  'debug',
  new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString());
      cb();
    },
  }),
);
const consoleSeen: string[] = [];
const originals = { log: console.log, warn: console.warn, error: console.error };
for (const k of ['log', 'warn', 'error'] as const) {
  console[k] = (...args: unknown[]) => {
    consoleSeen.push(args.map((a) => (typeof a === 'string' ? a : inspect(a))).join(' '));
  };
}

afterAll(() => {
  Object.assign(console, originals);
  rmSync(dir, { recursive: true, force: true });
});

describe('no secret reaches any output', () => {
  it('exercises every authenticator and finds no password, token or key in results, events, errors, logs or console', async () => {
    const hmac = new TextEncoder().encode(SECRETS.hmacSecret);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const good = await new SignJWT({ sub: 'leak-dev' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('5m')
      .sign(hmac);
    const expired = await new SignJWT({ sub: 'leak-dev' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime(1)
      .sign(hmac);
    const forged = await new SignJWT({ sub: 'leak-dev' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode('x'.repeat(40)));
    const rsaToken = await new SignJWT({ sub: 'r' })
      .setProtectedHeader({ alg: 'RS256', kid: 'k' })
      .setExpirationTime('5m')
      .sign(rsa.privateKey);
    tokens.push(good, expired, forged, rsaToken);

    writeFileSync(
      join(dir, 'users.yaml'),
      `users:\n  alice:\n    hash: ${await hashPassword(new Secret(SECRETS.filePassword))}\n`,
    );
    const down = createServer((_q, r) => {
      r.statusCode = 500;
      r.end();
    });
    await new Promise<void>((r) => down.listen(0, '127.0.0.1', r));
    const jwksUrl = `http://127.0.0.1:${(down.address() as AddressInfo).port}/jwks`;

    const steps: Record<string, unknown>[] = [
      { type: 'password-file', id: 'file', file: 'users.yaml', watch: false },
      { type: 'jwt', id: 'hmac', algorithms: ['HS256'], secret: SECRETS.hmacSecret, claims: { username: null } },
      { type: 'jwt', id: 'remote', algorithms: ['RS256'], jwks_url: jwksUrl, when: { listeners: ['remote'] } },
    ];
    const sqlServices = [
      ['postgres', inject('postgres'), createPgTable, 'groups'],
      ['mysql', inject('mariadb'), createMysqlTable, '`groups`'],
    ] as const;
    for (const [type, info, create, groupsCol] of sqlServices) {
      if ('missing' in info) continue;
      const table = tableName();
      await create(info as SqlServiceInfo, table, await seedUsers());
      steps.push({
        type,
        id: type,
        host: info.host,
        port: info.port,
        database: info.database,
        user: info.user,
        password: info.password,
        query: `SELECT password_hash, algorithm, salt, is_superuser, ${groupsCol} FROM ${table} WHERE username = \${username}`,
        when: { listeners: [type] },
      });
      steps.push({
        type,
        id: `${type}-unreachable`,
        host: '127.0.0.1',
        port: 1,
        database: 'x',
        user: 'x',
        password: SECRETS.sqlWrong,
        connect_timeout_ms: 200,
        query: 'SELECT password_hash FROM t WHERE u = ${username}',
        when: { listeners: [`${type}-down`] },
      });
    }
    const verification = createVerificationServices(verificationConfigSchema.parse({}), (e) => events.push(e));
    const chain = createBuiltinRegistry().parseAndBuild(
      { steps },
      { verification, onEvent: (e) => events.push(e), logger, baseDir: dir },
    );
    await chain.start();

    const tries = [
      attempt({ username: 'alice', password: new Secret(SECRETS.filePassword) }),
      attempt({ username: 'alice', password: new Secret(SECRETS.wrongPassword) }),
      attempt({ username: 'alice', password: new Secret('') }),
      attempt({ username: 'jwt-user', password: new Secret(good) }),
      attempt({ username: 'jwt-user', password: new Secret(expired) }),
      attempt({ username: 'jwt-user', password: new Secret(forged) }),
      attempt({ listener: 'remote', username: 'x', password: new Secret(rsaToken) }),
      ...['postgres', 'mysql'].flatMap((l) => [
        attempt({ listener: l, username: 'argon-user', password: new Secret(SECRETS.sqlPassword) }),
        attempt({ listener: l, username: 'argon-user', password: new Secret(SECRETS.sqlWrong) }),
        attempt({ listener: `${l}-down`, username: 'argon-user', password: new Secret(SECRETS.wrongPassword) }),
      ]),
    ];
    const kinds: string[] = [];
    for (const a of tries) {
      const result = await chain.authenticate(a);
      kinds.push(result.kind);
      // What the broker will do: log the attempt and the result as structured fields.
      logger.info({ attempt: a, result }, 'authn decision');
      collected.push(JSON.stringify(result), inspect(result, { depth: 10 }), inspect(a, { depth: 10 }));
    }
    // The scenario really covered accepts and refusals.
    expect(kinds).toContain('allow');
    expect(kinds).toContain('deny');

    writeFileSync(join(dir, 'users.yaml'), `users:\n  alice:\n    hash: ${SECRETS.filePassword}\n`);
    const file = chain.steps[0]?.authenticator as { store?: { reload(): Promise<unknown> } };
    collected.push(JSON.stringify(await file.store?.reload()));
    try {
      createBuiltinRegistry().parseAndBuild(
        { steps: [{ type: 'jwt', algorithms: ['HS256'], secret: 'short-leak-secret' }] },
        { verification, onEvent: () => undefined, logger, baseDir: dir },
      );
    } catch (e) {
      collected.push(String(e), inspect(e));
    }
    await chain.stop();
    down.close();

    const haystack = [
      ...collected,
      ...logLines,
      ...consoleSeen,
      JSON.stringify(events),
      inspect(events, { depth: 10 }),
    ].join('\n');
    expect(logLines.length).toBeGreaterThan(0);
    expect(events.some((e) => e.event.action === 'credentials.reload_failed')).toBe(true);
    const needles = [
      ...Object.values(SECRETS),
      'short-leak-secret',
      ...tokens,
      ...tokens.map((t) => t.split('.')[2] ?? ''),
    ].filter((n) => n.length >= 8);
    for (const needle of needles) expect(haystack.includes(needle), `leaked ${needle.slice(0, 4)}…`).toBe(false);
  }, 60_000);
});
