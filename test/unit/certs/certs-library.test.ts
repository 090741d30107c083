import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { X509Certificate, X509Crl } from '@peculiar/x509';
import { describe, expect, it } from 'vitest';
import {
  createCertificateAuthority,
  createCrl,
  decodePemBlocks,
  detectKeyAlgorithm,
  encodePem,
  issueClientCertificate,
  issueServerCertificate,
  randomSerialNumber,
} from '../../../certs/index.js';
import { resolveValidity } from '../../../certs/issue.js';

const DAY = 86_400_000;

describe('certs library', () => {
  it('makes positive 16-byte serial numbers', () => {
    for (let i = 0; i < 50; i++) {
      const serial = randomSerialNumber();
      expect(serial).toMatch(/^[0-7][0-9A-F]{31}$/);
      expect(serial.startsWith('00')).toBe(false);
    }
  });

  it('backdates the default start and refuses a validity that ends before it begins', () => {
    const now = Date.UTC(2030, 0, 1);
    expect(resolveValidity(undefined, 10, now)).toEqual({
      notBefore: new Date(now - 5 * 60_000),
      notAfter: new Date(now - 5 * 60_000 + 10 * DAY),
    });
    expect(() => resolveValidity({ notBefore: new Date(now), notAfter: new Date(now - 1) }, 10, now)).toThrow(
      'the certificate would expire before it becomes valid',
    );
    expect(() => resolveValidity({ days: 3_000_000 }, 10, now)).toThrow('the validity does not fit in a certificate');
    expect(() => resolveValidity({ notAfter: new Date(Number.NaN) }, 10, now)).toThrow('does not fit');
  });

  it.each([-1, 1.5, Number.NaN])('refuses a CA path length of %s', async (pathLength: number) => {
    await expect(createCertificateAuthority({ subject: { commonName: 'CA' }, pathLength })).rejects.toThrow(
      'is not a whole number, 0 or more',
    );
  });

  it('round-trips PEM with the X509 CRL label and a trailing newline', () => {
    const pem = encodePem(Buffer.from('hello world'), 'X509 CRL');
    expect(pem).toBe('-----BEGIN X509 CRL-----\naGVsbG8gd29ybGQ=\n-----END X509 CRL-----\n');
    expect(decodePemBlocks(pem + pem, 'X509 CRL').map((b) => b.toString())).toEqual(['hello world', 'hello world']);
    expect(decodePemBlocks(pem, 'CERTIFICATE')).toEqual([]);
  });

  it('detects the key algorithm of keys it can sign with and refuses others', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' })
      .privateKey.export({ format: 'pem', type: 'sec1' })
      .toString();
    expect(detectKeyAlgorithm(ec)).toBe('ec-p384');
    const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    expect(() => detectKeyAlgorithm(ed)).toThrow('unsupported key type ed25519');
    expect(() => detectKeyAlgorithm('not a key')).toThrow('the private key is not a readable PEM key');
  });

  it('signs leaves with an existing SEC1 CA key (as openssl ecparam writes them)', async () => {
    const ca = await createCertificateAuthority({ subject: { commonName: 'CA' } });
    const sec1 = createPrivateKey(ca.keyPem).export({ format: 'pem', type: 'sec1' }).toString();
    expect(sec1).toContain('BEGIN EC PRIVATE KEY');
    const leaf = await issueServerCertificate({
      issuer: { certificatePem: ca.certificatePem, keyPem: sec1 },
      dnsNames: ['a.test'],
      validity: { days: 2 },
    });
    const cert = new X509Certificate(leaf.certificatePem);
    expect(cert.issuer).toBe(ca.subjectDn);
    expect(
      await cert.verify({ publicKey: new X509Certificate(ca.certificatePem).publicKey, signatureOnly: true }),
    ).toBe(true);
    expect(leaf.notAfter.getTime() - leaf.notBefore.getTime()).toBe(2 * DAY);
  });

  it('refuses server certificates without names and client certificates with bad URIs', async () => {
    const ca = await createCertificateAuthority({ subject: { commonName: 'CA' } });
    await expect(issueServerCertificate({ issuer: ca })).rejects.toThrow(
      'a server certificate needs a DNS name or an IP address',
    );
    await expect(issueServerCertificate({ issuer: ca, ipAddresses: ['localhost'] })).rejects.toThrow(
      '"localhost" is not an IP address',
    );
    await expect(
      issueClientCertificate({ issuer: ca, subject: { commonName: 'x' }, uris: ['not a uri'] }),
    ).rejects.toThrow('"not a uri" is not a URI');
    await expect(issueClientCertificate({ issuer: ca, subject: { commonName: '' } })).rejects.toThrow(
      'the common name must not be empty',
    );
  });

  it('writes CRL entries with serials and reasons, and refuses non-hex serials', async () => {
    const ca = await createCertificateAuthority({ subject: { commonName: 'CA' }, keyAlgorithm: 'rsa-2048' });
    const pem = await createCrl({
      issuer: ca,
      revoked: [{ serialNumber: '0A:BC', reason: 'keyCompromise' }],
      nextUpdate: new Date(Date.now() + DAY),
    });
    const crl = new X509Crl(pem);
    expect(crl.entries.map((e) => [e.serialNumber.toUpperCase(), e.reason])).toEqual([['0ABC', 1]]);
    expect(await crl.verify({ publicKey: new X509Certificate(ca.certificatePem) })).toBe(true);
    await expect(createCrl({ issuer: ca, revoked: [{ serialNumber: 'xyz' }] })).rejects.toThrow(
      '"xyz" is not a hex serial number',
    );
  });
  it('refuses a CA key that is not the CA certificate’s, and an issuer that is not a CA, for certificates and CRLs', async () => {
    const ca = await createCertificateAuthority({ subject: { commonName: 'CA' } });
    const other = await createCertificateAuthority({ subject: { commonName: 'Other CA' } });
    const leaf = await issueClientCertificate({ issuer: ca, subject: { commonName: 'leaf' } });
    const swapped = { certificatePem: ca.certificatePem, keyPem: other.keyPem };
    await expect(issueServerCertificate({ issuer: swapped, dnsNames: ['a.test'] })).rejects.toThrow(
      'the CA key does not belong to the CA certificate CN=CA',
    );
    await expect(createCrl({ issuer: swapped, revoked: [] })).rejects.toThrow(
      'the CA key does not belong to the CA certificate CN=CA',
    );
    await expect(createCertificateAuthority({ subject: { commonName: 'Mid' }, issuer: swapped })).rejects.toThrow(
      'does not belong',
    );
    await expect(issueServerCertificate({ issuer: leaf, dnsNames: ['a.test'] })).rejects.toThrow(
      'CN=leaf is not a CA certificate (no BasicConstraints CA:TRUE)',
    );
    await expect(createCrl({ issuer: leaf, revoked: [] })).rejects.toThrow('CN=leaf is not a CA certificate');
    await expect(
      issueServerCertificate({ issuer: { certificatePem: ca.keyPem, keyPem: ca.keyPem }, dnsNames: ['a.test'] }),
    ).rejects.toThrow('the CA certificate is not a readable PEM certificate');
  });
  it('gives every CRL a cRLNumber (RFC 5280 §5.2.3): thisUpdate in milliseconds unless one is given', async () => {
    const ca = await createCertificateAuthority({ subject: { commonName: 'CA' } });
    const thisUpdate = new Date(Date.UTC(2030, 0, 1));
    const crlText = (pem: string): string =>
      execFileSync('openssl', ['crl', '-noout', '-text'], { input: pem, encoding: 'utf8' });
    const byDate = crlText(await createCrl({ issuer: ca, revoked: [], thisUpdate }));
    expect(byDate).toMatch(new RegExp(`X509v3 CRL Number:\\s+${thisUpdate.getTime()}\\n`));
    const given = crlText(await createCrl({ issuer: ca, revoked: [], thisUpdate, crlNumber: 128n }));
    expect(given).toMatch(/X509v3 CRL Number:\s+128\n/);
    await expect(createCrl({ issuer: ca, revoked: [], crlNumber: -1n })).rejects.toThrow(
      'CRL number -1 is out of range',
    );
  });
  it('refuses DNS names and email addresses that are not, and keeps the ones that are', async () => {
    const ca = await createCertificateAuthority({ subject: { commonName: 'CA' } });
    for (const dns of ['bad name!', 'a..b', '-a.test', 'a-.test', 'a.test.', '', 'x'.repeat(64), 'a.*.test']) {
      await expect(issueServerCertificate({ issuer: ca, dnsNames: [dns] })).rejects.toThrow(
        `${JSON.stringify(dns)} is not a DNS name`,
      );
      await expect(
        issueClientCertificate({ issuer: ca, subject: { commonName: 'c' }, dnsNames: [dns] }),
      ).rejects.toThrow('is not a DNS name');
    }
    for (const email of ['not-an-email', '@example.org', 'a@', 'a b@example.org', 'a..b@example.org', 'a@bad_host']) {
      await expect(
        issueClientCertificate({ issuer: ca, subject: { commonName: 'c' }, emails: [email] }),
      ).rejects.toThrow(`${JSON.stringify(email)} is not an email address`);
    }
    const server = await issueServerCertificate({ issuer: ca, dnsNames: ['*.example.org', 'xn--bcher-kva.example'] });
    expect(new X509Certificate(server.certificatePem).subject).toBe('CN=*.example.org');
    const client = await issueClientCertificate({
      issuer: ca,
      subject: { commonName: 'c' },
      emails: ["o'brien+mqtt@example.org"],
      dnsNames: ['sensor-1.example.org'],
    });
    expect(client.subjectDn).toBe('CN=c');
  });
});
