import type { ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mosquittoPasswdHash, OPEN_POLICY, SecretLedger } from '../../helpers/authn-wire.js';
import { runCli, startCliBroker } from '../../helpers/cli.js';
import { runMosquitto } from '../../helpers/mqtt-clients.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';
import { until } from '../../helpers/until.js';

const ledger = new SecretLedger();
const alicePw = ledger.password('alice');
const legacyPw = ledger.password('legacy');
const wrongPw = ledger.password('wrong');

let dir: TempDir;
let child: ChildProcess | undefined;
let output: () => string = () => '';
let port = '';

beforeAll(async () => {
  dir = tempDir('bulwark-authn-wire-cli-');
  // `bulwark passwd` writes the file an operator would; the imported Mosquitto user is appended as documented.
  const added = await runCli(['passwd', dir.file('users.yaml'), 'add', 'alice', '--password-stdin'], {
    input: `${alicePw}\n`,
  });
  ledger.extra.push(added.stdout, added.stderr);
  expect(added.code, added.stderr).toBe(0);
  const { readFileSync, appendFileSync } = await import('node:fs');
  appendFileSync(dir.file('users.yaml'), `  legacy:\n    hash: '${mosquittoPasswdHash(dir, 'legacy', legacyPw)}'\n`);
  expect(readFileSync(dir.file('users.yaml'), 'utf8')).not.toContain(alicePw);
  dir.write('open.policy.yaml', OPEN_POLICY);
  const config = dir.write(
    'bulwark.yaml',
    [
      `data_dir: ${JSON.stringify(dir.file('data'))}`,
      'sys_interval_seconds: 0',
      'persistence: { durability: none }',
      'authentication:',
      '  anonymous: false',
      '  steps:',
      // Relative: resolved against the configuration file, not the working directory.
      '    - { type: password-file, file: users.yaml, unknown_user: deny, watch: false }',
      'listeners:',
      '  - { name: main, transport: tcp, host: 127.0.0.1, port: 0 }',
      'authorization:',
      `  policy_files: [${JSON.stringify(dir.file('open.policy.yaml'))}]`,
      '  watch: false',
      '',
    ].join('\n'),
  );
  const started = await startCliBroker(['-c', config], tmpdir());
  child = started.child;
  output = started.output;
  port = /tcp:\/\/127\.0\.0\.1:(\d+)/.exec(output())?.[1] ?? '';
}, 60_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  dir?.cleanup();
});

const pub = async (version: string, user: string, password: string) => {
  const r = await runMosquitto('mosquitto_pub', [
    ...['-h', '127.0.0.1', '-p', port, '-V', version, '-i', `cli-${user}-${version}`],
    ...['-u', user, '-P', password, '-t', 'cli/test', '-m', 'x', '-q', '1'],
  ]);
  ledger.extra.push(r.stdout, r.stderr);
  return r;
};

describe('bulwark start with a password file from bulwark passwd, through mosquitto_pub', () => {
  it('accepts the argon2id user and the imported mosquitto_passwd user in both versions, and refuses a wrong password', async () => {
    expect(port).not.toBe('');
    for (const version of ['5', '311']) {
      expect((await pub(version, 'alice', alicePw)).code).toBe(0);
      expect((await pub(version, 'legacy', legacyPw)).code).toBe(0);
      const bad = await pub(version, 'alice', wrongPw);
      expect(bad.code).not.toBe(0);
    }
    // The broker logs each refusal as it sends the CONNACK; the line may reach its output after mosquitto_pub exits.
    const denied = await until(() => {
      const lines = output()
        .split('\n')
        .filter((l) => l.includes('badUserNameOrPassword'));
      return lines.length >= 2 ? lines : undefined;
    }, 'both refusals in the broker output');
    expect(denied.length).toBeGreaterThanOrEqual(2);
  });

  it('never prints a test password in the broker output or the CLI output', () => {
    ledger.extra.push(output());
    expect(ledger.corpus().join('\n')).toContain('client connected');
    expect(ledger.leaks()).toEqual([]);
  });
});
