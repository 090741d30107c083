import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestPki, mintTestPki } from '../../helpers/certs.js';
import {
  classifyRefusal,
  formatDn,
  parseSubjectAltName,
  toPeerCertificate,
} from '../../../src/transport/peer-certificate.js';
import { type TestTlsServer, connectClient, startTlsServer } from './tls-harness.js';

describe('parseSubjectAltName', () => {
  it.each([
    ['DNS:a.example, DNS:b.example', { dns: ['a.example', 'b.example'], uri: [], email: [], ip: [] }],
    [
      'URI:spiffe://td/ns/x, email:a@b.c, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
      { dns: [], uri: ['spiffe://td/ns/x'], email: ['a@b.c'], ip: ['127.0.0.1', '0:0:0:0:0:0:0:1'] },
    ],
    // Node quotes values with commas so a SAN cannot forge a second entry (CVE-2021-44532).
    [
      'DNS:"evil.example, URI:spiffe://td/admin", DNS:ok.example',
      { dns: ['evil.example, URI:spiffe://td/admin', 'ok.example'], uri: [], email: [], ip: [] },
    ],
    ['othername:<unsupported>, DirName:CN=x, email:x@y.z', { dns: [], uri: [], email: ['x@y.z'], ip: [] }],
    ['', { dns: [], uri: [], email: [], ip: [] }],
  ])('parses %j', (input, expected) => {
    expect(parseSubjectAltName(input)).toEqual(expected);
  });
});

describe('formatDn', () => {
  it('writes RFC 4514 order, repeats multi-valued attributes and escapes special characters', () => {
    expect(formatDn({ C: 'DE', O: 'Acme, Inc.', OU: ['a', 'b'], CN: ' dev+1' })).toBe(
      'CN=\\ dev\\+1,OU=b,OU=a,O=Acme\\, Inc.,C=DE',
    );
  });
});

describe('peer certificates from real handshakes', () => {
  let pki: TestPki;
  let server: TestTlsServer;
  beforeAll(async () => {
    pki = await mintTestPki();
    server = await startTlsServer(
      {
        cert: readFileSync(pki.server.certFile),
        key: readFileSync(pki.server.keyFile),
        ca: readFileSync(pki.caFile),
        crl: readFileSync(pki.crlFile),
        requestCert: true,
        rejectUnauthorized: false,
      },
      '::1',
    );
  });
  afterAll(async () => {
    await server.close();
    pki.cleanup();
  });

  it('converts the client certificate Node reports into a PeerCertificate with SANs, OUs and DN', async () => {
    const good = pki.clients.good;
    const client = await connectClient(server, {
      ca: readFileSync(pki.caFile),
      cert: good.certificatePem,
      key: readFileSync(good.keyFile),
    });
    expect(client.ok).toBe(true);
    const { info } = await server.nextAccepted();
    if (client.ok) client.socket.end();
    expect(info.authorized).toBe(true);
    expect(info.authorizationError).toBeUndefined();
    expect(info.protocol).toBe('TLSv1.3');
    expect(info.cipher).toMatch(/^TLS_/);
    expect(info.certificate).toEqual({
      subjectCn: 'sensor-1',
      subjectDn: 'CN=sensor-1,OU=floor-2,OU=sensors,O=Bulwark Tests',
      issuerDn: 'CN=Bulwark Test Root CA,O=Bulwark Tests',
      serialNumber: good.serialNumber,
      fingerprint256: good.fingerprint256,
      organizationalUnits: ['sensors', 'floor-2'],
      sanDns: ['sensor-1.bulwark.test'],
      sanUri: ['spiffe://bulwark.test/sensor/1'],
      sanEmail: ['sensor-1@bulwark.test'],
      sanIp: [],
      validFrom: expect.stringMatching(/GMT$/),
      validTo: expect.stringMatching(/GMT$/),
    });
  });

  it('reports no certificate and classifies the refusal as missing when the client sends none', async () => {
    const client = await connectClient(server, { ca: readFileSync(pki.caFile) });
    const { info } = await server.nextAccepted();
    if (client.ok) client.socket.end();
    expect(info.certificate).toBeUndefined();
    expect(info.authorized).toBe(false);
    expect(classifyRefusal(info)).toEqual({
      refusal: 'missing',
      code: 'UNABLE_TO_GET_ISSUER_CERT',
      message: 'no client certificate presented',
    });
  });

  it.each([
    ['expired', 'expired', 'CERT_HAS_EXPIRED'],
    ['notYetValid', 'not_yet_valid', 'CERT_NOT_YET_VALID'],
    ['revoked', 'revoked', 'CERT_REVOKED'],
    ['otherCa', 'unknown_ca', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
  ] as const)('classifies the %s client certificate as %s (%s)', async (which, refusal, code) => {
    const cred = pki.clients[which];
    const client = await connectClient(server, {
      ca: readFileSync(pki.caFile),
      cert: cred.certificatePem,
      key: readFileSync(cred.keyFile),
    });
    const { info } = await server.nextAccepted();
    if (client.ok) client.socket.end();
    expect(info.authorized).toBe(false);
    expect(info.authorizationError).toBe(code);
    expect(info.certificate?.serialNumber).toBe(cred.serialNumber);
    expect(classifyRefusal(info)?.refusal).toBe(refusal);
  });

  it('returns undefined for an empty certificate object', () => {
    expect(toPeerCertificate(undefined)).toBeUndefined();
  });
});
