import 'reflect-metadata';
import { createHash, randomBytes } from 'node:crypto';
import {
  AuthorityInfoAccessExtension,
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  CRLDistributionPointsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  type Extension,
  type JsonGeneralName,
  type JsonName,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509Certificate,
  X509CertificateGenerator,
} from '@peculiar/x509';
import { isIP } from 'node:net';
import { BulwarkError } from '../src/errors.js';
import { checkIssuer } from './issuer.js';
import { type KeyAlgorithm, generateKeyPair, privateKeyToPem, signingAlgorithmFor } from './keys.js';
import { encodePem } from './pem.js';
import type { CertificateAuthority, IssuedCertificate, IssuerPems, SubjectParts, Validity } from './types.js';

const DAY_MS = 86_400_000;
/** Backdating tolerates peers whose clock is a little behind ours. */
const BACKDATE_MS = 5 * 60_000;
/** RFC 5280 §4.1.2.5: GeneralizedTime ends at 9999-12-31T23:59:59Z, the "no well-defined expiration" value. */
const LAST_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59);

export function resolveValidity(
  validity: Validity | undefined,
  defaultDays: number,
  now = Date.now(),
): { notBefore: Date; notAfter: Date } {
  const notBefore = validity?.notBefore ?? new Date(now - BACKDATE_MS);
  const notAfter = validity?.notAfter ?? new Date(notBefore.getTime() + (validity?.days ?? defaultDays) * DAY_MS);
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime()) || notAfter.getTime() > LAST_TIME_MS) {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      'the validity does not fit in a certificate',
      undefined,
      'end it on or before 9999-12-31T23:59:59Z',
    );
  }
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      'the certificate would expire before it becomes valid',
      undefined,
      'make notAfter later than notBefore',
    );
  }
  return { notBefore, notAfter };
}

/** RFC 5280 §4.1.2.2: positive, at most 20 octets; 16 random bytes with the top bit cleared. */
export function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f || 0x01;
  return bytes.toString('hex').toUpperCase();
}

/** Encoded in ASN.1 order (country first), which reads `CN=...,OU=...,O=...,C=...` in RFC 4514 form. */
export function subjectName(parts: SubjectParts): JsonName {
  if (parts.commonName.length === 0) {
    throw new BulwarkError('BULWARK_ERR_CERT', 'the common name must not be empty', undefined, 'pass a --cn value');
  }
  const name: JsonName = [];
  if (parts.country !== undefined) name.push({ C: [parts.country] });
  if (parts.organization !== undefined) name.push({ O: [parts.organization] });
  for (const ou of parts.organizationalUnits ?? []) name.push({ OU: [ou] });
  name.push({ CN: [parts.commonName] });
  return name;
}

function formatFingerprint(der: ArrayBuffer): string {
  return (createHash('sha256').update(Buffer.from(der)).digest('hex').toUpperCase().match(/../g) ?? []).join(':');
}

export function describeCertificate(cert: X509Certificate, keyPem: string, chainAfter: string): IssuedCertificate {
  const certificatePem = encodePem(cert.rawData, 'CERTIFICATE');
  return {
    certificatePem,
    keyPem,
    chainPem: certificatePem + chainAfter,
    serialNumber: cert.serialNumber.toUpperCase(),
    fingerprint256: formatFingerprint(cert.rawData),
    subjectDn: cert.subject,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
  };
}

/** The part of an issuer's chain a leaf's holder sends after its own certificate: intermediates only. */
function intermediatesOf(issuer: IssuerPems, issuerCert: X509Certificate): string {
  const chain = issuer.chainPem ?? issuer.certificatePem;
  const selfSigned = issuerCert.subject === issuerCert.issuer;
  return selfSigned ? '' : chain;
}

interface SignRequest {
  subject: JsonName;
  keyAlgorithm: KeyAlgorithm;
  validity: { notBefore: Date; notAfter: Date };
  extensions: Extension[];
  serialNumber?: string;
}

