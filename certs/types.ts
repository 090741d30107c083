import type { KeyAlgorithm } from './keys.js';

/**
 * When a certificate is valid. `days` counts from `notBefore` (default: now minus five minutes, so clocks a
 * little behind still accept a fresh certificate). Set both dates in the past or future to mint
 * already-expired or not-yet-valid certificates for tests.
 */
export interface Validity {
  notBefore?: Date;
  notAfter?: Date;
  days?: number;
}

/** Distinguished-name parts. `organizationalUnits` may repeat, as real client certificates often do. */
export interface SubjectParts {
  commonName: string;
  organization?: string;
  organizationalUnits?: readonly string[];
  country?: string;
}

/** A certificate and its key, in PEM, as written to disk. */
export interface IssuedCertificate {
  certificatePem: string;
  keyPem: string;
  /** The certificate followed by every intermediate up to (not including) the root: what a server sends. */
  chainPem: string;
  /** Upper-case hex, as OpenSSL and Node print it. */
  serialNumber: string;
  /** Colon-separated upper-case SHA-256 hex, as Node's `fingerprint256`. */
  fingerprint256: string;
  subjectDn: string;
  notBefore: Date;
  notAfter: Date;
}

/** A CA that can sign: its certificate, its key, and its own chain up to the root. */
export interface CertificateAuthority extends IssuedCertificate {
  keyAlgorithm: KeyAlgorithm;
}

/** What signs a new certificate or CRL: the PEMs of a CA. `chainPem` defaults to `certificatePem`. */
export interface IssuerPems {
  certificatePem: string;
  keyPem: string;
  chainPem?: string;
}
