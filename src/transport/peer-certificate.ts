import type { DetailedPeerCertificate, PeerCertificate as NodePeerCertificate, TLSSocket } from 'node:tls';
import type { PeerCertificate, TlsPeerInfo } from '../../authn/types.js';

/** Node's subject/issuer objects: repeated attributes (several OUs) arrive as arrays. */
type NodeName = Record<string, string | string[] | undefined>;

/** Short names Node uses, as RFC 4514 §3 writes them; other attribute types pass through unchanged. */
function valuesOf(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

/** RFC 4514 §2.4 escaping of one attribute value. */
export function escapeDnValue(value: string): string {
  let escaped = value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`).replace(/\0/g, '\\00');
  if (escaped.startsWith(' ') || escaped.startsWith('#')) escaped = `\\${escaped}`;
  if (escaped.endsWith(' ') && !escaped.endsWith('\\ ')) escaped = `${escaped.slice(0, -1)}\\ `;
  return escaped;
}

/**
 * RFC 4514 string of a Node name object. Node lists attributes in certificate (ASN.1) order, root-most first;
 * RFC 4514 writes the last RDN first, so the result reads `CN=dev1,OU=sensors,O=Acme,C=DE`.
 */
export function formatDn(name: NodeName | undefined): string {
  if (name === undefined) return '';
  const parts: string[] = [];
  for (const [type, value] of Object.entries(name)) {
    for (const v of valuesOf(value)) parts.push(`${type}=${escapeDnValue(v)}`);
  }
  return parts.reverse().join(',');
}

export interface SubjectAltNames {
  dns: string[];
  uri: string[];
  email: string[];
  ip: string[];
}

/**
 * Parses Node's `subjectaltname` string (`DNS:a, URI:spiffe://x, email:e@x, IP Address:127.0.0.1`). Since the
 * CVE-2021-44532 fix Node writes a value containing `,` or `"` as a JSON string, so a name cannot smuggle a
 * second entry (`DNS:"a, URI:evil"`). Unknown kinds (`othername`, `DirName`, ...) are skipped.
 */
export function parseSubjectAltName(text: string | undefined): SubjectAltNames {
  const result: SubjectAltNames = { dns: [], uri: [], email: [], ip: [] };
  if (text === undefined || text.length === 0) return result;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const kind = text.slice(i, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      // A JSON string: find its closing quote, honouring backslash escapes.
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const literal = text.slice(colon + 1, j + 1);
      try {
        value = JSON.parse(literal) as string;
      } catch {
        value = literal;
      }
      next = j + 1;
    } else {
      const comma = text.indexOf(', ', colon + 1);
      next = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, next);
    }
    switch (kind) {
      case 'DNS':
        result.dns.push(value);
        break;
      case 'URI':
        result.uri.push(value);
        break;
      case 'email':
        result.email.push(value);
        break;
      case 'IP Address':
        result.ip.push(value);
        break;
      default:
        break;
    }
    i = text.startsWith(', ', next) ? next + 2 : next + 1;
  }
  return result;
}

/** Converts `getPeerCertificate()` output into the broker's `PeerCertificate`; undefined when there is none. */
export function toPeerCertificate(
  cert: NodePeerCertificate | DetailedPeerCertificate | undefined,
): PeerCertificate | undefined {
  // Node returns `{}` when the peer sent no certificate.
  if (cert === undefined || cert === null || Object.keys(cert).length === 0 || cert.raw === undefined) return undefined;
  const subject = cert.subject as unknown as NodeName | undefined;
  const issuer = cert.issuer as unknown as NodeName | undefined;
  const san = parseSubjectAltName(cert.subjectaltname);
  const cn = valuesOf(subject?.CN);
  return {
    // With several CNs the most specific (last in certificate order) is the one RFC 4514 prints first.
    subjectCn: cn.at(-1),
    subjectDn: formatDn(subject),
    issuerDn: formatDn(issuer),
    serialNumber: cert.serialNumber.toUpperCase(),
    fingerprint256: cert.fingerprint256,
    organizationalUnits: valuesOf(subject?.OU),
    sanDns: san.dns,
    sanUri: san.uri,
    sanEmail: san.email,
    sanIp: san.ip,
    validFrom: cert.valid_from,
    validTo: cert.valid_to,
  };
}

/** Reads what the handshake established. `pskIdentity` comes from the PSK callback, which sees the identity. */
export function tlsPeerInfo(socket: TLSSocket, pskIdentity?: string): TlsPeerInfo {
  const error = socket.authorizationError as unknown;
  const info: TlsPeerInfo = {
    authorized: socket.authorized,
    certificate: toPeerCertificate(socket.getPeerCertificate(true)),
    protocol: socket.getProtocol() ?? undefined,
    cipher: socket.getCipher()?.name,
  };
  // Node types authorizationError as Error, but at runtime it is OpenSSL's code string (e.g. CERT_HAS_EXPIRED).
  if (error !== undefined && error !== null)
    info.authorizationError =
      error instanceof Error ? ((error as NodeJS.ErrnoException).code ?? error.message) : String(error);
  if (pskIdentity !== undefined) info.pskIdentity = pskIdentity;
  return info;
}

/** Why a client certificate was refused, in the words an operator searches the audit log for. */
export type CertificateRefusal =
  | 'missing'
  | 'unknown_ca'
  | 'expired'
  | 'not_yet_valid'
  | 'revoked'
  | 'crl_unavailable'
  | 'crl_expired'
  | 'bad_signature'
  | 'invalid';

const REFUSALS: Record<string, CertificateRefusal> = {
  UNABLE_TO_GET_ISSUER_CERT: 'unknown_ca',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unknown_ca',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unknown_ca',
  SELF_SIGNED_CERT_IN_CHAIN: 'unknown_ca',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'unknown_ca',
  CERT_UNTRUSTED: 'unknown_ca',
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not_yet_valid',
  CERT_REVOKED: 'revoked',
  UNABLE_TO_GET_CRL: 'crl_unavailable',
  CRL_HAS_EXPIRED: 'crl_expired',
  CRL_NOT_YET_VALID: 'crl_expired',
  CERT_SIGNATURE_FAILURE: 'bad_signature',
  CRL_SIGNATURE_FAILURE: 'bad_signature',
};

/**
 * Classifies an unauthorized handshake. Node reports a missing client certificate as
 * `UNABLE_TO_GET_ISSUER_CERT` with no certificate, so absence is checked first. Undefined when authorized.
 */
export function classifyRefusal(
  info: TlsPeerInfo,
): { refusal: CertificateRefusal; code: string; message: string } | undefined {
  if (info.authorized) return undefined;
  const code = info.authorizationError ?? 'UNKNOWN';
  if (info.certificate === undefined) return { refusal: 'missing', code, message: 'no client certificate presented' };
  const refusal = REFUSALS[code] ?? 'invalid';
  const messages: Record<CertificateRefusal, string> = {
    missing: 'no client certificate presented',
    unknown_ca: 'client certificate is not issued by a trusted CA',
    expired: 'client certificate has expired',
    not_yet_valid: 'client certificate is not yet valid',
    revoked: 'client certificate is revoked',
    crl_unavailable: 'no CRL for a CA in the client certificate chain',
    crl_expired: 'the CRL for the client certificate chain has expired or is not yet valid',
    bad_signature: 'a signature in the client certificate chain does not verify',
    invalid: 'client certificate was refused',
  };
  return { refusal, code, message: `${messages[refusal]} (${code})` };
}