async function sign(
  request: SignRequest,
  issuer: IssuerPems | undefined,
): Promise<{ cert: X509Certificate; keyPem: string; chainAfter: string }> {
  const pair = await generateKeyPair(request.keyAlgorithm);
  const extensions = [...request.extensions, await SubjectKeyIdentifierExtension.create(pair.keys.publicKey)];
  const serialNumber = request.serialNumber ?? randomSerialNumber();
  if (issuer === undefined) {
    const cert = await X509CertificateGenerator.createSelfSigned({
      serialNumber,
      name: request.subject,
      notBefore: request.validity.notBefore,
      notAfter: request.validity.notAfter,
      keys: pair.keys,
      signingAlgorithm: pair.signingAlgorithm,
      extensions,
    });
    return { cert, keyPem: await privateKeyToPem(pair.keys.privateKey), chainAfter: '' };
  }
  const { certificate: issuerCert, signer } = await checkIssuer(issuer, 'certificate');
  extensions.push(await AuthorityKeyIdentifierExtension.create(issuerCert.publicKey));
  const cert = await X509CertificateGenerator.create({
    serialNumber,
    subject: request.subject,
    issuer: issuerCert.subjectName,
    notBefore: request.validity.notBefore,
    notAfter: request.validity.notAfter,
    publicKey: pair.keys.publicKey,
    signingKey: signer.key,
    signingAlgorithm: signingAlgorithmFor(signer.algorithm),
    extensions,
  });
  return { cert, keyPem: await privateKeyToPem(pair.keys.privateKey), chainAfter: intermediatesOf(issuer, issuerCert) };
}

export interface CaOptions {
  subject: SubjectParts;
  keyAlgorithm?: KeyAlgorithm;
  validity?: Validity;
  /** Signs an intermediate CA with this CA instead of creating a self-signed root. */
  issuer?: IssuerPems;
  /** How many intermediate CAs may follow this one (BasicConstraints pathLenConstraint). */
  pathLength?: number;
}

/** A development root CA (self-signed), or an intermediate CA when `issuer` is given. Default validity 10 years. */
export async function createCertificateAuthority(options: CaOptions): Promise<CertificateAuthority> {
  const keyAlgorithm = options.keyAlgorithm ?? 'ec-p256';
  if (options.pathLength !== undefined && !(Number.isSafeInteger(options.pathLength) && options.pathLength >= 0)) {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      `path length ${options.pathLength} is not a whole number, 0 or more`,
      undefined,
      'RFC 5280 §4.2.1.9 pathLenConstraint counts intermediate CAs',
    );
  }
  const { cert, keyPem, chainAfter } = await sign(
    {
      subject: subjectName(options.subject),
      keyAlgorithm,
      validity: resolveValidity(options.validity, 3650),
      extensions: [
        new BasicConstraintsExtension(true, options.pathLength, true),
        new KeyUsagesExtension(
          KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign | KeyUsageFlags.digitalSignature,
          true,
        ),
      ],
    },
    options.issuer,
  );
  return { ...describeCertificate(cert, keyPem, chainAfter), keyAlgorithm };
}

export interface LeafOptions {
  issuer: IssuerPems;
  keyAlgorithm?: KeyAlgorithm;
  validity?: Validity;
  serialNumber?: string;
  /** Authority Information Access OCSP responder URL, for OCSP stapling. */
  ocspUrl?: string;
  /** CRL distribution point URL. */
  crlUrl?: string;
}

export interface ServerCertificateOptions extends LeafOptions {
  /** Defaults to the first DNS name or IP address. */
  subject?: SubjectParts;
  dnsNames?: readonly string[];
  ipAddresses?: readonly string[];
}

export interface ClientCertificateOptions extends LeafOptions {
  subject: SubjectParts;
  dnsNames?: readonly string[];
  /** URI SANs such as SPIFFE ids (`spiffe://example.org/sensor/1`). */
  uris?: readonly string[];
  emails?: readonly string[];
}

function commonExtensions(
  options: LeafOptions,
  keyAlgorithm: KeyAlgorithm,
  usage: ExtendedKeyUsage,
  names: JsonGeneralName[],
): Extension[] {
  // RFC 5480 §3: an ECDSA key only signs; keyEncipherment is for RSA key transport (TLS 1.2 RSA key exchange).
  const keyUsage = keyAlgorithm.startsWith('ec-')
    ? KeyUsageFlags.digitalSignature
    : KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment;
  const extensions: Extension[] = [
    new BasicConstraintsExtension(false, undefined, true),
    new KeyUsagesExtension(keyUsage, true),
    new ExtendedKeyUsageExtension([usage]),
  ];
  if (names.length > 0) extensions.push(new SubjectAlternativeNameExtension(names));
  if (options.ocspUrl !== undefined) extensions.push(new AuthorityInfoAccessExtension({ ocsp: [options.ocspUrl] }));
  if (options.crlUrl !== undefined) extensions.push(new CRLDistributionPointsExtension([options.crlUrl]));
  return extensions;
}

