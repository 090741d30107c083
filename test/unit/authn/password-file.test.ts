import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import { PasswordFileAuthenticator } from '../../../authn/password-file/authenticator.js';
import { parsePasswordFile } from '../../../authn/password-file/format.js';
import { Secret } from '../../../authn/secret.js';
import { hashPassword, OWASP_ARGON2ID } from '../../../authn/verify/password-hash.js';
import { DEFAULT_VERIFICATION, VerificationServices } from '../../../authn/verify/services.js';
import { BulwarkError } from '../../../src/errors.js';
import { attempt } from './fakes.js';

let dir: string;
let file: string;
let events: AuditEvent[];
const signal = () => new AbortController().signal;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pwfile-'));
  file = join(dir, 'passwd.yaml');
  events = [];
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function make(text: string, opts: { unknownUser?: 'ignore' | 'deny'; rehash?: boolean } = {}) {
  writeFileSync(file, text);
  const a = new PasswordFileAuthenticator({
    id: 'users',
    file,
    unknownUser: opts.unknownUser ?? 'ignore',
    rehash: opts.rehash ?? false,
    argon2: OWASP_ARGON2ID,
    watch: false,
    reloadDebounceMs: 0,
    verification: new VerificationServices({ ...DEFAULT_VERIFICATION }),
    onEvent: (e) => events.push(e),
  });
  await a.start();
  return a;
}

const login = (a: PasswordFileAuthenticator, username: string | undefined, password: string | undefined) =>
  a.authenticate(attempt({ username, password: password === undefined ? undefined : new Secret(password) }), signal());

