/**
 * RFC 5802 §7 message grammar, server side. Parsers return values; a malformed message is `{ ok: false }` with
 * a reason safe to put in an audit record (it never echoes the client's bytes).
 */

/** Generous bound on any single SCRAM message; real ones are well under 300 bytes. */
export const MAX_MESSAGE_BYTES = 4096;
const MAX_USERNAME_CHARS = 512;
const MAX_NONCE_CHARS = 256;

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

export interface ClientFirst {
  /** The gs2-header exactly as sent (`n,,` or `n,a=...,`), echoed back base64-encoded in `c=`. */
  gs2Header: string;
  authzid: string | undefined;
  username: string;
  clientNonce: string;
  /** client-first-message-bare, part of the AuthMessage. */
  bare: string;
}

export interface ClientFinal {
  channelBinding: string;
  nonce: string;
  proof: Buffer;
  /** client-final-message-without-proof, part of the AuthMessage. */
  withoutProof: string;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(data: Buffer): Parsed<string> {
  if (data.length === 0) return { ok: false, error: 'empty message' };
  if (data.length > MAX_MESSAGE_BYTES) return { ok: false, error: 'message too long' };
  try {
    const text = decoder.decode(data);
    if (text.includes('\0')) return { ok: false, error: 'NUL in message' };
    return { ok: true, value: text };
  } catch {
    return { ok: false, error: 'message is not valid UTF-8' };
  }
}

/** RFC 5802 §5.1 saslname: `,` and `=` travel as `=2C` and `=3D`; any other `=` sequence is invalid. */
export function decodeSaslName(value: string): string | undefined {
  if (value.length === 0 || value.length > MAX_USERNAME_CHARS) return undefined;
  if (/=(?!2C|3D)/.test(value)) return undefined;
  return value.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

export function encodeSaslName(value: string): string {
  return value.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

/** RFC 5802 §7 printable: %x21-2B / %x2D-7E (visible ASCII except `,`). */
function isPrintableNonce(value: string): boolean {
  return value.length > 0 && value.length <= MAX_NONCE_CHARS && /^[\x21-\x2b\x2d-\x7e]+$/.test(value);
}

export function isValidNonce(value: string): boolean {
  return isPrintableNonce(value);
}

export function parseClientFirst(data: Buffer): Parsed<ClientFirst> {
  const text = decodeUtf8(data);
  if (!text.ok) return text;
  const parts = text.value.split(',');
  const [flag, authzField, ...bareParts] = parts;
  if (flag === undefined || authzField === undefined) return { ok: false, error: 'missing gs2-header' };
  // Only "n" is accepted: "p=" asks for channel binding we do not offer, and "y" is refused too so a client
  // that could bind is never silently downgraded (RFC 5802 §6).
  if (flag !== 'n') return { ok: false, error: 'channel binding not supported (gs2-cbind-flag must be "n")' };
  let authzid: string | undefined;
  if (authzField !== '') {
    if (!authzField.startsWith('a=')) return { ok: false, error: 'malformed authzid' };
    authzid = decodeSaslName(authzField.slice(2));
    if (authzid === undefined) return { ok: false, error: 'malformed authzid' };
  }
  const [userField, nonceField] = bareParts;
  if (userField?.startsWith('m=')) return { ok: false, error: 'unsupported mandatory extension' };
  if (userField === undefined || !userField.startsWith('n=')) return { ok: false, error: 'missing username' };
  const username = decodeSaslName(userField.slice(2));
  if (username === undefined) return { ok: false, error: 'malformed username' };
  if (nonceField === undefined || !nonceField.startsWith('r=')) return { ok: false, error: 'missing nonce' };
  const clientNonce = nonceField.slice(2);
  if (!isPrintableNonce(clientNonce)) return { ok: false, error: 'malformed nonce' };
  return {
    ok: true,
    value: {
      gs2Header: `${flag},${authzField},`,
      authzid,
      username,
      clientNonce,
      bare: bareParts.join(','),
    },
  };
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function parseClientFinal(data: Buffer): Parsed<ClientFinal> {
  const text = decodeUtf8(data);
  if (!text.ok) return text;
  const parts = text.value.split(',');
  const [cField, rField] = parts;
  const pField = parts[parts.length - 1];
  if (parts.length < 3 || cField === undefined || rField === undefined || pField === undefined) {
    return { ok: false, error: 'malformed client-final-message' };
  }
  if (!cField.startsWith('c=') || !BASE64.test(cField.slice(2)))
    return { ok: false, error: 'malformed channel binding' };
  if (!rField.startsWith('r=') || !isPrintableNonce(rField.slice(2))) return { ok: false, error: 'malformed nonce' };
  if (!pField.startsWith('p=') || pField.length === 2 || !BASE64.test(pField.slice(2))) {
    return { ok: false, error: 'malformed proof' };
  }
  for (const ext of parts.slice(2, -1)) {
    if (!/^[A-Za-z]=/.test(ext)) return { ok: false, error: 'malformed extension' };
  }
  return {
    ok: true,
    value: {
      channelBinding: cField.slice(2),
      nonce: rField.slice(2),
      proof: Buffer.from(pField.slice(2), 'base64'),
      withoutProof: parts.slice(0, -1).join(','),
    },
  };
}