function checkIp(address: string): string {
  if (isIP(address) === 0) {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      `${JSON.stringify(address)} is not an IP address`,
      undefined,
      'pass IPv4 or IPv6 literals to --ip',
    );
  }
  return address;
}

const LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/** RFC 5280 §4.2.1.6 / RFC 1034 §3.5 preferred name syntax (IDNs as A-labels), with a leading `*.` wildcard. */
function isDnsName(name: string, allowWildcard: boolean): boolean {
  const labels = (allowWildcard && name.startsWith('*.') ? name.slice(2) : name).split('.');
  return name.length <= 253 && labels.length > 0 && labels.every((label) => LABEL.test(label));
}

function checkDns(name: string): string {
  if (!isDnsName(name, true)) {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      `${JSON.stringify(name)} is not a DNS name`,
      undefined,
      'pass letters, digits and hyphens in dot-separated labels (IDNs as xn-- names), optionally starting with *.',
    );
  }
  return name;
}

/** RFC 5280 §4.2.1.6: an rfc822Name is an RFC 5321 Mailbox, local part as a dot-atom here (no quoted strings). */
const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;

function checkEmail(address: string): string {
  const at = address.lastIndexOf('@');
  const local = address.slice(0, at);
  if (at <= 0 || local.length > 64 || !LOCAL_PART.test(local) || !isDnsName(address.slice(at + 1), false)) {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      `${JSON.stringify(address)} is not an email address`,
      undefined,
      'pass an address such as sensor-1@example.org to --email',
    );
  }
  return address;
}

/** A TLS server certificate (EKU serverAuth) with DNS and IP SANs. Default validity 1 year. */
export async function issueServerCertificate(options: ServerCertificateOptions): Promise<IssuedCertificate> {
  const dnsNames = (options.dnsNames ?? []).map(checkDns);
  const ipAddresses = (options.ipAddresses ?? []).map(checkIp);
  const commonName = options.subject?.commonName ?? dnsNames[0] ?? ipAddresses[0];
  if (commonName === undefined) {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      'a server certificate needs a DNS name or an IP address',
      undefined,
      'pass --dns or --ip',
    );
  }
  const keyAlgorithm = options.keyAlgorithm ?? 'ec-p256';
  const names: JsonGeneralName[] = [
    ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...ipAddresses.map((value) => ({ type: 'ip' as const, value })),
  ];
  const { cert, keyPem, chainAfter } = await sign(
    {
      subject: subjectName({ ...options.subject, commonName }),
      keyAlgorithm,
      validity: resolveValidity(options.validity, 365),
      extensions: commonExtensions(options, keyAlgorithm, ExtendedKeyUsage.serverAuth, names),
      serialNumber: options.serialNumber,
    },
    options.issuer,
  );
  return describeCertificate(cert, keyPem, chainAfter);
}

/** A TLS client certificate (EKU clientAuth) with CN, OUs and optional DNS, URI and email SANs. Default 1 year. */
export async function issueClientCertificate(options: ClientCertificateOptions): Promise<IssuedCertificate> {
  const keyAlgorithm = options.keyAlgorithm ?? 'ec-p256';
  const names: JsonGeneralName[] = [
    ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value: checkDns(value) })),
    ...(options.uris ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(options.emails ?? []).map((value) => ({ type: 'email' as const, value: checkEmail(value) })),
  ];
  for (const uri of options.uris ?? []) {
    if (!URL.canParse(uri))
      throw new BulwarkError(
        'BULWARK_ERR_CERT',
        `${JSON.stringify(uri)} is not a URI`,
        undefined,
        'pass an absolute URI such as spiffe://example.org/sensor/1',
      );
  }
  const { cert, keyPem, chainAfter } = await sign(
    {
      subject: subjectName(options.subject),
      keyAlgorithm,
      validity: resolveValidity(options.validity, 365),
      extensions: commonExtensions(options, keyAlgorithm, ExtendedKeyUsage.clientAuth, names),
      serialNumber: options.serialNumber,
    },
    options.issuer,
  );
  return describeCertificate(cert, keyPem, chainAfter);
}
