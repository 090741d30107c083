import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PasswordFileAuthenticator } from '../../../authn/password-file/authenticator.js';
import { parsePasswordFile } from '../../../authn/password-file/format.js';
import { Secret } from '../../../authn/secret.js';
import { OWASP_ARGON2ID } from '../../../authn/verify/password-hash.js';
import { VerificationServices } from '../../../authn/verify/services.js';
import { attempt } from '../../unit/authn/fakes.js';

const ROOT = resolve(import.meta.dirname, '../../..');
let out: string;
let work: string;
let entry: string;
const outputs: string[] = [];

beforeAll(() => {
  out = mkdtempSync(join(tmpdir(), 'passwd-cli-build-'));
  work = mkdtempSync(join(tmpdir(), 'passwd-cli-'));
  const tsc = spawnSync(
    process.execPath,
    [
      join(ROOT, 'node_modules/typescript/bin/tsc'),
      '--outDir',
      out,
      '--rootDir',
      ROOT,
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--target',
      'es2022',
      '--skipLibCheck',
      '--esModuleInterop',
      '--types',
      'node',
      '--noCheck',
      join(ROOT, 'test/integration/authn/fixtures/passwd-entry.ts'),
    ],
    { encoding: 'utf8' },
  );
  if (tsc.status !== 0) throw new Error(`tsc failed: ${tsc.stdout}${tsc.stderr}`);
  // Compiled files must resolve the same packages as the sources.
  symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'));
  writeFileSync(join(out, 'package.json'), '{"type":"module"}');
  entry = join(out, 'test/integration/authn/fixtures/passwd-entry.js');
}, 120_000);

afterAll(() => {
  rmSync(out, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

function bulwark(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [entry, 'passwd', ...args], {
    input: input ?? '',
    encoding: 'utf8',
    timeout: 60_000,
  });
  outputs.push(r.stdout, r.stderr);
  return r;
}

async function loginWith(file: string, username: string, password: string) {
  const a = new PasswordFileAuthenticator({
    id: 'users',
    file,
    unknownUser: 'deny',
    rehash: false,
    argon2: OWASP_ARGON2ID,
    watch: false,
    reloadDebounceMs: 0,
    verification: new VerificationServices(),
    onEvent: () => undefined,
  });
  await a.start();
  return a.authenticate(attempt({ username, password: new Secret(password) }), new AbortController().signal);
}

describe('bulwark passwd', () => {
  it('adds a user from --password-stdin with groups and superuser, and the broker accepts that password', async () => {
    const file = join(work, 'users.yaml');
    const r = bulwark(
      [file, 'add', 'alice', '--password-stdin', '--group', 'sensors', 'lab', '--superuser'],
      'cli-pass-alice\n',
    );
    expect(r.status).toBe(0);
    const user = parsePasswordFile(readFileSync(file, 'utf8'), file).users.get('alice');
    expect(user?.hash.startsWith('$argon2id$v=19$m=19456,t=2,p=1$')).toBe(true);
    expect(user).toMatchObject({ groups: ['sensors', 'lab'], superuser: true });
    const ok = await loginWith(file, 'alice', 'cli-pass-alice');
    expect(ok.kind === 'allow' && ok.identity.superuser).toBe(true);
    expect((await loginWith(file, 'alice', 'cli-pass-alice\n')).kind).toBe('deny');
  });

  it('lists users with their hash scheme but never the hash', () => {
    const file = join(work, 'users.yaml');
    const r = bulwark([file, 'list']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^alice\thash=argon2id\tgroups=sensors,lab\tsuperuser$/m);
    expect(r.stdout).not.toContain('$argon2id$');
  });

  it('changing a password keeps the groups and makes the old password fail', async () => {
    const file = join(work, 'users.yaml');
    expect(bulwark([file, 'add', 'alice', '--password-stdin'], 'cli-pass-alice-2').status).toBe(0);
    expect((await loginWith(file, 'alice', 'cli-pass-alice')).kind).toBe('deny');
    const r = await loginWith(file, 'alice', 'cli-pass-alice-2');
    expect(r.kind === 'allow' && r.identity.groups).toEqual(['sensors', 'lab']);
  });

  it('an imported mosquitto_passwd hash pasted into the file verifies, and lists as mosquitto', async () => {
    const mosq = join(work, 'mosquitto.pw');
    const m = spawnSync('mosquitto_passwd', ['-c', '-b', mosq, 'legacy', 'cli-pass-mosquitto']);
    if (m.error) return;
    const hash = readFileSync(mosq, 'utf8').trim().split(':')[1] ?? '';
    const file = join(work, 'imported.yaml');
    writeFileSync(file, `users:\n  legacy:\n    hash: '${hash}'\n`);
    expect((await loginWith(file, 'legacy', 'cli-pass-mosquitto')).kind).toBe('allow');
    expect(bulwark([file, 'list']).stdout).toMatch(/^legacy\thash=mosquitto/m);
  });

  it('deletes a user, and deleting an unknown user fails', async () => {
    const file = join(work, 'users.yaml');
    expect(bulwark([file, 'add', 'bob', '--password-stdin'], 'cli-pass-bob').status).toBe(0);
    expect(bulwark([file, 'delete', 'bob']).status).toBe(0);
    expect(parsePasswordFile(readFileSync(file, 'utf8'), file).users.has('bob')).toBe(false);
    const r = bulwark([file, 'delete', 'bob']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('no such user');
  });

  it('refuses an empty password', () => {
    const r = bulwark([join(work, 'users.yaml'), 'add', 'empty', '--password-stdin'], '\n');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('empty passwords are refused');
  });

  it('without a terminal and without --password-stdin it refuses instead of reading a password from elsewhere', () => {
    const r = bulwark([join(work, 'users.yaml'), 'add', 'carol']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('--password-stdin');
  });

  it('a broken file is reported with file:line:column and left untouched', () => {
    const file = join(work, 'broken.yaml');
    writeFileSync(file, 'users:\n  dave:\n    hash: 42\n');
    const r = bulwark([file, 'add', 'erin', '--password-stdin'], 'cli-pass-erin');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${file}:3:11:`);
    expect(readFileSync(file, 'utf8')).toBe('users:\n  dave:\n    hash: 42\n');
  });

  it('no command output ever contains a password', () => {
    const all = outputs.join('\n');
    for (const pw of ['cli-pass-alice', 'cli-pass-bob', 'cli-pass-erin', 'cli-pass-mosquitto'])
      expect(all).not.toContain(pw);
  });
});
