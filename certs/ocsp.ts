import 'reflect-metadata';
import { X509Certificate as NodeX509Certificate, createHash, createPublicKey, sign, verify } from 'node:crypto';
import {
  BasicOCSPResponse,
  CertID,
  CertStatus,
  OCSPRequest,
  OCSPResponse,
  OCSPResponseStatus,
  Request,
  ResponderID,
  ResponseBytes,
  ResponseData,
  RevokedInfo,
  SingleResponse,
  TBSRequest,
  id_kp_OCSPSigning,
  id_pkix_ocsp_basic,
} from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate } from '@peculiar/asn1-x509';
import { decodePemBlocks } from './pem.js';
import type { IssuerPems } from './types.js';

/**
 * OCSP (RFC 6960) encoding shared by the broker's stapler (request, parse, verify) and by tests and
 * development setups that run a responder (response). DER in, DER out.
 */

const HASH_OIDS: Record<string, string> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

/** Signature algorithms we verify, mapped to the digest Node's `verify` needs. */
const SIGNATURE_OIDS: Record<string, { hash: string; name: string }> = {
  '1.2.840.10045.4.3.2': { hash: 'sha256', name: 'ecdsa-with-SHA256' },
  '1.2.840.10045.4.3.3': { hash: 'sha384', name: 'ecdsa-with-SHA384' },
  '1.2.840.10045.4.3.4': { hash: 'sha512', name: 'ecdsa-with-SHA512' },
  '1.2.840.113549.1.1.5': { hash: 'sha1', name: 'sha1WithRSAEncryption' },
  '1.2.840.113549.1.1.11': { hash: 'sha256', name: 'sha256WithRSAEncryption' },
  '1.2.840.113549.1.1.12': { hash: 'sha384', name: 'sha384WithRSAEncryption' },
  '1.2.840.113549.1.1.13': { hash: 'sha512', name: 'sha512WithRSAEncryption' },
};

export type OcspCertStatus = 'good' | 'revoked' | 'unknown';

/** Accepts DER or PEM (the first CERTIFICATE block). */
export function certificateDer(input: Buffer | string): Buffer {
  if (typeof input !== 'string') return input;
  const der = decodePemBlocks(input, 'CERTIFICATE')[0];
  if (der === undefined) throw new Error('no CERTIFICATE block in PEM');
  return der;
}

function parseCertificate(der: Buffer): Certificate {
  return AsnConvert.parse(der, Certificate);
}

function hashOid(name: string): string {
  const oid = Object.entries(HASH_OIDS).find(([, n]) => n === name)?.[0];
  if (oid === undefined) throw new Error(`unsupported hash ${name}`);
  return oid;
}

/** RFC 6960 §4.1.1 CertID for `certificate` issued by `issuer`, hashed with `hash` (SHA-1 is what responders expect). */
export function computeCertId(certificate: Buffer, issuer: Buffer, hash = 'sha1'): CertID {
  const cert = parseCertificate(certificate);
  const issuerCert = parseCertificate(issuer);
  const nameDer = Buffer.from(AsnConvert.serialize(issuerCert.tbsCertificate.subject));
  const keyBits = Buffer.from(issuerCert.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey);
  return new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: hashOid(hash), parameters: null }),
    issuerNameHash: new OctetString(createHash(hash).update(nameDer).digest()),
    issuerKeyHash: new OctetString(createHash(hash).update(keyBits).digest()),
    serialNumber: cert.tbsCertificate.serialNumber,
  });
}

function sameBytes(a: ArrayBuffer | ArrayBufferView, b: ArrayBuffer | ArrayBufferView): boolean {
  const x = ArrayBuffer.isView(a) ? Buffer.from(a.buffer, a.byteOffset, a.byteLength) : Buffer.from(a);
  const y = ArrayBuffer.isView(b) ? Buffer.from(b.buffer, b.byteOffset, b.byteLength) : Buffer.from(b);
  return x.equals(y);
}

/** Serial numbers compare as integers: a leading 0x00 sign octet must not make two encodings differ. */
function sameSerial(a: ArrayBuffer, b: ArrayBuffer): boolean {
  const strip = (v: ArrayBuffer): Buffer => {
    const buf = Buffer.from(v);
    let i = 0;
    while (i < buf.length - 1 && buf[i] === 0) i++;
    return buf.subarray(i);
  };
  return strip(a).equals(strip(b));
}

