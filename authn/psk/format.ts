import { BulwarkError } from '../../src/errors.js';

/** OpenSSL limits (ssl.h PSK_MAX_IDENTITY_LEN, PSK_MAX_PSK_LEN); Node enforces the identity one too. */
export const MAX_IDENTITY_BYTES = 128;
export const MAX_KEY_BYTES = 512;
/** Keys shorter than this are accepted (Mosquitto does) but reported: they are guessable offline. */
export const WEAK_KEY_BYTES = 16;

export type PskParseResult =
  { ok: true; keys: Map<string, Buffer>; warnings: string[] } | { ok: false; errors: BulwarkError[] };

const HEX = /^[0-9A-Fa-f]+$/;

/**
 * Parses Mosquitto's `psk_file`: one `identity:hexkey` per line, `#` comments, blank lines ignored, CRLF
 * tolerated. Strict where Mosquitto is lax: the key must be an even number of hex digits, and a repeated
 * identity is an error rather than a silent override. Messages name positions, never key material.
 */
export function parsePskFile(text: string, file: string): PskParseResult {
  const keys = new Map<string, Buffer>();
  const errors: BulwarkError[] = [];
  const warnings: string[] = [];
  const firstSeen = new Map<string, number>();
  const lines = text.split('\n');
  lines.forEach((raw, index) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const lineNo = index + 1;
    const fail = (column: number, message: string, hint: string): void => {
      errors.push(new BulwarkError('BULWARK_ERR_PASSWORD_FILE', message, { file, line: lineNo, column }, hint));
    };
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon < 0) return fail(1, 'expected identity:hexkey', 'separate the identity and the hex key with a colon');
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1).trim();
    if (identity.length === 0) return fail(1, 'empty PSK identity', 'put the identity before the colon');
    if (identity !== identity.trim())
      return fail(
        1,
        'PSK identity has leading or trailing spaces',
        'remove the spaces; clients send the identity byte for byte',
      );
    if (Buffer.byteLength(identity, 'utf8') > MAX_IDENTITY_BYTES) {
      return fail(1, `PSK identity longer than ${MAX_IDENTITY_BYTES} bytes`, 'OpenSSL cannot carry longer identities');
    }
    const keyColumn = colon + 2 + (line.slice(colon + 1).length - line.slice(colon + 1).trimStart().length);
    if (hex.length === 0) return fail(keyColumn, 'empty PSK key', 'write the key as hex digits after the colon');
    if (!HEX.test(hex))
      return fail(keyColumn, 'PSK key is not hexadecimal', 'use only 0-9 and a-f, without 0x or spaces');
    if (hex.length % 2 !== 0)
      return fail(keyColumn, 'PSK key has an odd number of hex digits', 'write whole bytes (two digits each)');
    if (hex.length / 2 > MAX_KEY_BYTES)
      return fail(keyColumn, `PSK key longer than ${MAX_KEY_BYTES} bytes`, 'OpenSSL refuses longer keys');
    const previous = firstSeen.get(identity);
    if (previous !== undefined)
      return fail(1, `duplicate PSK identity (first defined on line ${previous})`, 'keep one line per identity');
    firstSeen.set(identity, lineNo);
    if (hex.length / 2 < WEAK_KEY_BYTES)
      warnings.push(`${file}:${lineNo}:${keyColumn}: PSK key shorter than ${WEAK_KEY_BYTES} bytes (128 bits)`);
    keys.set(identity, Buffer.from(hex, 'hex'));
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, keys, warnings };
}
