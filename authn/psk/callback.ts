import type { TLSSocket } from 'node:tls';
import type { PskStore } from './store.js';

/** Which PSK identity each server socket negotiated; Node offers no getter, so the callback remembers it. */
export interface PskServerHooks {
  /** Pass as `pskCallback` to `tls.createServer` (Node calls it with the server-side TLSSocket). */
  pskCallback: (socket: TLSSocket, identity: string) => Buffer | null;
  /** The identity whose key the handshake on `socket` used, once it completed. */
  identityOf(socket: TLSSocket): string | undefined;
}

/**
 * A PSK lookup for Node TLS servers. An unknown identity returns null, which makes OpenSSL fail the
 * handshake (`tlsClientError`). The key is looked up per handshake, so a reloaded file applies at once.
 */
export function createPskServerHooks(store: Pick<PskStore, 'lookup'>): PskServerHooks {
  const identities = new WeakMap<TLSSocket, string>();
  return {
    pskCallback: (socket, identity) => {
      const key = store.lookup(identity);
      if (key === undefined) return null;
      identities.set(socket, identity);
      return key;
    },
    identityOf: (socket) => identities.get(socket),
  };
}

/**
 * Cipher list for a listener serving PSK clients. TLS 1.3 PSK under OpenSSL 3.0 works only with SHA-256
 * suites, and on a listener that also serves certificates the server must prefer them (`honorCipherOrder`),
 * or it picks a SHA-384 suite and the PSK handshake fails.
 */
export const PSK_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_256_GCM_SHA384',
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
