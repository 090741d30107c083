import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
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

  it('passes the same sections written correctly', async () => {
    const file = join(dir, 'good.yaml');
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
});
