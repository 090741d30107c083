import { isAbsolute, resolve } from 'node:path';
import { Secret } from '../../authn/secret.js';
import { BulwarkError } from '../errors.js';
import { readOwnerOnlyFile } from '../owner-only-file.js';

/** Shorter tokens are guessable; longer ones do not fit a header the endpoint accepts. */
export const MIN_TOKEN_LENGTH = 16;
export const MAX_TOKEN_LENGTH = 4096;

/**
 * Reads `metrics.bearer_token_file`: one line of visible ASCII (what an HTTP header carries unchanged), a trailing
 * newline ignored, readable by its owner only. Errors name the setting and the file, never the content.
 */
export function readBearerToken(file: string, baseDir: string): Secret {
  const path = isAbsolute(file) ? file : resolve(baseDir, file);
  const refuse = (why: string, hint?: string): never => {
    throw new BulwarkError('BULWARK_ERR_CONFIG_INVALID', `metrics.bearer_token_file ${path}: ${why}`, undefined, hint);
  };
  let bytes = readOwnerOnlyFile(path, refuse);
  if (bytes.at(-1) === 0x0a) bytes = bytes.subarray(0, bytes.at(-2) === 0x0d ? -2 : -1);
  if (bytes.length < MIN_TOKEN_LENGTH || bytes.length > MAX_TOKEN_LENGTH)
    refuse(`the token must be ${MIN_TOKEN_LENGTH} to ${MAX_TOKEN_LENGTH} characters`);
  for (const byte of bytes) {
    if (byte < 0x21 || byte > 0x7e) refuse('the token must be one line of visible ASCII characters (no spaces)');
  }
  return new Secret(bytes);
}

/**
 * Whether an `Authorization` header carries the token. The comparison is constant time over SHA-256 digests, so
 * neither the position of a difference nor the token's length leaks through timing.
 */
export function bearerMatches(header: string | undefined, token: Secret): boolean {
  if (header === undefined) return false;
  const match = /^Bearer +(\S+) *$/i.exec(header);
  if (!match) return false;
  return token.equals(match[1] as string);
}
