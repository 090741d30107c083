import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CertificateAuthority,
  type IssuedCertificate,
  type KeyAlgorithm,
  createCertificateAuthority,
  createCrl,
  issueClientCertificate,
  issueServerCertificate,
  writeCertificateFiles,
  writePublicFile,
} from '../../certs/index.js';

const DAY_MS = 86_400_000;

/** A certificate and key minted for a test, in memory and on disk. */
export interface TestCredential extends IssuedCertificate {
  certFile: string;
  keyFile: string;
  /** Certificate plus intermediates, for a server or client that must send its chain. */
  chainFile: string;
}

export interface TestPki {
  dir: string;
  ca: CertificateAuthority;
  /** The root CA certificate: what clients and the broker trust. */
  caFile: string;
  /** Present when minted with `intermediate: true`; leaves are then issued by it. */
  intermediate?: CertificateAuthority;
  server: TestCredential;
  /** A second server certificate from the same CA, for hot-reload tests. */
  serverRotated: TestCredential;
  clients: {
    /** CN=sensor-1, OU=sensors and OU=floor-2, SAN URI spiffe://bulwark.test/sensor/1, email, DNS. */
    good: TestCredential;
    expired: TestCredential;
    notYetValid: TestCredential;
    /** Listed in `crlFile`. */
    revoked: TestCredential;
    /** Issued by `otherCa`, which the broker does not trust. */
    otherCa: TestCredential;
  };
  otherCa: CertificateAuthority;
  /** CRL of the issuing CA revoking `clients.revoked`; with an intermediate, the file holds both CAs' CRLs. */
  crlFile: string;
  cleanup(): void;
}

export interface TestPkiOptions {
  keyAlgorithm?: KeyAlgorithm;
  intermediate?: boolean;
  /** AIA OCSP responder URL to put in the server certificates. */
  ocspUrl?: string;
}

/** Mints a whole PKI for TLS tests into a fresh temporary folder. Call `cleanup()` in `afterAll`. */
export async function mintTestPki(options: TestPkiOptions = {}): Promise<TestPki> {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-pki-'));
  const keyAlgorithm = options.keyAlgorithm;
  const ca = await createCertificateAuthority({
    subject: { commonName: 'Bulwark Test Root CA', organization: 'Bulwark Tests' },
    keyAlgorithm,
  });
  const intermediate = options.intermediate
    ? await createCertificateAuthority({
        subject: { commonName: 'Bulwark Test Intermediate CA', organization: 'Bulwark Tests' },
        issuer: ca,
        keyAlgorithm,
        pathLength: 0,
      })
    : undefined;
  const issuer = intermediate ?? ca;
  const otherCa = await createCertificateAuthority({ subject: { commonName: 'Some Other CA' }, keyAlgorithm });
  const now = Date.now();

  const save = async (name: string, issued: IssuedCertificate): Promise<TestCredential> => {
    const files = await writeCertificateFiles(issued, join(dir, name));
    return { ...issued, certFile: files.certificate, keyFile: files.key, chainFile: files.chain ?? files.certificate };
  };
  const serverOptions = {
    issuer,
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1', '::1'],
    ocspUrl: options.ocspUrl,
    keyAlgorithm,
  };
  const server = await save('server', await issueServerCertificate(serverOptions));
  const serverRotated = await save('server-rotated', await issueServerCertificate(serverOptions));
  const good = await save(
    'client-good',
    await issueClientCertificate({
      issuer,
      keyAlgorithm,
      subject: { commonName: 'sensor-1', organization: 'Bulwark Tests', organizationalUnits: ['sensors', 'floor-2'] },
      uris: ['spiffe://bulwark.test/sensor/1'],
      emails: ['sensor-1@bulwark.test'],
      dnsNames: ['sensor-1.bulwark.test'],
    }),
  );
  const expired = await save(
    'client-expired',
    await issueClientCertificate({
      issuer,
      keyAlgorithm,
      subject: { commonName: 'sensor-expired' },
      validity: { notBefore: new Date(now - 30 * DAY_MS), notAfter: new Date(now - DAY_MS) },
    }),
  );
  const notYetValid = await save(
    'client-not-yet-valid',
    await issueClientCertificate({
      issuer,
      keyAlgorithm,
      subject: { commonName: 'sensor-future' },
      validity: { notBefore: new Date(now + DAY_MS), days: 30 },
    }),
  );
  const revoked = await save(
    'client-revoked',
    await issueClientCertificate({ issuer, keyAlgorithm, subject: { commonName: 'sensor-revoked' } }),
  );
  const other = await save(
    'client-other-ca',
    await issueClientCertificate({ issuer: otherCa, keyAlgorithm, subject: { commonName: 'sensor-1' } }),
  );

  // OpenSSL checks a CRL for every CA in the chain when `crl` is set, so an intermediate needs the root's too.
  let crlPem = await createCrl({ issuer, revoked: [{ serialNumber: revoked.serialNumber, reason: 'keyCompromise' }] });
  if (intermediate) crlPem += await createCrl({ issuer: ca, revoked: [] });
  const crlFile = join(dir, 'crl.pem');
  await writePublicFile(crlFile, crlPem);
  const caFile = join(dir, 'ca.crt');
  await writePublicFile(caFile, ca.certificatePem);

  return {
    dir,
    ca,
    caFile,
    intermediate,
    server,
    serverRotated,
    clients: { good, expired, notYetValid, revoked, otherCa: other },
    otherCa,
    crlFile,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
