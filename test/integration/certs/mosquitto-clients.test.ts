import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PSK_CIPHERS, PskStore, createPskServerHooks } from '../../../authn/psk/index.js';
import { X509Authenticator } from '../../../authn/x509/index.js';
import { type TestPki, mintTestPki } from '../../helpers/certs.js';
import { type TestTlsServer, startTlsServer } from '../../unit/transport/tls-harness.js';

const KEY = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';

function run(command: string, args: string[]): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('close', (status) => resolve({ status, output }));
  });
}

/** Answers CONNECT with a v3.1.1 CONNACK (accepted) so mosquitto_pub completes; only the TLS layer is under test. */
function answerMqtt(socket: TLSSocket): void {
  socket.once('data', () => socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00])));
}

describe('mosquitto_pub against certificates minted by certs/', () => {
  let pki: TestPki;
  let dir: string;
  let mtls: TestTlsServer;
  let psk: TestTlsServer;

  beforeAll(async () => {
    pki = await mintTestPki();
    dir = mkdtempSync(join(tmpdir(), 'bulwark-mosq-'));
    mtls = await startTlsServer({
      cert: readFileSync(pki.server.certFile),
      key: readFileSync(pki.server.keyFile),
      ca: readFileSync(pki.caFile),
      crl: readFileSync(pki.crlFile),
      requestCert: true,
      rejectUnauthorized: false,
    });
    writeFileSync(join(dir, 'psk.txt'), `sensor-9:${KEY}\n`);
    const store = new PskStore({ file: join(dir, 'psk.txt'), watch: false, debounceMs: 0, onEvent: () => undefined });
    await store.start();
    const hooks = createPskServerHooks(store);
    psk = await startTlsServer(
      {
        pskCallback: hooks.pskCallback,
        ciphers: PSK_CIPHERS,
        honorCipherOrder: true,
        cert: readFileSync(pki.server.certFile),
        key: readFileSync(pki.server.keyFile),
      },
      '127.0.0.1',
      hooks.identityOf,
    );
  });
  afterAll(async () => {
    await mtls.close();
    await psk.close();
    pki.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const x509 = new X509Authenticator({
    id: 'x509',
    identitySource: 'san_uri',
    useAsUsername: true,
    requireClientIdMatch: false,
    requireUsernameMatch: false,
    groupsFromOu: false,
  });
  const attempt = (tls: Parameters<X509Authenticator['decide']>[0]['tls']) => ({
    listener: 'l',
    clientId: 'c',
    username: undefined,
    password: undefined,
    protocolVersion: 4 as const,
    peer: { address: '127.0.0.1', port: 1 },
    tls,
    authMethod: undefined,
    authData: undefined,
  });

  it('mosquitto_pub --cafile --cert --key completes mTLS and maps to the SPIFFE id', async () => {
    const pub = run('mosquitto_pub', [
      '-h',
      'localhost',
      '-p',
      String(mtls.port),
      '--cafile',
      pki.caFile,
      '--cert',
      pki.clients.good.certFile,
      '--key',
      pki.clients.good.keyFile,
      '-t',
      't',
      '-m',
      'hi',
      '-q',
      '0',
    ]);
    const accepted = await mtls.nextAccepted();
    answerMqtt(accepted.socket);
    expect((await pub).status).toBe(0);
    expect(x509.decide(attempt(accepted.info))).toMatchObject({
      kind: 'allow',
      identity: { username: 'spiffe://bulwark.test/sensor/1' },
    });
  });

  it('mosquitto_pub with the revoked certificate reaches the broker only to be denied as revoked', async () => {
    const pub = run('mosquitto_pub', [
      '-h',
      'localhost',
      '-p',
      String(mtls.port),
      '--cafile',
      pki.caFile,
      '--cert',
      pki.clients.revoked.certFile,
      '--key',
      pki.clients.revoked.keyFile,
      '-t',
      't',
      '-m',
      'hi',
    ]);
    const accepted = await mtls.nextAccepted();
    accepted.socket.destroy();
    await pub;
    expect(x509.decide(attempt(accepted.info))).toEqual({
      kind: 'deny',
      reason: 'notAuthorized',
      detail: 'client certificate is revoked (CERT_REVOKED)',
    });
  });

  it('mosquitto_pub --psk --psk-identity completes a PSK handshake', async () => {
    const pub = run('mosquitto_pub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(psk.port),
      '--psk-identity',
      'sensor-9',
      '--psk',
      KEY,
      '-t',
      't',
      '-m',
      'hi',
    ]);
    const accepted = await psk.nextAccepted();
    answerMqtt(accepted.socket);
    expect((await pub).status).toBe(0);
    expect(accepted.info.pskIdentity).toBe('sensor-9');
  });
});