describe('password file authenticator', () => {
  it('allows the right password with the groups and superuser flag from the file', async () => {
    const hash = await hashPassword(new Secret('pf-right-1'));
    const a = await make(`users:\n  alice:\n    hash: ${hash}\n    groups: [sensors, lab]\n    superuser: true\n`);
    const r = await login(a, 'alice', 'pf-right-1');
    expect(r.kind === 'allow' && r.identity).toMatchObject({
      username: 'alice',
      groups: ['sensors', 'lab'],
      superuser: true,
      anonymous: false,
    });
  });

  it('denies a wrong password with badUserNameOrPassword', async () => {
    const a = await make(`users:\n  alice:\n    hash: ${await hashPassword(new Secret('pf-right-2'))}\n`);
    const r = await login(a, 'alice', 'pf-wrong-2');
    expect(r).toMatchObject({ kind: 'deny', reason: 'badUserNameOrPassword', detail: 'wrong password' });
  });

  it('refuses an empty password even for a user whose hash would match it', async () => {
    const a = await make(`users:\n  blank:\n    hash: ${await bcrypt.hash('', 4)}\n`);
    const r = await login(a, 'blank', '');
    expect(r).toMatchObject({ kind: 'deny', reason: 'badUserNameOrPassword', detail: 'empty password refused' });
  });

  it('ignores clients without username or password', async () => {
    const a = await make('users: {}\n');
    expect((await login(a, undefined, 'x')).kind).toBe('ignore');
    expect((await login(a, 'alice', undefined)).kind).toBe('ignore');
  });

  it('unknown users are ignored by default and denied when the file is authoritative', async () => {
    const text = `users:\n  alice:\n    hash: ${await bcrypt.hash('pf-x', 4)}\n`;
    expect((await login(await make(text), 'mallory', 'pf-x')).kind).toBe('ignore');
    expect(await login(await make(text, { unknownUser: 'deny' }), 'mallory', 'pf-x')).toMatchObject({
      kind: 'deny',
      reason: 'badUserNameOrPassword',
    });
  });

  it('verifies imported bcrypt hashes', async () => {
    const a = await make(`users:\n  bob:\n    hash: '${await bcrypt.hash('pf-bcrypt', 4)}'\n`);
    expect((await login(a, 'bob', 'pf-bcrypt')).kind).toBe('allow');
  });

  it('a broken file on reload keeps the previous users and reports file:line:column', async () => {
    const a = await make(`users:\n  alice:\n    hash: ${await bcrypt.hash('pf-keep', 4)}\n`);
    writeFileSync(file, 'users:\n  alice:\n    hash: $2b$04$abc\n    groups: nope\n');
    const r = await a.store.reload();
    expect(r.kind).toBe('failed');
    expect((await login(a, 'alice', 'pf-keep')).kind).toBe('allow');
    const failed = events.find((e) => e.event.action === 'credentials.reload_failed');
    expect(failed?.policy?.error).toMatch(
      new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4:13: users\\.alice\\.groups`),
    );
  });

  it('a valid reload swaps the users and reports credentials.reloaded with old and new digests', async () => {
    const a = await make(`users:\n  alice:\n    hash: ${await bcrypt.hash('pf-a', 4)}\n`);
    writeFileSync(file, `users:\n  carol:\n    hash: ${await bcrypt.hash('pf-c', 4)}\n`);
    expect(await a.store.reload()).toEqual({ kind: 'reloaded', users: 1 });
    expect((await login(a, 'alice', 'pf-a')).kind).toBe('ignore');
    expect((await login(a, 'carol', 'pf-c')).kind).toBe('allow');
    const ev = events.find((e) => e.event.action === 'credentials.reloaded');
    expect(ev?.policy?.old_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(ev?.policy?.new_hash).not.toBe(ev?.policy?.old_hash);
  });

  it('a changed password in the file is refused right away even though the old one was cached', async () => {
    const a = await make(`users:\n  alice:\n    hash: ${await bcrypt.hash('pf-old', 4)}\n`);
    expect((await login(a, 'alice', 'pf-old')).kind).toBe('allow');
    writeFileSync(file, `users:\n  alice:\n    hash: ${await bcrypt.hash('pf-new', 4)}\n`);
    await a.store.reload();
    expect((await login(a, 'alice', 'pf-old')).kind).toBe('deny');
    expect((await login(a, 'alice', 'pf-new')).kind).toBe('allow');
  });

  it('answers quickly only what authenticate has just verified: the same user, password and stored hash', async () => {
    const a = await make(`users:\n  alice:\n    hash: ${await bcrypt.hash('pf-q', 4)}\n    groups: [lab]\n`);
    const quick = (username: string, password: string) =>
      a.quickAnswer(attempt({ username, password: new Secret(password) }));
    expect(quick('alice', 'pf-q')).toBeUndefined();
    expect((await login(a, 'alice', 'pf-q')).kind).toBe('allow');
    const answer = quick('alice', 'pf-q');
    expect(answer?.kind === 'allow' && answer.identity).toMatchObject({
      username: 'alice',
      groups: ['lab'],
      authenticator: 'users',
      anonymous: false,
    });
    expect(quick('alice', 'pf-wrong')).toBeUndefined();
    expect(quick('bob', 'pf-q')).toBeUndefined();
    expect(a.quickAnswer(attempt({ username: 'alice', password: new Secret('') }))).toBeUndefined();
    writeFileSync(file, `users:\n  alice:\n    hash: ${await bcrypt.hash('pf-q', 4)}\n`);
    await a.store.reload();
    // A new hash of the same password is a new credential: verified again before it is answered quickly.
    expect(quick('alice', 'pf-q')).toBeUndefined();
  });

  it('rehashes an imported bcrypt hash to argon2id after a successful login', async () => {
    const a = await make(
      `# operators' comment\nusers:\n  bob:\n    hash: '${await bcrypt.hash('pf-rehash', 4)}'\n    groups: [ops]\n`,
      { rehash: true },
    );
    expect((await login(a, 'bob', 'pf-rehash')).kind).toBe('allow');
    await vitestWaitFor(() => events.some((e) => e.event.action === 'credentials.rehashed'));
    const text = readFileSync(file, 'utf8');
    expect(text).toContain("# operators' comment");
    expect(parsePasswordFile(text, file).users.get('bob')?.hash.startsWith('$argon2id$')).toBe(true);
    expect((await login(a, 'bob', 'pf-rehash')).kind).toBe('allow');
  });

  it('a missing file at startup is a BulwarkError naming the file', async () => {
    const a = new PasswordFileAuthenticator({
      id: 'users',
      file: join(dir, 'absent.yaml'),
      unknownUser: 'ignore',
      rehash: false,
      argon2: OWASP_ARGON2ID,
      watch: false,
      reloadDebounceMs: 0,
      verification: new VerificationServices(),
      onEvent: () => undefined,
    });
    await expect(a.start()).rejects.toBeInstanceOf(BulwarkError);
  });

  it('reloads automatically when the watched file is replaced', async () => {
    writeFileSync(file, `users:\n  alice:\n    hash: ${await bcrypt.hash('pf-w1', 4)}\n`);
    const a = new PasswordFileAuthenticator({
      id: 'users',
      file,
      unknownUser: 'ignore',
      rehash: false,
      argon2: OWASP_ARGON2ID,
      watch: true,
      reloadDebounceMs: 10,
      verification: new VerificationServices(),
      onEvent: (e) => events.push(e),
    });
    await a.start();
    try {
      writeFileSync(file, `users:\n  dave:\n    hash: ${await bcrypt.hash('pf-w2', 4)}\n`);
      await vitestWaitFor(() => events.some((e) => e.event.action === 'credentials.reloaded'));
      expect((await login(a, 'dave', 'pf-w2')).kind).toBe('allow');
    } finally {
      await a.stop();
    }
  });
});

