/** The certificate library `bulwark certs` and the tests use. */
export {
  createCertificateAuthority,
  issueClientCertificate,
  issueServerCertificate,
  randomSerialNumber,
} from './issue.js';
export type { CaOptions, ClientCertificateOptions, LeafOptions, ServerCertificateOptions } from './issue.js';
export { createCrl } from './crl.js';
export type { CrlOptions, RevokedEntry } from './crl.js';
export { writeCertificateFiles, writePublicFile } from './files.js';
export type { WrittenFiles } from './files.js';
export { KEY_ALGORITHMS, detectKeyAlgorithm } from './keys.js';
export type { KeyAlgorithm } from './keys.js';
export { decodePemBlocks, encodePem } from './pem.js';
export type { CertificateAuthority, IssuedCertificate, IssuerPems, SubjectParts, Validity } from './types.js';
