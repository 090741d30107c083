import { createPrivateKey, webcrypto } from 'node:crypto';
import { BulwarkError } from '../src/errors.js';
import { privateKeyToPem } from './pem.js';

/** Key types `bulwark certs` can create. ECDSA P-256 is the default: small, fast, and accepted everywhere. */
export type KeyAlgorithm = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096';

export const KEY_ALGORITHMS: readonly KeyAlgorithm[] = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096'];

export interface KeyPair {
  keys: webcrypto.CryptoKeyPair;
  /** Algorithm parameters to pass as `signingAlgorithm` when this key signs certificates or CRLs. */
  signingAlgorithm: webcrypto.Algorithm | webcrypto.EcdsaParams;
}

function importParams(algorithm: KeyAlgorithm): webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams {
  switch (algorithm) {
    case 'ec-p256':
      return { name: 'ECDSA', namedCurve: 'P-256' };
    case 'ec-p384':
      return { name: 'ECDSA', namedCurve: 'P-384' };
    default:
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  }
}

function signingAlgorithmFor(algorithm: KeyAlgorithm): webcrypto.Algorithm | webcrypto.EcdsaParams {
  switch (algorithm) {
    case 'ec-p256':
      return { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams;
    case 'ec-p384':
      return { name: 'ECDSA', hash: 'SHA-384' } as webcrypto.EcdsaParams;
    default:
      return { name: 'RSASSA-PKCS1-v1_5' };
  }
}

export async function generateKeyPair(algorithm: KeyAlgorithm = 'ec-p256'): Promise<KeyPair> {
  const params = importParams(algorithm);
  const generateParams =
    params.name === 'ECDSA'
      ? params
      : {
          ...params,
          modulusLength: Number(algorithm.slice('rsa-'.length)),
          publicExponent: new Uint8Array([1, 0, 1]),
        };
  const keys = (await webcrypto.subtle.generateKey(generateParams, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  return { keys, signingAlgorithm: signingAlgorithmFor(algorithm) };
}

/** Which of our key algorithms a PEM private key is, so an existing CA key can sign again. */
export function detectKeyAlgorithm(keyPem: string): KeyAlgorithm {
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      'the private key is not a readable PEM key',
      undefined,
      'pass an unencrypted PKCS#8 or SEC1/PKCS#1 PEM key',
    );
  }
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    if (details.namedCurve === 'prime256v1') return 'ec-p256';
    if (details.namedCurve === 'secp384r1') return 'ec-p384';
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0;
    if (bits === 2048 || bits === 3072 || bits === 4096) return `rsa-${bits}` as KeyAlgorithm;
  }
  throw new BulwarkError(
    'BULWARK_ERR_CERT',
    `unsupported key type ${key.asymmetricKeyType ?? 'unknown'}`,
    undefined,
    'use an ECDSA P-256/P-384 or RSA 2048/3072/4096 key',
  );
}

/** Loads a PEM private key (any PKCS#8, SEC1 or PKCS#1 encoding Node reads) as a WebCrypto signing key. */
export async function importSigningKey(keyPem: string): Promise<{ key: webcrypto.CryptoKey; algorithm: KeyAlgorithm }> {
  const algorithm = detectKeyAlgorithm(keyPem);
  const der = createPrivateKey(keyPem).export({ format: 'der', type: 'pkcs8' });
  const key = await webcrypto.subtle.importKey('pkcs8', der, importParams(algorithm), true, ['sign']);
  return { key, algorithm };
}

export { privateKeyToPem, signingAlgorithmFor };
