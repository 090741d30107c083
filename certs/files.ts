import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { IssuedCertificate } from './types.js';

export interface WrittenFiles {
  certificate: string;
  key: string;
  chain?: string;
}

/**
 * Writes `<base>.crt`, `<base>.key` (mode 0600, created that way so the key is never world-readable, even
 * briefly) and, for certificates below an intermediate, `<base>.chain.crt`.
 */
export async function writeCertificateFiles(issued: IssuedCertificate, basePath: string): Promise<WrittenFiles> {
  await mkdir(dirname(basePath), { recursive: true });
  const files: WrittenFiles = { certificate: `${basePath}.crt`, key: `${basePath}.key` };
  await writeFile(files.key, issued.keyPem, { mode: 0o600 });
  // writeFile keeps the mode of an existing file; a key must never stay readable by others.
  await chmod(files.key, 0o600);
  await writeFile(files.certificate, issued.certificatePem, { mode: 0o644 });
  if (issued.chainPem !== issued.certificatePem) {
    files.chain = `${basePath}.chain.crt`;
    await writeFile(files.chain, issued.chainPem, { mode: 0o644 });
  }
  return files;
}

export async function writePublicFile(path: string, pem: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, pem, { mode: 0o644 });
}
