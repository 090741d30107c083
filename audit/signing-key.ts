import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BulwarkError } from '../src/errors.js';
import { readOwnerOnlyFile } from '../src/owner-only-file.js';

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** base64url SHA-256 of the SPKI DER encoding: what checkpoints name and `verify` prints. */
  keyId: string;
  /** SPKI DER, base64. */
  publicKeyDer: string;
}

/** `audit.signing_key_file`, or the key generated under the data directory when none is configured. */
export function signingKeyFile(configured: string | undefined, dataDir: string): string {
  return configured ?? join(dataDir, 'audit-signing.key');
}

/** `audit-signing.key` → `audit-signing.pub`; any other name gets `.pub` appended. */
export function publicKeyPathFor(keyFile: string): string {
  return keyFile.endsWith('.key') ? `${keyFile.slice(0, -'.key'.length)}.pub` : `${keyFile}.pub`;
}

export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ format: 'der', type: 'spki' }))
    .digest('base64url');
}

/**
 * Loads the checkpoint signing key, or creates it when `create` is set and the file does not exist yet (the
 * default key under the data directory). A created key is written 0600 with O_EXCL so a pre-planted symlink or
 * a concurrent start cannot redirect it; its public key goes beside it for reviewers. `ownFile` (by default when
 * `create` is set): the key is the broker's own in the data directory, so a symbolic link there is refused.
 */
export function loadSigningKey(keyFile: string, create: boolean, ownFile = create): SigningKey {
  if (!existsSync(keyFile)) {
    if (!create) {
      throw new BulwarkError(
        'BULWARK_ERR_AUDIT',
        `audit signing key ${keyFile} does not exist`,
        undefined,
        'create one with `openssl genpkey -algorithm ed25519 -out FILE` or leave audit.signing_key_file unset to let the broker generate one',
      );
    }
    const existingPub = publicKeyPathFor(keyFile);
    if (existsSync(existingPub)) {
      // The log was signed with a key that is gone: a new one would sign over whatever happened to the old.
      throw new BulwarkError(
        'BULWARK_ERR_AUDIT',
        `audit signing key ${keyFile} is missing, but its public key ${existingPub} is there: the log was signed with a key that is gone`,
        undefined,
        `restore the key from its backup; or, to sign from now on with a new key, move ${existingPub} aside (keep it: verify needs it for the older checkpoints) and start again`,
      );
    }
    mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
  }
  const refuse = (why: string, hint?: string): never => {
    throw new BulwarkError('BULWARK_ERR_AUDIT', `audit signing key ${keyFile}: ${why}`, undefined, hint);
  };
  // The broker's own key in data_dir must not be read through a link planted there; a configured one may be one.
  const pem = readOwnerOnlyFile(keyFile, refuse, { noFollow: ownFile });
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    // The parser's message could quote key material; say only what is wrong.
    throw new BulwarkError('BULWARK_ERR_AUDIT', `audit signing key ${keyFile} is not a PEM private key`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new BulwarkError(
      'BULWARK_ERR_AUDIT',
      `audit signing key ${keyFile} is ${privateKey.asymmetricKeyType ?? 'unknown'}, not Ed25519`,
      undefined,
      'generate one with `openssl genpkey -algorithm ed25519`',
    );
  }
  const publicKey = createPublicKey(privateKey);
  const publicPem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
  const pubFile = publicKeyPathFor(keyFile);
  if (!existsSync(pubFile)) writeFileSync(pubFile, publicPem, { mode: 0o644, flag: 'wx' });
  else if (readFileSync(pubFile, 'utf8').trim() !== publicPem.trim()) {
    // A replaced key would quietly take over the reviewers' copy; rotation is an operator's deliberate step.
    throw new BulwarkError(
      'BULWARK_ERR_AUDIT',
      `audit signing key ${keyFile} does not match its public key ${pubFile}`,
      undefined,
      `if the key was rotated on purpose, move ${pubFile} aside (keep it: verify needs it for the older checkpoints) and start again; else restore the key that matches it`,
    );
  }
  return {
    privateKey,
    publicKey,
    keyId: keyIdOf(publicKey),
    publicKeyDer: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
  };
}

/** Reads a reviewer's trusted public key (SPKI PEM, or the private key file itself). */
export function loadPublicKey(file: string): { keyId: string; publicKey: KeyObject } {
  const text = readFileSync(file);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey(text);
  } catch {
    throw new BulwarkError('BULWARK_ERR_AUDIT', `${file} is not a PEM public key`);
  }
  if (publicKey.asymmetricKeyType !== 'ed25519') {
    throw new BulwarkError('BULWARK_ERR_AUDIT', `${file} is not an Ed25519 public key`);
  }
  return { keyId: keyIdOf(publicKey), publicKey };
}
