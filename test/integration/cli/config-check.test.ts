import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, existsSync, lchownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintTestPki, type TestPki } from '../../helpers/certs.js';
import { runCli } from '../../helpers/cli.js';

/**
 * `bulwark config check FILE` validates "without starting the broker" (docs/configuration.md, docs/cli.md): an
 * operator runs it in CI or before a restart, so a file it passes must not be one `bulwark start` then refuses.
 */
const dir = mkdtempSync(join(tmpdir(), 'bw-config-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HEAD = `data_dir: ${join(dir, 'data')}\nwarmup_connects: 0\nlisteners:\n  - port: 0\n`;
const SHORT_SECRET = 'only-twenty-bytes-xx';

const refused: [string, string, RegExp][] = [
  [
    'an inline JWT HMAC secret shorter than 32 bytes',
    `authentication:\n  steps:\n    - type: jwt\n      algorithms: [HS256]\n      secret: ${SHORT_SECRET}\n`,
    /:9:15: authentication\.steps\.0\.secret: an HMAC secret must be at least 32 bytes/,
  ],
  [
    'two steps of one chain with the same id',
    'authentication:\n  steps:\n    - type: password-file\n      file: a.yaml\n    - type: password-file\n' +
      '      file: b.yaml\n',
    /:9:7: authentication\.steps\.1: duplicate id "password-file"/,
  ],
  [
    'an authentication query without an identity placeholder',
    'authentication:\n  steps:\n    - type: postgres\n      database: d\n      user: u\n' +
      '      query: SELECT password_hash FROM users\n',
    /:10:14: authentication\.steps\.0\.query: query must select by \$\{username\}, \$\{clientid\} or \$\{cert_cn\}/,
  ],
  [
    'an authentication query with a quoted placeholder',
    'authentication:\n  steps:\n    - type: mysql\n      database: d\n      user: u\n' +
      `      query: "SELECT password_hash FROM users WHERE username = '\${username}'"\n`,
    /:10:14: authentication\.steps\.0\.query: do not quote \$\{username\}: it is sent as a query parameter/,
  ],
  [
    'an ACL query with a quoted placeholder',
    'authorization:\n  sources:\n    - type: mysql\n      database: d\n      user: u\n' +
      `      query: "SELECT permission, action, topic FROM acl WHERE username = '\${username}'"\n`,
    /:10:14: authorization\.sources\.0\.query: do not quote \$\{username\}: it is sent as a query parameter/,
  ],
  [
    'an ACL query without a placeholder',
    'authorization:\n  sources:\n    - type: postgres\n      database: d\n      user: u\n' +
      '      query: SELECT permission, action, topic FROM acl\n',
    /:10:14: authorization\.sources\.0\.query: the query uses no placeholder/,
  ],
];

describe('bulwark config check', () => {
  it.each(refused)(
    'refuses %s, as bulwark start does, naming the line',
    async (name, body, expected) => {
      const file = join(dir, `${name.replace(/\W+/g, '-')}.yaml`);
      writeFileSync(file, HEAD + body);

      const check = await runCli(['config', 'check', file]);
      expect(check.code, check.stdout).toBe(1);
      expect(check.stderr).toMatch(expected);
      expect(check.stderr).not.toContain(SHORT_SECRET);

      // Start refuses it before touching anything, with the same position (exit status 2: invalid configuration).
      const start = await runCli(['start', '-c', file]);
      expect(start.code).toBe(2);
      expect(start.stderr).toContain('bulwark: invalid configuration: ');
      expect(start.stderr).toMatch(expected);
    },
    30_000,
  );

  it('start refuses a --port that collides with another socket of the file, naming both', async () => {
    const file = join(dir, 'port-override.yaml');
    writeFileSync(
      file,
      `data_dir: ${join(dir, 'data-port')}\nwarmup_connects: 0\nlisteners:\n  - port: 0\n  - name: second\n    port: 18931\n`,
    );
    const start = await runCli(['start', '-c', file, '-p', '18931']);
    expect(start.code).not.toBe(0);
    expect(start.stderr).toContain(
      "--port: listeners.1.port: port 18931 on 127.0.0.1 is already listener tcp:18931's (127.0.0.1)",
    );
  }, 30_000);

  it('passes the same sections written correctly', async () => {
    const file = join(dir, 'good.yaml');
    for (const users of ['a.yaml', 'b.yaml']) writeFileSync(join(dir, users), 'users: {}\n');
    writeFileSync(
      file,
      `${HEAD}authentication:\n  steps:\n    - type: jwt\n      algorithms: [HS256]\n` +
        `      secret: ${'x'.repeat(32)}\n    - type: password-file\n      id: admins\n      file: a.yaml\n` +
        '    - type: password-file\n      id: operators\n      file: b.yaml\n' +
        'authorization:\n  sources:\n    - type: postgres\n      database: d\n      user: u\n' +
        '      query: SELECT permission, action, topic FROM acl WHERE username = ${username}\n',
    );
    const check = await runCli(['config', 'check', file]);
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
  });

  describe('what start reads before it opens a port', () => {
    let pki: TestPki;
    beforeAll(async () => {
      pki = await mintTestPki();
    }, 60_000);
    afterAll(() => pki?.cleanup());

    const check = async (name: string, body: string) => {
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, HEAD + body);
      return runCli(['config', 'check', file]);
    };

    it('a file a setting names that cannot be read, at the line of the setting', async () => {
      const result = await check(
        'missing-users',
        'authentication:\n  steps:\n    - type: password-file\n      file: users-missing.yaml\n',
      );
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(
        `:8:13: authentication.steps.0.file: ${join(dir, 'users-missing.yaml')}: cannot read (ENOENT)`,
      );
      // As `bulwark start` would: it refuses the configuration before any listener opens.
      const start = await runCli(['start', '-c', join(dir, 'missing-users.yaml')]);
      expect(start.code).not.toBe(0);
      expect(start.stderr).toContain('users-missing.yaml');
    });

    it("a SCRAM step's credential file (store.path) that cannot be read, at the line of the setting", async () => {
      const result = await check(
        'missing-scram',
        'authentication:\n  steps:\n    - type: scram\n      store:\n        type: file\n' +
          '        path: scram-missing.txt\n',
      );
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(
        `:10:15: authentication.steps.0.store.path: ${join(dir, 'scram-missing.txt')}: cannot read (ENOENT)`,
      );
      const start = await runCli(['start', '-c', join(dir, 'missing-scram.yaml')]);
      expect(start.code).not.toBe(0);
      expect(start.stderr).toContain('scram-missing.txt');
    }, 30_000);

    it.each([
      [
        'password file',
        'users-broken.yaml',
        'users:\n  alice: [\n',
        'authentication:\n  steps:\n    - type: password-file\n      file: users-broken.yaml\n',
        /users-broken\.yaml:\d+:\d+: (authentication\.steps\.0: )?not valid YAML/,
      ],
      [
        'PSK step file',
        'psk-step.txt',
        '# devices\ndevice-1:abc\n',
        'authentication:\n  steps:\n    - type: psk\n      file: psk-step.txt\n',
        /psk-step\.txt:2:10: (authentication\.steps\.0: )?PSK key has an odd number of hex digits/,
      ],
      [
        'SCRAM credential file',
        'scram-broken.txt',
        'alice\n',
        'authentication:\n  steps:\n    - type: scram\n      store:\n        type: file\n        path: scram-broken.txt\n',
        /scram-broken\.txt:1:1: (authentication\.steps\.0: )?expected username:credential/,
      ],
    ])(
      'a %s start cannot parse, at its own line (start refuses it the same way)',
      async (_kind, name, content, body, expected) => {
        writeFileSync(join(dir, name), content);
        const result = await check(`parse-${name}`, body);
        expect(result.code, result.stderr).toBe(1);
        // config check names the step as well; start names the file's position alone.
        expect(expected.exec(result.stderr)?.[1]).toBe('authentication.steps.0: ');
        const start = await runCli(['start', '-c', join(dir, `parse-${name}.yaml`)]);
        expect(start.code).not.toBe(0);
        expect(start.stderr).toMatch(expected);
      },
      30_000,
    );

    it("a TLS listener's PSK file start cannot parse, at its own line", async () => {
      writeFileSync(join(dir, 'psk-listener.txt'), 'gateway:0g\n');
      const result = await check(
        'psk-listener',
        `  - name: secure\n    transport: tls\n    port: 0\n    tls:\n      cert_file: ${pki.server.certFile}\n` +
          `      key_file: ${pki.server.keyFile}\n    psk:\n      file: psk-listener.txt\n`,
      );
      expect(result.code, result.stderr).toBe(1);
      expect(result.stderr).toMatch(/psk-listener\.txt:1:9: listeners\.1\.psk\.file: PSK key is not hexadecimal/);
      expect(result.stderr).not.toContain('0g');
      const start = await runCli(['start', '-c', join(dir, 'psk-listener.yaml')]);
      expect(start.code).not.toBe(0);
      expect(start.stderr).toMatch(/psk-listener\.txt:1:9: PSK key is not hexadecimal/);
    }, 30_000);

    it('a persisted block list start cannot read (a missing one is an empty list)', async () => {
      const dataDir = join(dir, 'data-blocklist');
      mkdirSync(dataDir, { mode: 0o700 });
      const file = join(dir, 'blocklist-data.yaml');
      writeFileSync(file, `data_dir: ${dataDir}\nwarmup_connects: 0\nlisteners:\n  - port: 0\n`);
      const fine = await runCli(['config', 'check', file]);
      expect(fine.stderr).toBe('');
      expect(fine.code).toBe(0);

      writeFileSync(join(dataDir, 'blocklist.json'), '{"version": 1, "entries": [{"kind": "planet"}]}\n');
      const result = await runCli(['config', 'check', file]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/blocklist\.json:1:\d+: block list entry invalid at entries\.0/);
      const start = await runCli(['start', '-c', file]);
      expect(start.code).not.toBe(0);
      expect(start.stderr).toMatch(/block list entry invalid at entries\.0/);
    }, 30_000);

    it("a policy file with an error, at the policy file's line", async () => {
      writeFileSync(join(dir, 'broken.policy.yaml'), 'version: 1\nrules:\n  - name: r\n    alow: publish\n');
      const broken = await check('broken-policy', 'authorization:\n  policy_files: [broken.policy.yaml]\n');
      expect(broken.code).toBe(1);
      expect(broken.stderr).toMatch(/broken\.policy\.yaml:4:5: .*alow/);
    });

    it('the audit signing key where start looks for it (a relative path is from the working directory), mode 0600', async () => {
      const confDir = join(dir, 'signing-conf');
      const elsewhere = join(dir, 'signing-cwd');
      mkdirSync(confDir, { recursive: true });
      mkdirSync(elsewhere, { recursive: true });
      const pem = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' });
      writeFileSync(join(confDir, 'audit.key'), pem, { mode: 0o600 });
      const config = join(confDir, 'bulwark.yaml');
      writeFileSync(config, `${HEAD}audit:\n  signing_key_file: audit.key\n`);

      // Beside the configuration file but not in the working directory: start does not find it, so check must not.
      const start = await runCli(['start', '-c', config], { cwd: elsewhere });
      expect(start.code).not.toBe(0);
      expect(start.stderr).toContain('audit signing key audit.key does not exist');
      const away = await runCli(['config', 'check', config], { cwd: elsewhere });
      expect(away.code).toBe(1);
      expect(away.stderr).toContain(`:6:21: audit.signing_key_file: ${join(elsewhere, 'audit.key')}: cannot read`);
      const beside = await runCli(['config', 'check', config], { cwd: confDir });
      expect(beside.stderr).toBe('');
      expect(beside.code).toBe(0);

      // Readable by others: start refuses the key, and so does check.
      chmodSync(join(confDir, 'audit.key'), 0o644);
      const open = await runCli(['config', 'check', config], { cwd: confDir });
      expect(open.code).toBe(1);
      expect(open.stderr).toMatch(
        /:6:21: audit\.signing_key_file: .*readable or writable by group or others \(mode 644\)/,
      );
      expect(open.stderr).not.toContain('PRIVATE KEY');

      // With the audit log off start reads no key, so a missing one is no reason to refuse.
      writeFileSync(config, `${HEAD}audit:\n  enabled: false\n  signing_key_file: missing.key\n`);
      const off = await runCli(['config', 'check', config], { cwd: confDir });
      expect(off.stderr).toBe('');
      expect(off.code).toBe(0);
    }, 30_000);

    it('a data_dir that exists and others may write to (start creates a missing one)', async () => {
      const dataDir = join(dir, 'shared-data');
      const config = join(dir, 'shared-data.yaml');
      writeFileSync(config, `data_dir: ${dataDir}\nwarmup_connects: 0\nlisteners:\n  - port: 0\n`);
      // Missing: start would create it, so it is no reason to refuse.
      const missing = await runCli(['config', 'check', config]);
      expect(missing.stderr).toBe('');
      expect(missing.code).toBe(0);

      mkdirSync(dataDir);
      chmodSync(dataDir, 0o777);
      const start = await runCli(['start', '-c', config]);
      expect(start.code).not.toBe(0);
      expect(start.stderr).toContain(`data directory ${dataDir} is writable by group or others (mode 777)`);
      const result = await runCli(['config', 'check', config]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(
        `:1:11: data_dir: data directory ${dataDir} is writable by group or others (mode 777)`,
      );
    }, 30_000);

    it.skipIf(process.geteuid?.() !== 0)(
      "a data_dir reached through another user's symbolic link, as start refuses it",
      async () => {
        const target = join(dir, 'linked-data');
        mkdirSync(target, { mode: 0o700 });
        const link = join(dir, 'linked-data-link');
        symlinkSync(target, link);
        lchownSync(link, 65534, 65534);
        const config = join(dir, 'linked-data.yaml');
        writeFileSync(config, `data_dir: ${link}\nwarmup_connects: 0\nlisteners:\n  - port: 0\n`);
        const start = await runCli(['start', '-c', config]);
        expect(start.code).not.toBe(0);
        expect(start.stderr).toContain(`${link} is a symbolic link owned by uid 65534`);
        const result = await runCli(['config', 'check', config]);
        expect(result.code).toBe(1);
        expect(result.stderr).toContain(
          `:1:11: data_dir: data directory ${link}: ${link} is a symbolic link owned by uid 65534`,
        );
      },
      30_000,
    );

    it("a SCRAM step's unknown-user secret in data_dir that start refuses (nothing is created when it is missing)", async () => {
      const dataDir = join(dir, 'scram-data');
      const config = join(dir, 'scram-secret.yaml');
      // A credential file with no lines: the step is built all the same.
      writeFileSync(join(dir, 'scram-empty.txt'), '');
      writeFileSync(
        config,
        `data_dir: ${dataDir}\nwarmup_connects: 0\nlisteners:\n  - port: 0\n` +
          'authentication:\n  steps:\n    - type: scram\n      store:\n        type: file\n        path: scram-empty.txt\n',
      );
      mkdirSync(dataDir, { mode: 0o700 });
      const missing = await runCli(['config', 'check', config]);
      expect(missing.stderr).toBe('');
      expect(missing.code).toBe(0);
      expect(existsSync(join(dataDir, 'scram-unknown-user.secret'))).toBe(false);

      writeFileSync(join(dataDir, 'scram-unknown-user.secret'), 'too short', { mode: 0o600 });
      const start = await runCli(['start', '-c', config]);
      expect(start.code).not.toBe(0);
      expect(start.stderr).toContain('scram-unknown-user.secret: holds 9 bytes, fewer than 32');
      const result = await runCli(['config', 'check', config]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        /:7:7: authentication\.steps\.0: SCRAM unknown-user secret .*scram-unknown-user\.secret: holds 9 bytes/,
      );
    }, 30_000);

    it('an authentication step start cannot build: a short HMAC secret_file, a plaintext LDAP step of a listener', async () => {
      writeFileSync(join(dir, 'short.secret'), SHORT_SECRET, { mode: 0o600 });
      const shortSecret = await check(
        'short-secret-file',
        'authentication:\n  steps:\n    - type: jwt\n      algorithms: [HS256]\n      secret_file: short.secret\n',
      );
      expect(shortSecret.code).toBe(1);
      expect(shortSecret.stderr).toContain(':7:7: authentication.steps.0: jwt: HMAC secret shorter than 32 bytes');
      expect(shortSecret.stderr).not.toContain(SHORT_SECRET);
      const start = await runCli(['start', '-c', join(dir, 'short-secret-file.yaml')]);
      expect(start.code).not.toBe(0);
      expect(start.stderr).toContain('jwt: HMAC secret shorter than 32 bytes');

      const plaintext = await check(
        'listener-ldap-plaintext',
        '    authentication:\n      steps:\n        - type: ldap\n          url: ldap://127.0.0.1:1\n' +
          '          user_dn_template: uid=${username},dc=example\n',
      );
      expect(plaintext.code).toBe(1);
      expect(plaintext.stderr).toMatch(
        /:7:11: listeners\.0\.authentication\.steps\.0: ldap step "ldap": url: ldap:\/\/ without start_tls/,
      );
      const startPlain = await runCli(['start', '-c', join(dir, 'listener-ldap-plaintext.yaml')]);
      expect(startPlain.code).not.toBe(0);
      expect(startPlain.stderr).toContain('ldap:// without start_tls sends passwords in clear');
    }, 30_000);

    it("a TLS listener whose key is not its certificate's", async () => {
      const result = await check(
        'tls-mismatch',
        `  - name: secure\n    transport: tls\n    port: 0\n    tls:\n      cert_file: ${pki.server.certFile}\n` +
          `      key_file: ${pki.serverRotated.keyFile}\n`,
      );
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/listeners\.1\.tls: /);
      const fine = await check(
        'tls-good',
        `  - name: secure\n    transport: tls\n    port: 0\n    tls:\n      cert_file: ${pki.server.certFile}\n` +
          `      key_file: ${pki.server.keyFile}\n`,
      );
      expect(fine.stderr).toBe('');
      expect(fine.code).toBe(0);
    });
  });
});
