import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectAttempt, TlsPeerInfo } from '../../../../authn/types.js';
import {
  PSK_CIPHERS,
  PskAuthenticator,
  PskStore,
  createPskServerHooks,
  pskSafeCiphers,
} from '../../../../authn/psk/index.js';
import { type TestPki, mintTestPki } from '../../../helpers/certs.js';
import { type TestTlsServer, connectClient, startTlsServer } from '../../transport/tls-harness.js';

const KEY = '7b3a5f0c9d2e4a61b8c7d6e5f4a3b2c1';
const signal = new AbortController().signal;

function attempt(tls: TlsPeerInfo, username?: string): ConnectAttempt {
  return {
    listener: 'psk',
    clientId: 'c1',
    username,
    password: undefined,
    protocolVersion: 4,
    peer: { address: '::1', port: 1 },
    tls,
    authMethod: undefined,
    authData: undefined,
  };
}

describe('TLS-PSK handshakes on a listener serving both PSK and certificate clients', () => {
  let dir: string;
  let pki: TestPki;
  let store: PskStore;
  let server: TestTlsServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bulwark-psk-hs-'));
    pki = await mintTestPki();
    writeFileSync(join(dir, 'psk.txt'), `sensor-7:${KEY}\n`);
    store = new PskStore({ file: join(dir, 'psk.txt'), watch: false, debounceMs: 0, onEvent: () => undefined });
    await store.start();
    const hooks = createPskServerHooks(store);
    server = await startTlsServer(
      {
        cert: readFileSync(pki.server.certFile),
        key: readFileSync(pki.server.keyFile),
        pskCallback: hooks.pskCallback,
        pskIdentityHint: 'bulwark',
        ciphers: PSK_CIPHERS,
        honorCipherOrder: true,
        minVersion: 'TLSv1.2',
      },
      '::1',
      hooks.identityOf,
    );
  });
  afterAll(async () => {
    await server.close();
    pki.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const pskClient = (identity: string, key: string, version: 'TLSv1.2' | 'TLSv1.3') =>
    connectClient(server, {
      minVersion: version,
      maxVersion: version,
      ciphers: version === 'TLSv1.3' ? 'TLS_AES_128_GCM_SHA256' : 'PSK-AES128-GCM-SHA256:ECDHE-PSK-AES128-CBC-SHA256',
      pskCallback: () => ({ identity, psk: Buffer.from(key, 'hex') }),
      checkServerIdentity: () => undefined,
    });

  it.each(['TLSv1.2', 'TLSv1.3'] as const)(
    'completes a %s PSK handshake and the psk authenticator allows the identity as username',
    async (version) => {
      const client = await pskClient('sensor-7', KEY, version);
      expect(client.ok).toBe(true);
      const { info } = await server.nextAccepted();
      if (client.ok) client.socket.end();
      expect(info.protocol).toBe(version);
      expect(info.pskIdentity).toBe('sensor-7');
      const outcome = await new PskAuthenticator({ id: 'psk', useIdentityAsUsername: true, store }).authenticate(
        attempt(info, 'ignored'),
        signal,
      );
      expect(outcome).toMatchObject({
        kind: 'allow',
        identity: { username: 'sensor-7', authenticator: 'psk', attributes: { 'psk.identity': 'sensor-7' } },
      });
      // Without the identity as username there is none: the key does not vouch for the one the client wrote.
      const unnamed = await new PskAuthenticator({ id: 'psk', useIdentityAsUsername: false, store }).authenticate(
        attempt(info, 'admin'),
        signal,
      );
      expect(unnamed).toMatchObject({ kind: 'allow', identity: { username: undefined } });
    },
  );

  it.each(['TLSv1.2', 'TLSv1.3'] as const)(
    'fails a %s handshake with an unknown identity or a wrong key',
    async (version) => {
      const before = server.clientErrors.length;
      const unknown = await pskClient('intruder', KEY, version);
      const wrongKey = await pskClient('sensor-7', KEY.replace('7b', '7c'), version);
      expect(unknown.ok && wrongKey.ok).toBe(false);
      // The server saw both handshakes fail; neither produced a connection.
      await new Promise<void>((resolve) => {
        const check = (): void => (server.clientErrors.length >= before + 2 ? resolve() : void setTimeout(check, 5));
        check();
      });
      expect(server.clientErrors.length).toBeGreaterThanOrEqual(before + 2);
    },
  );

  it('refuses a TLS 1.3 client with a wrong key that offers only TLS_AES_256_GCM_SHA384', async () => {
    const before = server.clientErrors.length;
    const client = await connectClient(server, {
      minVersion: 'TLSv1.3',
      ciphers: 'TLS_AES_256_GCM_SHA384',
      pskCallback: () => ({ identity: 'sensor-7', psk: Buffer.alloc(16, 0x41) }),
      rejectUnauthorized: false,
    });
    expect(client.ok).toBe(false);
    await new Promise<void>((resolve) => {
      const check = (): void => (server.clientErrors.length > before ? resolve() : void setTimeout(check, 5));
      check();
    });
  });

  it('keeps TLS 1.3 on SHA-256 suites for an operator cipher list', () => {
    expect(pskSafeCiphers('TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:PSK-AES128-GCM-SHA256')).toBe(
      'TLS_CHACHA20_POLY1305_SHA256:PSK-AES128-GCM-SHA256',
    );
    expect(pskSafeCiphers('PSK-AES128-GCM-SHA256')).toBe(
      'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:PSK-AES128-GCM-SHA256',
    );
  });

  it('still serves certificate clients under TLS 1.3, and the psk authenticator ignores them', async () => {
    const client = await connectClient(server, { ca: readFileSync(pki.caFile) });
    expect(client.ok).toBe(true);
    const { info } = await server.nextAccepted();
    if (client.ok) client.socket.end();
    expect(info.pskIdentity).toBeUndefined();
    expect(info.protocol).toBe('TLSv1.3');
    expect(
      await new PskAuthenticator({ id: 'psk', useIdentityAsUsername: true }).authenticate(attempt(info), signal),
    ).toEqual({
      kind: 'ignore',
      detail: 'TLS session did not use a PSK',
    });
  });

  it('denies an identity removed from the file after its handshake', async () => {
    const client = await pskClient('sensor-7', KEY, 'TLSv1.3');
    const { info } = await server.nextAccepted();
    if (client.ok) client.socket.end();
    const other = new PskStore({ file: join(dir, 'other.txt'), watch: false, debounceMs: 0, onEvent: () => undefined });
    writeFileSync(join(dir, 'other.txt'), `someone-else:${KEY}\n`);
    await other.start();
    expect(
      await new PskAuthenticator({ id: 'psk', useIdentityAsUsername: true, store: other }).authenticate(
        attempt(info),
        signal,
      ),
    ).toEqual({
      kind: 'deny',
      reason: 'notAuthorized',
      detail: 'PSK identity "sensor-7" is no longer in the PSK file',
    });
  });

  it('accepts openssl s_client with -psk and -psk_identity under TLS 1.2', async () => {
    const child = spawn(
      'openssl',
      [
        's_client',
        '-connect',
        `[::1]:${server.port}`,
        '-tls1_2',
        '-psk_identity',
        'sensor-7',
        '-psk',
        KEY,
        '-cipher',
        'PSK-AES128-GCM-SHA256',
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const accepted = await server.nextAccepted();
    expect(accepted.info.pskIdentity).toBe('sensor-7');
    expect(accepted.info.cipher).toBe('PSK-AES128-GCM-SHA256');
    (accepted.socket as TLSSocket).end();
    child.stdin.end();
    await new Promise((resolve) => child.on('close', resolve));
  });
});

describe('a PSK identity the session did not use', () => {
  let dir: string;
  let pki: TestPki;
  let server: TestTlsServer;

  // A server that lets a SHA-384 suite win, as an unpinned list did: OpenSSL looks the key up, then drops it.
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bulwark-psk-unused-'));
    pki = await mintTestPki();
    writeFileSync(join(dir, 'psk.txt'), `sensor-7:${KEY}\n`);
    const store = new PskStore({ file: join(dir, 'psk.txt'), watch: false, debounceMs: 0, onEvent: () => undefined });
    await store.start();
    const hooks = createPskServerHooks(store);
    server = await startTlsServer(
      {
        cert: readFileSync(pki.server.certFile),
        key: readFileSync(pki.server.keyFile),
        pskCallback: hooks.pskCallback,
        minVersion: 'TLSv1.3',
      },
      '::1',
      hooks.identityOf,
    );
  });
  afterAll(async () => {
    await server.close();
    pki.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is not reported when a wrong key completes a certificate handshake under TLS_AES_256_GCM_SHA384', async () => {
    const client = await connectClient(server, {
      ciphers: 'TLS_AES_256_GCM_SHA384',
      pskCallback: () => ({ identity: 'sensor-7', psk: Buffer.alloc(16, 0x41) }),
      rejectUnauthorized: false,
    });
    const { info } = await server.nextAccepted();
    if (client.ok) client.socket.end();
    expect(info.cipher).toBe('TLS_AES_256_GCM_SHA384');
    expect(info.pskIdentity).toBeUndefined();
    expect(
      await new PskAuthenticator({ id: 'psk', useIdentityAsUsername: true }).authenticate(attempt(info), signal),
    ).toEqual({ kind: 'ignore', detail: 'TLS session did not use a PSK' });
  });

  it('is reported when the right key keyed a TLS 1.3 session', async () => {
    const client = await connectClient(server, {
      ciphers: 'TLS_AES_128_GCM_SHA256',
      pskCallback: () => ({ identity: 'sensor-7', psk: Buffer.from(KEY, 'hex') }),
      rejectUnauthorized: false,
    });
    const { info } = await server.nextAccepted();
    if (client.ok) client.socket.end();
    expect(info.pskIdentity).toBe('sensor-7');
  });
});
