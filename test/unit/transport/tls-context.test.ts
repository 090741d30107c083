import { spawn } from 'node:child_process';
import { copyFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCrl } from '../../../certs/index.js';
import { classifyRefusal } from '../../../src/transport/peer-certificate.js';
import {
  type TlsContextEvent,
  type TlsContextManager,
  createTlsContextManager,
  tlsEventToAudit,
  tlsSettingsSchema,
  tlsContextOptionsFrom,
} from '../../../src/transport/tls-context.js';
import { type TestPki, mintTestPki } from '../../helpers/certs.js';
import { type TestTlsServer, connectClient, startTlsServer } from './tls-harness.js';

/** Runs a command without blocking the event loop (the TLS server under test lives in this process). */
function run(command: string, args: string[]): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.stdin.end();
    child.on('close', (status) => resolve({ status, output }));
  });
}

/** Replaces a file the way deploy tools do: write a sibling, then rename over. */
function replaceFile(target: string, content: string | Buffer): void {
  writeFileSync(`${target}.new`, content);
  renameSync(`${target}.new`, target);
}

function echo(socket: TLSSocket, text: string): Promise<string> {
  return new Promise((resolve) => {
    socket.once('data', (d: Buffer) => resolve(d.toString()));
    socket.write(text);
  });
}

describe('TLS context manager', () => {
  let pki: TestPki;
  let certFile: string;
  let keyFile: string;
  let crlFile: string;
  let manager: TlsContextManager;
  let server: TestTlsServer;
  let events: TlsContextEvent[];

  beforeAll(async () => {
    pki = await mintTestPki();
  });
  afterAll(() => pki.cleanup());

  beforeEach(async () => {
    const n = Math.random().toString(36).slice(2);
    certFile = join(pki.dir, `live-${n}.crt`);
    keyFile = join(pki.dir, `live-${n}.key`);
    crlFile = join(pki.dir, `live-${n}.crl`);
    copyFileSync(pki.server.certFile, certFile);
    copyFileSync(pki.server.keyFile, keyFile);
    writeFileSync(crlFile, await createCrl({ issuer: pki.ca, revoked: [] }));
    events = [];
    manager = await createTlsContextManager({ certFile, keyFile, caFile: pki.caFile, crlFile, watch: false }, (e) => {
      events.push(e);
    });
    server = await startTlsServer(manager.serverOptions());
    // The harness echoes nothing by itself; make accepted sockets echo so an old connection can prove it still works.
    server.server.on('secureConnection', (s: TLSSocket) => s.on('data', (d: Buffer) => s.write(d)));
    manager.attach(server.server);
  });
  afterEach(async () => {
    manager.close();
    await server.close();
  });

  it('serves the certificate with TLS 1.2 as the floor and asks for client certificates when a CA is set', () => {
    const options = manager.serverOptions();
    expect(options).toMatchObject({
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.3',
      requestCert: true,
      rejectUnauthorized: false,
      honorCipherOrder: true,
    });
    expect(manager.certificate.fingerprint256).toBe(pki.server.fingerprint256);
  });

  it('swaps to a rotated certificate for new handshakes while an open connection keeps working', async () => {
    const first = await connectClient(server, { ca: readFileSync(pki.caFile) });
    if (!first.ok) throw first.error;
    expect(first.socket.getPeerX509Certificate()?.fingerprint256).toBe(pki.server.fingerprint256);

    replaceFile(keyFile, readFileSync(pki.serverRotated.keyFile));
    replaceFile(certFile, readFileSync(pki.serverRotated.certFile));
    const result = await manager.reload();
    expect(result).toMatchObject({
      kind: 'reloaded',
      certificate: { fingerprint256: pki.serverRotated.fingerprint256 },
    });
    expect(manager.certificate.fingerprint256).toBe(pki.serverRotated.fingerprint256);
    expect(events.map((e) => e.action)).toEqual(['tls.reloaded']);
    expect(await manager.reload()).toEqual({ kind: 'unchanged' });

    const second = await connectClient(server, { ca: readFileSync(pki.caFile) });
    if (!second.ok) throw second.error;
    expect(second.socket.getPeerX509Certificate()?.fingerprint256).toBe(pki.serverRotated.fingerprint256);
    expect(await echo(first.socket, 'still here')).toBe('still here');
    first.socket.end();
    second.socket.end();
  });

  it('keeps the old certificate serving when the new key does not match, and reports why', async () => {
    replaceFile(certFile, readFileSync(pki.serverRotated.certFile));
    const result = await manager.reload();
    expect(result).toEqual({ kind: 'failed', reason: 'private key does not match the certificate', file: keyFile });
    expect(events.at(-1)).toEqual({
      action: 'tls.reload_failed',
      reason: 'private key does not match the certificate',
      file: keyFile,
    });
    const audit = tlsEventToAudit(events.at(-1) as TlsContextEvent, 'mqtts');
    expect(audit.event).toMatchObject({ action: 'tls.reload_failed', outcome: 'failure' });
    expect(audit.policy).toEqual({ file: keyFile, error: 'private key does not match the certificate' });
    const client = await connectClient(server, { ca: readFileSync(pki.caFile) });
    if (!client.ok) throw client.error;
    expect(client.socket.getPeerX509Certificate()?.fingerprint256).toBe(pki.server.fingerprint256);
    client.socket.end();
  });

  it('refuses an expired replacement certificate', async () => {
    replaceFile(keyFile, readFileSync(pki.clients.expired.keyFile));
    replaceFile(certFile, readFileSync(pki.clients.expired.certFile));
    const result = await manager.reload();
    expect(result.kind).toBe('failed');
    expect(result.kind === 'failed' && result.reason).toMatch(/^certificate expired at /);
    expect(manager.certificate.fingerprint256).toBe(pki.server.fingerprint256);
  });

  it('applies a new CRL: a client accepted before is refused as revoked after the reload', async () => {
    const revoked = pki.clients.revoked;
    const clientOptions = {
      ca: readFileSync(pki.caFile),
      cert: revoked.certificatePem,
      key: readFileSync(revoked.keyFile),
    };
    const before = await connectClient(server, clientOptions);
    const beforeInfo = (await server.nextAccepted()).info;
    expect(beforeInfo.authorized).toBe(true);
    if (before.ok) before.socket.end();

    replaceFile(crlFile, await createCrl({ issuer: pki.ca, revoked: [{ serialNumber: revoked.serialNumber }] }));
    const result = await manager.reload();
    expect(result.kind).toBe('reloaded');

    const after = await connectClient(server, clientOptions);
    const afterInfo = (await server.nextAccepted()).info;
    if (after.ok) after.socket.end();
    expect(afterInfo.authorized).toBe(false);
    expect(classifyRefusal(afterInfo)).toMatchObject({ refusal: 'revoked', code: 'CERT_REVOKED' });
  });

  it('reloads by itself when the watched files are replaced', async () => {
    const watched: TlsContextEvent[] = [];
    let onReloaded: (e: TlsContextEvent) => void = () => undefined;
    const reloaded = new Promise<TlsContextEvent>((resolve) => {
      onReloaded = resolve;
    });
    const watching = await createTlsContextManager(
      { certFile, keyFile, caFile: pki.caFile, crlFile, watch: true, debounceMs: 20 },
      (e) => {
        watched.push(e);
        if (e.action === 'tls.reloaded') onReloaded(e);
      },
    );
    watching.attach(server.server);
    replaceFile(keyFile, readFileSync(pki.serverRotated.keyFile));
    replaceFile(certFile, readFileSync(pki.serverRotated.certFile));
    const event = await reloaded;
    expect(event.action === 'tls.reloaded' && event.certificate.fingerprint256).toBe(pki.serverRotated.fingerprint256);
    expect(watching.certificate.fingerprint256).toBe(pki.serverRotated.fingerprint256);
    const client = await connectClient(server, { ca: readFileSync(pki.caFile) });
    if (!client.ok) throw client.error;
    expect(client.socket.getPeerX509Certificate()?.fingerprint256).toBe(pki.serverRotated.fingerprint256);
    client.socket.end();
    watching.close();
  });

  it('warns when a reloaded CRL has expired, because then every client from that CA is refused', async () => {
    const thisUpdate = new Date(Date.now() - 10 * 86_400_000);
    replaceFile(
      crlFile,
      await createCrl({ issuer: pki.ca, revoked: [], thisUpdate, nextUpdate: new Date(Date.now() - 86_400_000) }),
    );
    const result = await manager.reload();
    expect(result.kind === 'reloaded' && result.warnings.join()).toContain('expired');
    const client = await connectClient(server, {
      ca: readFileSync(pki.caFile),
      cert: pki.clients.good.certificatePem,
      key: readFileSync(pki.clients.good.keyFile),
    });
    const info = (await server.nextAccepted()).info;
    if (client.ok) client.socket.end();
    expect(info.authorizationError).toBe('CRL_HAS_EXPIRED');
  });

  it('is seen by openssl s_client as a verified TLS 1.3 server and refuses TLS 1.1', async () => {
    const ok = await run('openssl', [
      's_client',
      '-connect',
      `127.0.0.1:${server.port}`,
      '-CAfile',
      pki.caFile,
      '-verify_return_error',
      '-brief',
    ]);
    expect(ok.output).toContain('Verification: OK');
    expect(ok.output).toContain('Protocol version: TLSv1.3');
    const old = await run('openssl', ['s_client', '-connect', `127.0.0.1:${server.port}`, '-tls1_1', '-brief']);
    expect(old.status).not.toBe(0);
  });
});