/** Does `id` (in whatever hash the responder chose) name `certificate` issued by `issuer`? */
export function certIdMatches(id: CertID, certificate: Buffer, issuer: Buffer): boolean {
  const hash = HASH_OIDS[id.hashAlgorithm.algorithm];
  if (hash === undefined) return false;
  const expected = computeCertId(certificate, issuer, hash);
  return (
    sameBytes(id.issuerNameHash, expected.issuerNameHash) &&
    sameBytes(id.issuerKeyHash, expected.issuerKeyHash) &&
    sameSerial(id.serialNumber, expected.serialNumber)
  );
}

/** A DER OCSPRequest for one certificate, unsigned and without a nonce (responders may then cache, RFC 5019). */
export function createOcspRequest(certificate: Buffer, issuer: Buffer): Buffer {
  const request = new OCSPRequest({
    tbsRequest: new TBSRequest({ requestList: [new Request({ reqCert: computeCertId(certificate, issuer) })] }),
  });
  return Buffer.from(AsnConvert.serialize(request));
}

/** The CertIDs an OCSPRequest asks about (for responders), or an error string when it does not parse. */
export function parseOcspRequest(der: Buffer): { ok: true; certIds: CertID[] } | { ok: false; error: string } {
  try {
    const request = AsnConvert.parse(der, OCSPRequest);
    return { ok: true, certIds: request.tbsRequest.requestList.map((r) => r.reqCert) };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

export interface OcspResponseSummary {
  status: OcspCertStatus;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  producedAt: Date;
  revokedAt?: Date;
}

export type OcspParseResult = { ok: true; response: OcspResponseSummary } | { ok: false; error: string };

function signerKeyFor(
  basic: BasicOCSPResponse,
  issuer: Buffer,
): { ok: true; key: ReturnType<typeof createPublicKey> } | { ok: false; error: string } {
  const issuerNode = new NodeX509Certificate(issuer);
  const byName = basic.tbsResponseData.responderID.byName;
  const byKey = basic.tbsResponseData.responderID.byKey;
  const issuerParsed = parseCertificate(issuer);
  const issuerKeyHash = createHash('sha1')
    .update(Buffer.from(issuerParsed.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey))
    .digest();
  const isIssuer =
    (byKey !== undefined && sameBytes(byKey, issuerKeyHash)) ||
    (byName !== undefined &&
      Buffer.from(AsnConvert.serialize(byName)).equals(
        Buffer.from(AsnConvert.serialize(issuerParsed.tbsCertificate.subject)),
      ));
  if (isIssuer) return { ok: true, key: issuerNode.publicKey };
  // RFC 6960 §4.2.2.2: a delegated responder must be issued by the CA and carry id-kp-OCSPSigning.
  for (const cert of basic.certs ?? []) {
    const delegated = new NodeX509Certificate(Buffer.from(AsnConvert.serialize(cert)));
    if (!delegated.checkIssued(issuerNode) || !delegated.verify(issuerNode.publicKey)) continue;
    if (!(delegated.keyUsage ?? []).includes(id_kp_OCSPSigning)) continue;
    return { ok: true, key: delegated.publicKey };
  }
  return { ok: false, error: 'the response is signed neither by the issuer nor by a delegated OCSP responder of it' };
}

/**
 * Parses a DER OCSPResponse and checks it is a successful, correctly signed basic response about
 * `certificate`. Time validity is the caller's business (it knows the clock).
 */
export function parseOcspResponse(der: Buffer, certificate: Buffer, issuer: Buffer): OcspParseResult {
  let response: OCSPResponse;
  try {
    response = AsnConvert.parse(der, OCSPResponse);
  } catch (error) {
    return { ok: false, error: `not an OCSP response: ${error instanceof Error ? error.message : String(error)}` };
  }
  if (response.responseStatus !== OCSPResponseStatus.successful) {
    return {
      ok: false,
      error: `responder answered ${OCSPResponseStatus[response.responseStatus] ?? response.responseStatus}`,
    };
  }
  if (response.responseBytes === undefined || response.responseBytes.responseType !== id_pkix_ocsp_basic) {
    return { ok: false, error: 'the response is not an id-pkix-ocsp-basic response' };
  }
  let basic: BasicOCSPResponse;
  try {
    basic = AsnConvert.parse(response.responseBytes.response, BasicOCSPResponse);
  } catch (error) {
    return { ok: false, error: `malformed basic response: ${error instanceof Error ? error.message : String(error)}` };
  }
  const algorithm = SIGNATURE_OIDS[basic.signatureAlgorithm.algorithm];
  if (algorithm === undefined)
    return { ok: false, error: `unsupported signature algorithm ${basic.signatureAlgorithm.algorithm}` };
  const signer = signerKeyFor(basic, issuer);
  if (!signer.ok) return signer;
  const tbs = basic.tbsResponseDataRaw ?? AsnConvert.serialize(basic.tbsResponseData);
  if (!verify(algorithm.hash, Buffer.from(tbs), signer.key, Buffer.from(basic.signature))) {
    return { ok: false, error: 'the response signature does not verify' };
  }
  const single = basic.tbsResponseData.responses.find((r) => certIdMatches(r.certID, certificate, issuer));
  if (single === undefined) return { ok: false, error: 'the response is about a different certificate' };
  const status: OcspCertStatus =
    single.certStatus.revoked !== undefined ? 'revoked' : single.certStatus.unknown !== undefined ? 'unknown' : 'good';
  return {
    ok: true,
    response: {
      status,
      thisUpdate: single.thisUpdate,
      nextUpdate: single.nextUpdate,
      producedAt: basic.tbsResponseData.producedAt,
      revokedAt: single.certStatus.revoked?.revocationTime,
    },
  };
}

export interface OcspResponseOptions {
  /** The CA that issued the certificate; it signs the response itself (RFC 6960 §4.2.2.2 allows that). */
  issuer: IssuerPems;
  certificatePem: string;
  status: OcspCertStatus;
  thisUpdate?: Date;
  nextUpdate?: Date;
  revokedAt?: Date;
  /** Hash of the CertID; match the request's. */
  certIdHash?: string;
}

/** A signed DER OCSPResponse, for development responders and tests. */
export function createOcspResponse(options: OcspResponseOptions): Buffer {
  const issuerDer = certificateDer(options.issuer.certificatePem);
  const certDer = certificateDer(options.certificatePem);
  const issuerParsed = parseCertificate(issuerDer);
  // Whole seconds: OpenSSL misreads GeneralizedTime fractions when comparing this and next update.
  const seconds = (d: Date): Date => new Date(Math.floor(d.getTime() / 1000) * 1000);
  const thisUpdate = seconds(options.thisUpdate ?? new Date(Date.now() - 60_000));
  const nextUpdate = options.nextUpdate === undefined ? undefined : seconds(options.nextUpdate);
  const certStatus =
    options.status === 'good'
      ? new CertStatus({ good: null })
      : options.status === 'revoked'
        ? new CertStatus({ revoked: new RevokedInfo({ revocationTime: seconds(options.revokedAt ?? thisUpdate) }) })
        : new CertStatus({ unknown: null });
  const tbsResponseData = new ResponseData({
    responderID: new ResponderID({ byName: issuerParsed.tbsCertificate.subject }),
    producedAt: new Date(Math.floor(Date.now() / 1000) * 1000),
    responses: [
      new SingleResponse({
        certID: computeCertId(certDer, issuerDer, options.certIdHash ?? 'sha1'),
        certStatus,
        thisUpdate,
        nextUpdate,
      }),
    ],
  });
  const tbs = Buffer.from(AsnConvert.serialize(tbsResponseData));
  const key = createPublicKey(options.issuer.keyPem);
  const isEc = key.asymmetricKeyType === 'ec';
  const signature = sign('sha256', tbs, { key: options.issuer.keyPem, dsaEncoding: 'der' });
  const basic = new BasicOCSPResponse({
    tbsResponseData,
    signatureAlgorithm: new AlgorithmIdentifier(
      isEc ? { algorithm: '1.2.840.10045.4.3.2' } : { algorithm: '1.2.840.113549.1.1.11', parameters: null },
    ),
    signature: signature.buffer.slice(signature.byteOffset, signature.byteOffset + signature.byteLength),
  });
  const response = new OCSPResponse({
    responseStatus: OCSPResponseStatus.successful,
    responseBytes: new ResponseBytes({
      responseType: id_pkix_ocsp_basic,
      response: new OctetString(AsnConvert.serialize(basic)),
    }),
  });
  return Buffer.from(AsnConvert.serialize(response));
}

/** An unsuccessful OCSPResponse (e.g. `tryLater`), which carries no response bytes. */
export function createOcspErrorResponse(status: Exclude<keyof typeof OCSPResponseStatus, 'successful'>): Buffer {
  return Buffer.from(AsnConvert.serialize(new OCSPResponse({ responseStatus: OCSPResponseStatus[status] })));
}
