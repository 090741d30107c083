import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestPki, mintTestPki } from '../../helpers/certs.js';

function opensslVerify(args: string[]): { ok: boolean; output: string } {
  const result = spawnSync('openssl', ['verify', ...args], { encoding: 'utf8' });
  return { ok: result.status === 0, output: `${result.stdout}${result.stderr}` };
}

function text(certFile: string): string {
  return execFileSync('openssl', ['x509', '-in', certFile, '-noout', '-text'], { encoding: 'utf8' });
}

describe.each([
  { name: 'ECDSA root', intermediate: false, keyAlgorithm: 'ec-p256' as const },
  { name: 'RSA root and intermediate', intermediate: true, keyAlgorithm: 'rsa-2048' as const },
])('certificates minted by certs/ ($name) as OpenSSL sees them', ({ intermediate, keyAlgorithm }) => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await mintTestPki({ intermediate, keyAlgorithm });
  });
  afterAll(() => pki.cleanup());

  const chainArgs = (): string[] => (pki.intermediate ? ['-untrusted', pki.server.chainFile] : []);

  it('the server certificate verifies against the CA for TLS server use', () => {
    const result = opensslVerify(['-CAfile', pki.caFile, ...chainArgs(), '-purpose', 'sslserver', pki.server.certFile]);
    expect(result.output).toContain(': OK');
    expect(result.ok).toBe(true);
  });

  it('the server certificate carries the DNS and IP SANs and its key algorithm', () => {
    const out = text(pki.server.certFile);
    expect(out).toMatch(/DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/);
    expect(out).toContain(keyAlgorithm === 'ec-p256' ? 'id-ecPublicKey' : 'rsaEncryption');
    expect(out).toContain('TLS Web Server Authentication');
  });

  it('leaf KeyUsage is Digital Signature alone for ECDSA keys (RFC 5480 §3), plus Key Encipherment for RSA', () => {
    const expected = keyAlgorithm === 'ec-p256' ? 'Digital Signature' : 'Digital Signature, Key Encipherment';
    for (const file of [pki.server.certFile, pki.clients.good.certFile]) {
      expect(text(file)).toMatch(new RegExp(`X509v3 Key Usage: critical\\s+${expected}\\n`));
    }
  });

  it('the good client certificate carries CN, both OUs, URI, email and DNS SANs and verifies for client use', () => {
    const out = text(pki.clients.good.certFile);
    expect(out).toMatch(/Subject: O ?= ?Bulwark Tests, OU ?= ?sensors, OU ?= ?floor-2, CN ?= ?sensor-1/);
    expect(out).toContain('URI:spiffe://bulwark.test/sensor/1');
    expect(out).toContain('email:sensor-1@bulwark.test');
    expect(out).toContain('DNS:sensor-1.bulwark.test');
    const good = pki.clients.good.chainFile;
    expect(
      opensslVerify([
        '-CAfile',
        pki.caFile,
        ...(pki.intermediate ? ['-untrusted', good] : []),
        '-purpose',
        'sslclient',
        pki.clients.good.certFile,
      ]).ok,
    ).toBe(true);
  });

  it('the expired and not-yet-valid client certificates fail verification with the matching OpenSSL reason', () => {
    const expired = opensslVerify([
      '-CAfile',
      pki.caFile,
      ...(pki.intermediate ? ['-untrusted', pki.clients.expired.chainFile] : []),
      pki.clients.expired.certFile,
    ]);
    expect(expired.ok).toBe(false);
    expect(expired.output).toContain('certificate has expired');
    const future = opensslVerify([
      '-CAfile',
      pki.caFile,
      ...(pki.intermediate ? ['-untrusted', pki.clients.notYetValid.chainFile] : []),
      pki.clients.notYetValid.certFile,
    ]);
    expect(future.ok).toBe(false);
    expect(future.output).toContain('certificate is not yet valid');
  });

  it('the CRL revokes exactly the revoked client certificate', () => {
    const crlArgs = ['-CAfile', pki.caFile, '-CRLfile', pki.crlFile, '-crl_check_all'];
    const untrusted = (file: string): string[] => (pki.intermediate ? ['-untrusted', file] : []);
    const revoked = opensslVerify([
      ...crlArgs,
      ...untrusted(pki.clients.revoked.chainFile),
      pki.clients.revoked.certFile,
    ]);
    expect(revoked.ok).toBe(false);
    expect(revoked.output).toContain('certificate revoked');
    expect(opensslVerify([...crlArgs, ...untrusted(pki.clients.good.chainFile), pki.clients.good.certFile]).ok).toBe(
      true,
    );
  });

  it('a certificate from another CA does not verify', () => {
    const result = opensslVerify(['-CAfile', pki.caFile, pki.clients.otherCa.certFile]);
    expect(result.ok).toBe(false);
    expect(result.output).toContain('unable to get local issuer certificate');
  });

  it('PEM files use the labels OpenSSL expects, end with a newline, and keys are private to the owner', () => {
    const crl = readFileSync(pki.crlFile, 'utf8');
    expect(crl.startsWith('-----BEGIN X509 CRL-----\n')).toBe(true);
    expect(crl.endsWith('-----END X509 CRL-----\n')).toBe(true);
    expect(execFileSync('openssl', ['crl', '-in', pki.crlFile, '-noout', '-text'], { encoding: 'utf8' })).toContain(
      `Serial Number: ${pki.clients.revoked.serialNumber}`,
    );
    expect(readFileSync(pki.server.certFile, 'utf8').endsWith('-----END CERTIFICATE-----\n')).toBe(true);
    expect(readFileSync(pki.server.keyFile, 'utf8').startsWith('-----BEGIN PRIVATE KEY-----\n')).toBe(true);
    expect(statSync(pki.server.keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(pki.server.certFile).mode & 0o077).not.toBe(0);
  });
});