describe('TLS context manager startup and settings', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await mintTestPki();
  });
  afterAll(() => pki.cleanup());

  it('fails to start with a mismatched pair, naming the key file', async () => {
    await expect(
      createTlsContextManager(
        { certFile: pki.server.certFile, keyFile: pki.serverRotated.keyFile, watch: false },
        () => undefined,
      ),
    ).rejects.toMatchObject({
      code: 'BULWARK_ERR_CERT',
      message: 'private key does not match the certificate',
      position: { file: pki.serverRotated.keyFile },
    });
  });

  it('fails to start when a file is missing', async () => {
    await expect(
      createTlsContextManager(
        { certFile: join(pki.dir, 'nope.crt'), keyFile: pki.server.keyFile, watch: false },
        () => undefined,
      ),
    ).rejects.toMatchObject({
      message: 'cannot read cert file (ENOENT)',
    });
  });

  it('refuses TLS versions below 1.2 in settings, and min_version TLSv1.3 refuses a TLS 1.2 client', async () => {
    expect(tlsSettingsSchema.safeParse({ cert_file: 'a', key_file: 'b', min_version: 'TLSv1.1' }).success).toBe(false);
    const settings = tlsSettingsSchema.parse({
      cert_file: pki.server.certFile,
      key_file: pki.server.keyFile,
      min_version: 'TLSv1.3',
      watch: false,
    });
    const manager = await createTlsContextManager(tlsContextOptionsFrom(settings), () => undefined);
    const server = await startTlsServer(manager.serverOptions(), '::1');
    const old = await connectClient(server, { ca: readFileSync(pki.caFile), maxVersion: 'TLSv1.2' });
    expect(old.ok).toBe(false);
    const current = await connectClient(server, { ca: readFileSync(pki.caFile) });
    expect(current.ok).toBe(true);
    if (current.ok) current.socket.end();
    manager.close();
    await server.close();
  });
});
