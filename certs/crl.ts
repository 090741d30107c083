import 'reflect-metadata';
import { AuthorityKeyIdentifierExtension, X509CrlGenerator, X509CrlReason } from '@peculiar/x509';
import { BulwarkError } from '../src/errors.js';
import { checkIssuer } from './issuer.js';
import { signingAlgorithmFor } from './keys.js';
import { encodePem } from './pem.js';
import type { IssuerPems } from './types.js';

export interface RevokedEntry {
  /** Hex serial number, as `openssl x509 -serial` or `IssuedCertificate.serialNumber` prints it. */
  serialNumber: string;
  revokedAt?: Date;
  reason?: keyof typeof X509CrlReason;
}

export interface CrlOptions {
  issuer: IssuerPems;
  revoked: readonly RevokedEntry[];
  thisUpdate?: Date;
  /** Default: seven days after `thisUpdate`. An expired CRL makes OpenSSL refuse every client (`CRL_HAS_EXPIRED`). */
  nextUpdate?: Date;
}

const HEX = /^[0-9A-Fa-f]+$/;

/** A CRL signed by `issuer`, in PEM with the `X509 CRL` label OpenSSL and Node read. */
export async function createCrl(options: CrlOptions): Promise<string> {
  const { certificate: issuerCert, signer } = await checkIssuer(options.issuer, 'crl');
  const thisUpdate = options.thisUpdate ?? new Date(Date.now() - 60_000);
  const nextUpdate = options.nextUpdate ?? new Date(thisUpdate.getTime() + 7 * 86_400_000);
  for (const entry of options.revoked) {
    if (!HEX.test(entry.serialNumber.replace(/:/g, ''))) {
      throw new BulwarkError(
        'BULWARK_ERR_CERT',
        `${JSON.stringify(entry.serialNumber)} is not a hex serial number`,
        undefined,
        'copy the serial from `openssl x509 -noout -serial`',
      );
    }
  }
  const crl = await X509CrlGenerator.create({
    issuer: issuerCert.subjectName,
    thisUpdate,
    nextUpdate,
    signingKey: signer.key,
    signingAlgorithm: signingAlgorithmFor(signer.algorithm),
    extensions: [await AuthorityKeyIdentifierExtension.create(issuerCert.publicKey)],
    entries: options.revoked.map((entry) => ({
      serialNumber: entry.serialNumber.replace(/:/g, ''),
      revocationDate: entry.revokedAt ?? new Date(thisUpdate.getTime()),
      reason: entry.reason === undefined ? undefined : X509CrlReason[entry.reason],
    })),
  });
  return encodePem(crl.rawData, 'X509 CRL');
}
