import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type IncomingMessage, type Server as HttpServer, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ConnectionOptions, connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority } from '../../../certs/index.js';
import {
  type OcspCertStatus,
  certificateDer,
  createOcspErrorResponse,
  createOcspResponse,
  parseOcspRequest,
  parseOcspResponse,
} from '../../../certs/ocsp.js';
import type { CertificateAuthority, IssuerPems } from '../../../certs/types.js';
import {
  type OcspEvent,
  type OcspStaplerOptions,
  createOcspStapler,
  ocspEventToAudit,
  ocspUrlOf,
} from '../../../src/transport/ocsp-stapling.js';
import { type TestPki, mintTestPki } from '../../helpers/certs.js';
import { startTlsServer } from './tls-harness.js';

const HOUR = 3_600_000;

/** What the local responder answers next; every answer is recorded. */
interface Responder {
  url: string;
  mode:
    | { kind: 'sign'; signer?: IssuerPems; status: OcspCertStatus; certificatePem?: string; nextUpdateIn?: number }
    | { kind: 'tryLater' }
    | { kind: 'http500' };
  requestedSerials: string[];
  answers: Buffer[];
  close(): Promise<void>;
}

async function startResponder(getIssuer: () => CertificateAuthority, getLeafPem: () => string): Promise<Responder> {
  const responder: Responder = {
    url: '',
    mode: { kind: 'sign', status: 'good' },
    requestedSerials: [],
    answers: [],
    close: async () => undefined,
  };
  const server: HttpServer = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const parsed = parseOcspRequest(Buffer.concat(chunks));
      if (parsed.ok)
        for (const id of parsed.certIds)
          responder.requestedSerials.push(
            Buffer.from(id.serialNumber).toString('hex').toUpperCase().replace(/^00/, ''),
          );
      const mode = responder.mode;
      if (mode.kind === 'http500') {
        res.writeHead(500).end();
        return;
      }
      const body =
        mode.kind === 'tryLater'
          ? createOcspErrorResponse('tryLater')
          : createOcspResponse({
              issuer: mode.signer ?? getIssuer(),
              certificatePem: mode.certificatePem ?? getLeafPem(),
              status: mode.status,
              thisUpdate: new Date(Date.now() - 60_000),
              nextUpdate: new Date(Date.now() + (mode.nextUpdateIn ?? 4 * HOUR)),
            });
      responder.answers.push(body);
      res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  responder.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/ocsp`;
  responder.close = () => new Promise((resolve) => server.close(() => resolve()));
  return responder;
}

describe('OCSP stapling against a local responder', () => {
  let pki: TestPki;
  let responder: Responder;
  let stranger: CertificateAuthority;
  let dir: string;

  beforeAll(async () => {
    // The responder must exist before the certificate that names it in AIA, so it reads the PKI lazily.
    responder = await startResponder(
      () => pki.intermediate ?? pki.ca,
      () => pki.server.certificatePem,
    );
    pki = await mintTestPki({ intermediate: true, ocspUrl: responder.url });
    stranger = await createCertificateAuthority({ subject: { commonName: 'Stranger CA' } });
    dir = mkdtempSync(join(tmpdir(), 'bulwark-ocsp-'));
  });
  afterAll(async () => {
    await responder.close();
    pki.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const stapler = (over: Partial<OcspStaplerOptions> = {}, events: OcspEvent[] = []) =>
    createOcspStapler({ certificatePem: pki.server.chainPem, source: { kind: 'aia' }, ...over }, (e) => events.push(e));

  it('reads the responder URL from the certificate’s Authority Information Access', () => {
    expect(ocspUrlOf(pki.server.certificatePem)).toBe(responder.url);
    expect(ocspUrlOf(pki.clients.good.certificatePem)).toBeUndefined();
  });

  it.each(['TLSv1.2', 'TLSv1.3'] as const)(
    'staples the responder’s answer for the broker certificate to a %s client that requests OCSP',
    async (version) => {
      responder.mode = { kind: 'sign', status: 'good' };
      const events: OcspEvent[] = [];
      const s = stapler({}, events);
      const result = await s.start();
      expect(result.kind).toBe('ok');
      expect(responder.requestedSerials.at(-1)).toBe(pki.server.serialNumber);
      expect(events.at(-1)).toMatchObject({ action: 'tls.ocsp_refreshed', status: 'good', source: responder.url });

      const server = await startTlsServer({
        cert: readFileSync(pki.server.chainFile),
        key: readFileSync(pki.server.keyFile),
      });
      s.attach(server.server);
      const stapled = await new Promise<Buffer | null>((resolve, reject) => {
        // requestOCSP is a documented tls.connect option that @types/node 20 lists only on TLSSocket.
        const options: ConnectionOptions & { requestOCSP: boolean } = {
          host: '127.0.0.1',
          port: server.port,
          servername: 'localhost',
          ca: readFileSync(pki.caFile),
          requestOCSP: true,
          minVersion: version,
          maxVersion: version,
        };
        const socket = connect(options);
        socket.once('OCSPResponse', (response: Buffer | null) => {
          socket.end();
          resolve(response);
        });
        socket.once('error', reject);
      });
      s.close();
      await server.close();
      expect(stapled).not.toBeNull();
      expect(stapled?.equals(responder.answers.at(-1) as Buffer)).toBe(true);
      // Node clients do not check stapled responses; check it here as a strict client would.
      const check = parseOcspResponse(
        stapled as Buffer,
        certificateDer(pki.server.certificatePem),
        certificateDer((pki.intermediate as CertificateAuthority).certificatePem),
      );
      expect(check).toMatchObject({ ok: true, response: { status: 'good' } });
    },
  );

  it('staples a response that openssl s_client -status verifies against the CA', async () => {
    responder.mode = { kind: 'sign', status: 'good' };
    const s = stapler();
    await s.start();
    const server = await startTlsServer({
      cert: readFileSync(pki.server.chainFile),
      key: readFileSync(pki.server.keyFile),
    });
    s.attach(server.server);
    const output = await new Promise<string>((resolve) => {
      const child = spawn(
        'openssl',
        [
          's_client',
          '-connect',
          `127.0.0.1:${server.port}`,
          '-status',
          '-CAfile',
          pki.caFile,
          '-servername',
          'localhost',
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      child.stdin.end();
      child.on('close', () => resolve(text));
    });
    s.close();
    await server.close();
    expect(output).toContain('OCSP Response Status: successful (0x0)');
    expect(output).toContain('Cert Status: good');
    expect(output).toContain(`Serial Number: ${pki.server.serialNumber}`);
    expect(output).toContain('Verify return code: 0 (ok)');
  });

  it('produces responses that openssl ocsp verifies against the CA chain', async () => {
    const inter = pki.intermediate as CertificateAuthority;
    const respFile = join(dir, 'check.der');
    writeFileSync(
      respFile,
      createOcspResponse({
        issuer: inter,
        certificatePem: pki.server.certificatePem,
        status: 'good',
        nextUpdate: new Date(Date.now() + HOUR),
      }),
    );
    writeFileSync(join(dir, 'inter.pem'), inter.certificatePem);
    writeFileSync(join(dir, 'chain.pem'), pki.ca.certificatePem + inter.certificatePem);
    const output = await new Promise<string>((resolve) => {
      const child = spawn(
        'openssl',
        [
          'ocsp',
          '-respin',
          respFile,
          '-issuer',
          join(dir, 'inter.pem'),
          '-CAfile',
          join(dir, 'chain.pem'),
          '-cert',
          pki.server.certFile,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      child.on('close', () => resolve(text));
    });
    expect(output).toContain('Response verify OK');
    expect(output).toContain(`${pki.server.certFile}: good`);
  });

  it('schedules the next refresh at the midpoint of the response validity', async () => {
    responder.mode = { kind: 'sign', status: 'good', nextUpdateIn: 4 * HOUR };
    const scheduled: number[] = [];
    const s = stapler({ timers: { set: (_fn, ms) => scheduled.push(ms), clear: () => undefined } });
    const result = await s.start();
    if (result.kind !== 'ok') throw new Error(result.reason);
    const { thisUpdate, expiresAt } = result.response;
    expect(s.nextRefreshAt).toBe(thisUpdate.getTime() + (expiresAt - thisUpdate.getTime()) / 2);
  });

  it('keeps stapling the previous response when the responder says tryLater, and retries with backoff', async () => {
    responder.mode = { kind: 'sign', status: 'good' };
    const events: OcspEvent[] = [];
    let clock = Date.now();
    const scheduled: number[] = [];
    const s = stapler(
      { now: () => clock, retryMs: 10_000, timers: { set: (_fn, ms) => scheduled.push(ms), clear: () => undefined } },
      events,
    );
    const first = await s.start();
    const firstDer = first.kind === 'ok' ? first.response.der : undefined;
    responder.mode = { kind: 'tryLater' };
    expect(await s.refresh()).toEqual({ kind: 'failed', reason: 'responder answered tryLater' });
    expect(await s.refresh()).toEqual({ kind: 'failed', reason: 'responder answered tryLater' });
    expect(scheduled.slice(-2)).toEqual([10_000, 20_000]);
    expect(s.current()?.der.equals(firstDer as Buffer)).toBe(true);
    expect(events.at(-1)).toEqual({
      action: 'tls.ocsp_failed',
      reason: 'responder answered tryLater',
      source: responder.url,
      stapling: true,
    });
    expect(ocspEventToAudit(events.at(-1) as OcspEvent, 'mqtts').event.reason).toContain(
      'previous response is still stapled',
    );
    // Past nextUpdate the old response is dropped rather than stapled stale.
    clock += 5 * HOUR;
    expect(s.current()).toBeUndefined();
    const calls: Array<Buffer | undefined> = [];
    s.handleOcspRequest(certificateDer(pki.server.certificatePem), null, (_e, r) => calls.push(r));
    expect(calls).toEqual([undefined]);
    s.close();
  });

  it.each([
    [
      'a response signed by a CA that did not issue the certificate',
      () => ({ kind: 'sign' as const, status: 'good' as const, signer: stranger }),
      'the response is signed neither by the issuer nor by a delegated OCSP responder of it',
    ],
    [
      'a response about a different certificate',
      () => ({ kind: 'sign' as const, status: 'good' as const, certificatePem: pki.serverRotated.certificatePem }),
      'the response is about a different certificate',
    ],
    [
      'an already expired response',
      () => ({ kind: 'sign' as const, status: 'good' as const, nextUpdateIn: -1000 }),
      'the response expired at',
    ],
    ['an HTTP error', () => ({ kind: 'http500' as const }), 'responder answered HTTP 500'],
  ])('refuses %s and staples nothing', async (_name, mode, reason) => {
    responder.mode = mode();
    const s = stapler();
    const result = await s.start();
    expect(result.kind === 'failed' && result.reason).toContain(reason);
    expect(s.current()).toBeUndefined();
    s.close();
  });

  it('uses a configured responder URL or a response file instead of the certificate’s AIA', async () => {
    const viaUrl = stapler({
      certificatePem: pki.clients.good.certificatePem,
      issuerPem: (pki.intermediate as CertificateAuthority).certificatePem,
      source: { kind: 'url', url: responder.url },
    });
    responder.mode = { kind: 'sign', status: 'good', certificatePem: pki.clients.good.certificatePem };
    expect((await viaUrl.start()).kind).toBe('ok');
    viaUrl.close();

    const file = join(dir, 'server.ocsp.der');
    writeFileSync(
      file,
      createOcspResponse({
        issuer: pki.intermediate as CertificateAuthority,
        certificatePem: pki.server.certificatePem,
        status: 'revoked',
        nextUpdate: new Date(Date.now() + HOUR),
      }),
    );
    const served = responder.answers.length;
    const viaFile = stapler({ source: { kind: 'file', file } });
    const result = await viaFile.start();
    expect(result).toMatchObject({ kind: 'ok', response: { status: 'revoked' } });
    expect(responder.answers.length).toBe(served);
    viaFile.close();
  });

  it('explains a certificate without an OCSP URL or a known issuer', async () => {
    const noUrl = stapler({ certificatePem: pki.clients.good.chainPem });
    expect(await noUrl.start()).toMatchObject({
      kind: 'failed',
      reason: expect.stringContaining('has no OCSP responder URL'),
    });
    noUrl.close();
    const noIssuer = stapler({ certificatePem: pki.server.certificatePem });
    expect(await noIssuer.start()).toMatchObject({
      kind: 'failed',
      reason: expect.stringContaining('issuer certificate is unknown'),
    });
    noIssuer.close();
  });
});