describe('reconnect storm', () => {
  it('concurrent identical logins share one hash computation, and the cache serves the next ones', async () => {
    writeFileSync(file, `users:\n  alice:\n    hash: ${await hashPassword(new Secret('pf-storm'))}\n`);
    const verification = new VerificationServices({ ...DEFAULT_VERIFICATION });
    let hashed = 0;
    const run = verification.hashPool.run.bind(verification.hashPool);
    verification.hashPool.run = (task, sig) => {
      hashed++;
      return run(task, sig);
    };
    const a = new PasswordFileAuthenticator({
      id: 'users',
      file,
      unknownUser: 'ignore',
      rehash: false,
      argon2: OWASP_ARGON2ID,
      watch: false,
      reloadDebounceMs: 0,
      verification,
      onEvent: () => undefined,
    });
    await a.start();
    const storm = await Promise.all(Array.from({ length: 20 }, () => login(a, 'alice', 'pf-storm')));
    expect(storm.every((r) => r.kind === 'allow')).toBe(true);
    expect(hashed).toBe(1);
    for (let i = 0; i < 5; i++) expect((await login(a, 'alice', 'pf-storm')).kind).toBe('allow');
    expect(hashed).toBe(1);
    // A different password is never served from the shared work or the cache.
    expect((await login(a, 'alice', 'pf-storm-other')).kind).toBe('deny');
    expect(hashed).toBe(2);
  });
});

describe('password file format', () => {
  it('a YAML syntax error reports line and column', () => {
    try {
      parsePasswordFile('users:\n  alice: [\n', 'f.yaml');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(BulwarkError);
      expect((e as BulwarkError).describe()).toMatch(/^f\.yaml:\d+:\d+: not valid YAML/);
    }
  });

  it('a duplicate user is refused', () => {
    expect(() => parsePasswordFile('users:\n  a:\n    hash: $2b$04$x\n  a:\n    hash: $2b$04$y\n', 'f.yaml')).toThrow(
      BulwarkError,
    );
  });

  it('an unknown key is refused with its position', () => {
    try {
      parsePasswordFile("users:\n  a:\n    hash: '$7$101$YWJj$ZGVm'\n    pasword: x\n", 'f.yaml');
      expect.unreachable();
    } catch (e) {
      expect((e as BulwarkError).position).toMatchObject({ file: 'f.yaml', line: 3, column: 5 });
    }
  });
});

/** Polls a condition (file-system events and background rehash have no promise to await). */
async function vitestWaitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
}
