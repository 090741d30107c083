import type { TLSSocket } from 'node:tls';
import type { PskStore } from './store.js';

/** Which PSK identity each server socket negotiated; Node offers no getter, so the callback remembers it. */
export interface PskServerHooks {
  /** Pass as `pskCallback` to `tls.createServer` (Node calls it with the server-side TLSSocket). */
  pskCallback: (socket: TLSSocket, identity: string) => Buffer | null;
  /**
   * The identity whose key the completed handshake on `socket` used, or undefined when the session was not
   * established with that key (see {@link pskWasUsed}).
   */
  identityOf(socket: TLSSocket): string | undefined;
}

/**
 * Whether the completed handshake on `socket` was keyed by a PSK rather than by a certificate.
 *
 * The callback running proves nothing: under TLS 1.3 OpenSSL asks for the key before it checks that the PSK's
 * hash matches the chosen suite, and on a mismatch it drops the PSK without checking the binder and completes
 * a certificate handshake. So the session itself must show the PSK: a TLS 1.3 handshake that used a PSK is
 * a resumption to OpenSSL (`SSL_session_reused`), a certificate one is not; a TLS 1.2 handshake used the PSK
 * only if a PSK key exchange was negotiated.
 */
export function pskWasUsed(socket: TLSSocket): boolean {
  const protocol = socket.getProtocol();
  if (protocol === 'TLSv1.3') return socket.isSessionReused();
  if (protocol === 'TLSv1.2') return /(^|_)PSK_/.test(socket.getCipher()?.standardName ?? '');
  return false;
}

/**
 * A PSK lookup for Node TLS servers. An unknown identity returns null: a TLS 1.2 PSK-only handshake then
 * fails, and a TLS 1.3 client falls back to a certificate handshake without a PSK identity. The key is looked
 * up per handshake, so a reloaded file applies at once.
 */
export function createPskServerHooks(store: Pick<PskStore, 'lookup'>): PskServerHooks {
  const identities = new WeakMap<TLSSocket, string>();
  return {
    pskCallback: (socket, identity) => {
      const key = store.lookup(identity);
      // Only the last identity OpenSSL asked about can be the one it used, so an earlier answer must not linger.
      if (key === undefined) {
        identities.delete(socket);
        return null;
      }
      identities.set(socket, identity);
      return key;
    },
    identityOf: (socket) => {
      const identity = identities.get(socket);
      return identity !== undefined && pskWasUsed(socket) ? identity : undefined;
    },
  };
}

/** TLS 1.3 suites a PSK from the callback can key: OpenSSL gives such a PSK SHA-256 as its hash. */
const PSK_TLS13_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256'];

/**
 * Cipher list for a listener serving PSK clients. TLS 1.3 is pinned to the SHA-256 suites: a SHA-384 suite
 * makes OpenSSL drop a PSK it has already looked up (no binder check), which is how a client without the key
 * once reached MQTT with an identity; with only SHA-256 suites a wrong key fails the handshake. Certificate
 * clients that offer only `TLS_AES_256_GCM_SHA384` are refused on such a listener.
 */
export const PSK_CIPHERS = [
  ...PSK_TLS13_SUITES,
  'ECDHE-PSK-AES128-CBC-SHA256',
  'ECDHE-PSK-CHACHA20-POLY1305',
  'DHE-PSK-AES128-GCM-SHA256',
  'DHE-PSK-AES256-GCM-SHA384',
  'PSK-AES128-GCM-SHA256',
  'PSK-AES256-GCM-SHA384',
  'PSK-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * An operator's cipher list made safe for a PSK listener: TLS 1.3 suites other than the SHA-256 ones are
 * removed, and if none is left (or none was listed, which would let Node add its SHA-384 default) the
 * SHA-256 ones are added.
 */
export function pskSafeCiphers(ciphers: string): string {
  const entries = ciphers
    .split(':')
    .map((c) => c.trim())
    .filter((c) => c !== '');
  const tls12 = entries.filter((c) => !c.startsWith('TLS_'));
  const tls13 = entries.filter((c) => PSK_TLS13_SUITES.includes(c));
  return [...(tls13.length > 0 ? tls13 : PSK_TLS13_SUITES), ...tls12].join(':');
}
