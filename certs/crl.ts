import 'reflect-metadata';
import { AuthorityKeyIdentifierExtension, Extension, X509CrlGenerator, X509CrlReason } from '@peculiar/x509';
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
  /**
   * RFC 5280 §5.2.3 cRLNumber, which must grow with each CRL the CA issues. Default: `thisUpdate` in
   * milliseconds, which grows without any state as long as each CRL is made later than the previous one.
   */
  crlNumber?: bigint;
}

const CRL_NUMBER_OID = '2.5.29.20';

/** DER INTEGER of a non-negative number: big-endian, with a 0x00 octet when the top bit would read as a sign. */
function derInteger(value: bigint): Uint8Array {
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  let body = Buffer.from(hex, 'hex');
  if ((body[0] ?? 0) & 0x80) body = Buffer.concat([Buffer.from([0]), body]);
  return Uint8Array.from([0x02, body.length, ...body]);
}

const HEX = /^[0-9A-Fa-f]+$/;

/** A CRL signed by `issuer`, in PEM with the `X509 CRL` label OpenSSL and Node read. */
export async function createCrl(options: CrlOptions): Promise<string> {
  const { certificate: issuerCert, signer } = await checkIssuer(options.issuer, 'crl');
  const thisUpdate = options.thisUpdate ?? new Date(Date.now() - 60_000);
  const nextUpdate = options.nextUpdate ?? new Date(thisUpdate.getTime() + 7 * 86_400_000);
  const crlNumber = options.crlNumber ?? BigInt(thisUpdate.getTime());
  // RFC 5280 §5.2.3: at most 20 octets, non-negative.
  if (crlNumber < 0n || crlNumber >= 1n << 159n) {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      `CRL number ${crlNumber} is out of range`,
      undefined,
      'use a number from 0 to 2^159 - 1',
    );
  }
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
    extensions: [
      await AuthorityKeyIdentifierExtension.create(issuerCert.publicKey),
      new Extension(CRL_NUMBER_OID, false, derInteger(crlNumber)),
    ],
    entries: options.revoked.map((entry) => ({
      serialNumber: entry.serialNumber.replace(/:/g, ''),
      revocationDate: entry.revokedAt ?? new Date(thisUpdate.getTime()),
      reason: entry.reason === undefined ? undefined : X509CrlReason[entry.reason],
    })),
  });
  return encodePem(crl.rawData, 'X509 CRL');
}
