import 'reflect-metadata';
import { X509Certificate as NodeX509Certificate, createPrivateKey } from 'node:crypto';
import { BasicConstraintsExtension, KeyUsageFlags, KeyUsagesExtension, X509Certificate } from '@peculiar/x509';
import type { webcrypto } from 'node:crypto';
import { BulwarkError } from '../src/errors.js';
import { type KeyAlgorithm, importSigningKey } from './keys.js';
import type { IssuerPems } from './types.js';

export interface CheckedIssuer {
  certificate: X509Certificate;
  signer: { key: webcrypto.CryptoKey; algorithm: KeyAlgorithm };
}

/** What the issuer is about to sign; each needs its own KeyUsage bit (RFC 5280 §4.2.1.3). */
export type IssuerUse = 'certificate' | 'crl';

function refuse(message: string, hint: string): never {
  throw new BulwarkError('BULWARK_ERR_CERT', message, undefined, hint);
}

/**
 * Parses the issuer and refuses one that cannot produce something a verifier accepts: a key that is not the
 * certificate's, or a certificate that is not a CA (BasicConstraints cA, RFC 5280 §4.2.1.9) or lacks the
 * KeyUsage bit for `use`. Without this, a typo in --ca-key or --ca-cert writes certificates that never verify.
 */
export async function checkIssuer(issuer: IssuerPems, use: IssuerUse): Promise<CheckedIssuer> {
  let certificate: X509Certificate;
  let nodeCertificate: NodeX509Certificate;
  try {
    certificate = new X509Certificate(issuer.certificatePem);
    nodeCertificate = new NodeX509Certificate(issuer.certificatePem);
  } catch {
    refuse(
      'the CA certificate is not a readable PEM certificate',
      'pass the CA certificate, not its key, to --ca-cert',
    );
  }
  const signer = await importSigningKey(issuer.keyPem);
  if (!nodeCertificate.checkPrivateKey(createPrivateKey(issuer.keyPem))) {
    refuse(
      `the CA key does not belong to the CA certificate ${certificate.subject}`,
      'pass the private key of --ca-cert as --ca-key',
    );
  }
  if (certificate.getExtension(BasicConstraintsExtension)?.ca !== true) {
    refuse(
      `${certificate.subject} is not a CA certificate (no BasicConstraints CA:TRUE)`,
      'sign with a CA created by `bulwark certs ca`',
    );
  }
  const usages = certificate.getExtension(KeyUsagesExtension)?.usages;
  const needed = use === 'certificate' ? KeyUsageFlags.keyCertSign : KeyUsageFlags.cRLSign;
  if (usages !== undefined && (usages & needed) === 0) {
    refuse(
      `${certificate.subject} may not sign ${use === 'certificate' ? 'certificates (no keyCertSign)' : 'CRLs (no cRLSign)'}`,
      'sign with a CA whose KeyUsage allows it',
    );
  }
  return { certificate, signer };
}
