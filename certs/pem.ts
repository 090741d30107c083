import { webcrypto } from 'node:crypto';

/**
 * PEM encoding with the labels OpenSSL and Node expect. @peculiar/x509 writes `CRL` where RFC 7468 §5 and
 * OpenSSL use `X509 CRL`, and ends without a newline, which breaks concatenated bundles.
 */
export type PemLabel = 'CERTIFICATE' | 'X509 CRL' | 'PRIVATE KEY' | 'PUBLIC KEY';

export function encodePem(der: ArrayBuffer | Uint8Array, label: PemLabel): string {
  const base64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Every block with `label` in `pem`, as DER, in order. Other blocks are skipped. */
export function decodePemBlocks(pem: string, label: PemLabel): Buffer[] {
  const blocks: Buffer[] = [];
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+?)-----END ${label}-----`, 'g');
  for (const match of pem.matchAll(re)) blocks.push(Buffer.from((match[1] ?? '').replace(/\s+/g, ''), 'base64'));
  return blocks;
}

export async function privateKeyToPem(key: webcrypto.CryptoKey): Promise<string> {
  return encodePem(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}
