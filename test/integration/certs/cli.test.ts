import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerCertsCommand } from '../../../certs/cli.js';

function program(): { program: Command; out: string[] } {
  const out: string[] = [];
  const p = new Command('bulwark').exitOverride();
  p.configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => out.push(s) });
  registerCertsCommand(p);
  for (const c of p.commands) {
    c.exitOverride().configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => out.push(s) });
    for (const sub of c.commands)
      sub.exitOverride().configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => out.push(s) });
  }
  return { program: p, out };
}

async function bulwark(...args: string[]): Promise<string[]> {
  const { program: p } = program();
  const lines: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((line: unknown) => void lines.push(String(line)));
  const err = vi.spyOn(console, 'error').mockImplementation((line: unknown) => void lines.push(String(line)));
  try {
    await p.parseAsync(['certs', ...args], { from: 'user' });
  } finally {
    log.mockRestore();
    err.mockRestore();
  }
  return lines;
}

describe('bulwark certs', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'bulwark-certs-cli-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([[[]], [['ca']], [['server']], [['client']], [['crl']]])('prints help for certs %j', (sub: string[]) => {
    const { program: p, out } = program();
    expect(() => p.parse(['certs', ...sub, '--help'], { from: 'user' })).toThrow();
    const help = out.join('');
    expect(help).toContain('Usage: bulwark certs');
    if (sub.length > 0) expect(help).toContain('--ca-cert');
  });

  it('creates a CA, a server and a client certificate, and a CRL revoking the client, which OpenSSL then refuses', async () => {
    process.exitCode = undefined;
    await bulwark('ca', '--out', dir, '--cn', 'CLI Test CA', '--key-type', 'rsa-2048');
    const ca = ['--ca-cert', join(dir, 'ca.crt'), '--ca-key', join(dir, 'ca.key')];
    expect(statSync(join(dir, 'ca.key')).mode & 0o777).toBe(0o600);
    expect(
      execFileSync('openssl', ['x509', '-in', join(dir, 'ca.crt'), '-noout', '-subject'], { encoding: 'utf8' }),
    ).toContain('CN = CLI Test CA');

    await bulwark(
      'server',
      ...ca,
      '--out',
      join(dir, 'broker'),
      '--dns',
      'broker.test',
      '--dns',
      'localhost',
      '--ip',
      '::1',
    );
    const server = execFileSync(
      'openssl',
      ['x509', '-in', join(dir, 'broker.crt'), '-noout', '-ext', 'subjectAltName'],
      { encoding: 'utf8' },
    );
    expect(server).toContain('DNS:broker.test, DNS:localhost, IP Address:0:0:0:0:0:0:0:1');

    const lines = await bulwark(
      'client',
      ...ca,
      '--out',
      join(dir, 'dev1'),
      '--cn',
      'dev1',
      '--ou',
      'sensors',
      '--uri',
      'spiffe://example.org/dev1',
      '--days',
      '2',
    );
    const serial = lines.find((l) => l.startsWith('serial:'))?.split(/\s+/)[1] ?? '';
    expect(serial).toMatch(/^[0-9A-F]+$/);
    expect(spawnSync('openssl', ['verify', '-CAfile', join(dir, 'ca.crt'), join(dir, 'dev1.crt')]).status).toBe(0);

    await bulwark('crl', ...ca, '--out', join(dir, 'crl.pem'), '--revoke-cert', join(dir, 'dev1.crt'));
    expect(readFileSync(join(dir, 'crl.pem'), 'utf8')).toMatch(
      /^-----BEGIN X509 CRL-----\n[\s\S]+-----END X509 CRL-----\n$/,
    );
    const verify = spawnSync(
      'openssl',
      ['verify', '-CAfile', join(dir, 'ca.crt'), '-CRLfile', join(dir, 'crl.pem'), '-crl_check', join(dir, 'dev1.crt')],
      { encoding: 'utf8' },
    );
    expect(verify.status).not.toBe(0);
    expect(verify.stdout + verify.stderr).toContain('certificate revoked');
    expect(process.exitCode).toBeUndefined();
  });

  it('refuses to overwrite an existing key without --force and reports why', async () => {
    process.exitCode = undefined;
    writeFileSync(join(dir, 'keep.key'), 'do not touch');
    const lines = await bulwark('ca', '--out', dir, '--name', 'keep');
    expect(lines.join('\n')).toContain('refusing to overwrite');
    expect(readFileSync(join(dir, 'keep.key'), 'utf8')).toBe('do not touch');
    expect(process.exitCode).toBe(1);
    process.exitCode = undefined;
  });

  it('--force replaces a world-readable key by a new 0600 file and never writes the key into the old one', async () => {
    process.exitCode = undefined;
    const ca = ['--ca-cert', join(dir, 'ca.crt'), '--ca-key', join(dir, 'ca.key')];
    writeFileSync(join(dir, 'open.key'), 'old key', { mode: 0o644 });
    chmodSync(join(dir, 'open.key'), 0o644);
    // A second name for the old file shows whether the new key was ever written into it (then readable by all).
    linkSync(join(dir, 'open.key'), join(dir, 'open-old.key'));
    await bulwark('client', ...ca, '--out', join(dir, 'open'), '--cn', 'open', '--force');
    expect(process.exitCode).toBeUndefined();
    expect(statSync(join(dir, 'open.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'open.key'), 'utf8')).toContain('-----BEGIN PRIVATE KEY-----');
    expect(readFileSync(join(dir, 'open-old.key'), 'utf8')).toBe('old key');
  });

  it.each([[[]], [['--force']]])(
    'refuses a dangling symlink at the key path and does not create its target (%j)',
    async (extra: string[]) => {
      process.exitCode = undefined;
      const name = `link${extra.length}`;
      const target = join(dir, `${name}-target.key`);
      symlinkSync(target, join(dir, `${name}.key`));
      const ca = ['--ca-cert', join(dir, 'ca.crt'), '--ca-key', join(dir, 'ca.key')];
      const lines = await bulwark('client', ...ca, '--out', join(dir, name), '--cn', name, ...extra);
      expect(lines.join('\n')).toMatch(/refusing to (overwrite|write through the symbolic link)/);
      expect(process.exitCode).toBe(1);
      expect(existsSync(target)).toBe(false);
      expect(lstatSync(join(dir, `${name}.key`)).isSymbolicLink()).toBe(true);
      process.exitCode = undefined;
    },
  );

  it('refuses to overwrite an existing chain file without --force and leaves every file as it was', async () => {
    process.exitCode = undefined;
    await bulwark(
      'ca',
      '--out',
      dir,
      '--name',
      'mid',
      '--cn',
      'Mid CA',
      '--ca-cert',
      join(dir, 'ca.crt'),
      '--ca-key',
      join(dir, 'ca.key'),
    );
    const mid = [
      '--ca-cert',
      join(dir, 'mid.crt'),
      '--ca-key',
      join(dir, 'mid.key'),
      '--ca-chain',
      join(dir, 'mid.crt'),
    ];
    writeFileSync(join(dir, 'precious.chain.crt'), 'PRECIOUS');
    const lines = await bulwark('server', ...mid, '--out', join(dir, 'precious'), '--dns', 'localhost');
    expect(lines.join('\n')).toContain(`refusing to overwrite ${join(dir, 'precious.chain.crt')}`);
    expect(process.exitCode).toBe(1);
    expect(readFileSync(join(dir, 'precious.chain.crt'), 'utf8')).toBe('PRECIOUS');
    expect(existsSync(join(dir, 'precious.crt'))).toBe(false);
    expect(existsSync(join(dir, 'precious.key'))).toBe(false);
    process.exitCode = undefined;
  });

  it('with --force, a set whose chain path cannot be written keeps the old key and certificate together', async () => {
    process.exitCode = undefined;
    const ca = ['--ca-cert', join(dir, 'ca.crt'), '--ca-key', join(dir, 'ca.key')];
    await bulwark('ca', '--out', dir, '--name', 'pair', '--cn', 'Pair CA', ...ca);
    expect(process.exitCode).toBeUndefined();
    const key = readFileSync(join(dir, 'pair.key'), 'utf8');
    const certificate = readFileSync(join(dir, 'pair.crt'), 'utf8');
    // Something that is no regular file now stands where the chain goes; the key and certificate come first.
    rmSync(join(dir, 'pair.chain.crt'));
    mkdirSync(join(dir, 'pair.chain.crt'));
    const lines = await bulwark('ca', '--out', dir, '--name', 'pair', '--cn', 'Pair CA', ...ca, '--force');
    expect(lines.join('\n')).toContain(`${join(dir, 'pair.chain.crt')} exists and is not a regular file`);
    expect(process.exitCode).toBe(1);
    expect(readFileSync(join(dir, 'pair.key'), 'utf8')).toBe(key);
    expect(readFileSync(join(dir, 'pair.crt'), 'utf8')).toBe(certificate);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    process.exitCode = undefined;
  });

  it('refuses a --ca-key that does not match --ca-cert, and a --ca-cert that is not a CA, writing nothing', async () => {
    process.exitCode = undefined;
    const lines = await bulwark(
      'server',
      '--ca-cert',
      join(dir, 'ca.crt'),
      '--ca-key',
      join(dir, 'dev1.key'),
      '--out',
      join(dir, 'wrongkey'),
      '--dns',
      'x',
    );
    expect(lines.join('\n')).toContain(
      'bulwark certs: the CA key does not belong to the CA certificate CN=CLI Test CA (pass the private key of --ca-cert as --ca-key)',
    );
    expect(process.exitCode).toBe(1);
    expect(existsSync(join(dir, 'wrongkey.crt'))).toBe(false);
    process.exitCode = undefined;
    const notCa = await bulwark(
      'server',
      '--ca-cert',
      join(dir, 'dev1.crt'),
      '--ca-key',
      join(dir, 'dev1.key'),
      '--out',
      join(dir, 'notca'),
      '--dns',
      'x',
    );
    expect(notCa.join('\n')).toContain('CN=dev1 is not a CA certificate (no BasicConstraints CA:TRUE)');
    expect(process.exitCode).toBe(1);
    expect(existsSync(join(dir, 'notca.crt'))).toBe(false);
    process.exitCode = undefined;
  });

  it.each(['abc', '-1', '1.5', '1e1', '0x1', ' 2', ''])(
    'refuses %j as --path-length and as --days, and writes nothing',
    async (value: string) => {
      await expect(bulwark('ca', '--out', dir, '--name', 'pl', '--path-length', value)).rejects.toThrow(
        /--path-length <n>' argument .* is invalid\. expected a whole number, 0 or more/,
      );
      await expect(bulwark('ca', '--out', dir, '--name', 'pl', '--days', value)).rejects.toThrow(
        /--days <n>' argument .* is invalid\. expected a whole number, 1 or more/,
      );
      expect(existsSync(join(dir, 'pl.crt'))).toBe(false);
      expect(existsSync(join(dir, 'pl.key'))).toBe(false);
    },
  );

  it('writes --path-length 0 as pathlen:0 and refuses --days 0, a date that is not ISO 8601 and a year past 9999', async () => {
    process.exitCode = undefined;
    await bulwark('ca', '--out', dir, '--name', 'pl0', '--path-length', '0');
    expect(process.exitCode).toBeUndefined();
    expect(
      execFileSync('openssl', ['x509', '-in', join(dir, 'pl0.crt'), '-noout', '-ext', 'basicConstraints'], {
        encoding: 'utf8',
      }),
    ).toContain('CA:TRUE, pathlen:0');
    await expect(bulwark('ca', '--out', dir, '--name', 'd0', '--days', '0')).rejects.toThrow('is invalid');
    await expect(bulwark('ca', '--out', dir, '--name', 'd0', '--not-before', '1')).rejects.toThrow('is invalid');
    const lines = await bulwark('ca', '--out', dir, '--name', 'd0', '--days', '99999999');
    expect(lines.join('\n')).toContain('bulwark certs: the validity does not fit in a certificate');
    expect(process.exitCode).toBe(1);
    expect(existsSync(join(dir, 'd0.crt'))).toBe(false);
    process.exitCode = undefined;
  });

  it('an intermediate CA writes <name>.chain.crt (itself, then its issuers but the root), which its leaves chain to', async () => {
    process.exitCode = undefined;
    const root = ['--ca-cert', join(dir, 'ca.crt'), '--ca-key', join(dir, 'ca.key')];
    const lines = await bulwark('ca', '--out', dir, '--name', 'iss1', '--cn', 'Issuing 1', ...root);
    expect(lines).toContain(`chain:       ${join(dir, 'iss1.chain.crt')}`);
    expect(readFileSync(join(dir, 'iss1.chain.crt'), 'utf8')).toBe(readFileSync(join(dir, 'iss1.crt'), 'utf8'));
    const iss1 = ['--ca-cert', join(dir, 'iss1.crt'), '--ca-key', join(dir, 'iss1.key')];
    await bulwark(
      'ca',
      '--out',
      dir,
      '--name',
      'iss2',
      '--cn',
      'Issuing 2',
      ...iss1,
      '--ca-chain',
      join(dir, 'iss1.chain.crt'),
    );
    expect(readFileSync(join(dir, 'iss2.chain.crt'), 'utf8')).toBe(
      readFileSync(join(dir, 'iss2.crt'), 'utf8') + readFileSync(join(dir, 'iss1.crt'), 'utf8'),
    );
    const iss2 = ['--ca-cert', join(dir, 'iss2.crt'), '--ca-key', join(dir, 'iss2.key')];
    await bulwark(
      'server',
      ...iss2,
      '--ca-chain',
      join(dir, 'iss2.chain.crt'),
      '--out',
      join(dir, 'deep'),
      '--dns',
      'localhost',
    );
    expect(process.exitCode).toBeUndefined();
    const verify = spawnSync(
      'openssl',
      [
        'verify',
        '-CAfile',
        join(dir, 'ca.crt'),
        '-untrusted',
        join(dir, 'deep.chain.crt'),
        '-purpose',
        'sslserver',
        join(dir, 'deep.crt'),
      ],
      { encoding: 'utf8' },
    );
    expect(verify.stdout + verify.stderr).toContain(': OK');
    expect(verify.status).toBe(0);
  });

  it('names the file in one documented line when --revoke-cert is missing or not a certificate, writing no CRL', async () => {
    const ca = ['--ca-cert', join(dir, 'ca.crt'), '--ca-key', join(dir, 'ca.key')];
    const cases: [string, string][] = [
      [
        join(dir, 'nonexist.crt'),
        `bulwark certs: cannot read --revoke-cert ${join(dir, 'nonexist.crt')} (ENOENT) (check the path)`,
      ],
      [
        join(dir, 'ca.key'),
        `bulwark certs: --revoke-cert ${join(dir, 'ca.key')} is not a PEM certificate (pass the certificate to revoke (not its key), or its serial with --revoke)`,
      ],
    ];
    for (const [file, expected] of cases) {
      process.exitCode = undefined;
      const lines = await bulwark('crl', ...ca, '--out', join(dir, 'never.crl'), '--revoke-cert', file);
      expect(lines).toEqual([expected]);
      expect(process.exitCode).toBe(1);
      expect(existsSync(join(dir, 'never.crl'))).toBe(false);
    }
    process.exitCode = undefined;
    const missingCa = await bulwark(
      'crl',
      '--ca-cert',
      join(dir, 'nope.crt'),
      '--ca-key',
      join(dir, 'ca.key'),
      '--out',
      join(dir, 'never.crl'),
    );
    expect(missingCa).toEqual([
      `bulwark certs: cannot read --ca-cert ${join(dir, 'nope.crt')} (ENOENT) (check the path)`,
    ]);
    process.exitCode = undefined;
  });

  it('refuses to revoke a certificate of another CA, writing no CRL', async () => {
    process.exitCode = undefined;
    const ca = ['--ca-cert', join(dir, 'ca.crt'), '--ca-key', join(dir, 'ca.key')];
    const lines = await bulwark('crl', ...ca, '--out', join(dir, 'other.crl'), '--revoke-cert', join(dir, 'deep.crt'));
    expect(lines).toEqual([
      `bulwark certs: --revoke-cert ${join(dir, 'deep.crt')} was issued by CN=Issuing 2, not by CN=CLI Test CA (revoke it in a CRL of the CA that issued it)`,
    ]);
    expect(process.exitCode).toBe(1);
    expect(existsSync(join(dir, 'other.crl'))).toBe(false);
    process.exitCode = undefined;
  });

  it('--force over a certificate that had a chain removes the stale chain file, which would no longer match the key', async () => {
    process.exitCode = undefined;
    const root = ['--ca-cert', join(dir, 'ca.crt'), '--ca-key', join(dir, 'ca.key')];
    expect(existsSync(join(dir, 'deep.chain.crt'))).toBe(true);
    const lines = await bulwark('server', ...root, '--out', join(dir, 'deep'), '--dns', 'localhost', '--force');
    expect(process.exitCode).toBeUndefined();
    expect(lines).toContain(`removed:     ${join(dir, 'deep.chain.crt')} (chain of the replaced certificate)`);
    expect(existsSync(join(dir, 'deep.chain.crt'))).toBe(false);
    writeFileSync(join(dir, 'lone.chain.crt'), 'KEEP');
    const refused = await bulwark('server', ...root, '--out', join(dir, 'lone'), '--dns', 'localhost');
    expect(refused.join('\n')).toContain(`refusing to overwrite ${join(dir, 'lone.chain.crt')}`);
    expect(readFileSync(join(dir, 'lone.chain.crt'), 'utf8')).toBe('KEEP');
    expect(process.exitCode).toBe(1);
    process.exitCode = undefined;
  });

  it('rejects an IP SAN that is not an IP address', async () => {
    process.exitCode = undefined;
    const lines = await bulwark(
      'server',
      '--ca-cert',
      join(dir, 'ca.crt'),
      '--ca-key',
      join(dir, 'ca.key'),
      '--out',
      join(dir, 'bad'),
      '--ip',
      '999.1.1.1',
    );
    expect(lines.join('\n')).toContain('"999.1.1.1" is not an IP address');
    expect(process.exitCode).toBe(1);
    process.exitCode = undefined;
  });
});
