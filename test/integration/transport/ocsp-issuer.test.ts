import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOcspResponse } from '../../../certs/ocsp.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { mintTestPki, type TestPki } from '../../helpers/certs.js';

/** The OCSP response the server stapled to a handshake that asked for one (undefined: none). */
function stapledResponse(port: number, caFile: string): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    let response: Buffer | undefined;
    // requestOCSP is a TLSSocket option that tls.connect passes on; its type does not list it.
    const options: tls.ConnectionOptions & { requestOCSP: boolean } = {
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: caFile,
      requestOCSP: true,
    };
    const socket = tls.connect(options);
    socket.on('OCSPResponse', (der: Buffer) => (response = der));
    socket.once('secureConnect', () => {
      socket.destroy();
      resolve(response);
    });
    socket.once('error', reject);
  });
}

describe('OCSP stapling with a leaf-only cert_file', () => {
  let pki: TestPki;
  let broker: TestBroker;

  beforeAll(async () => {
    pki = await mintTestPki();
    const response = join(pki.dir, 'server.ocsp.der');
    writeFileSync(
      response,
      createOcspResponse({
        issuer: pki.ca,
        certificatePem: pki.server.certificatePem,
        status: 'good',
        nextUpdate: new Date(Date.now() + 3_600_000),
      }),
    );
    const issuerFile = join(pki.dir, 'issuer.pem');
    writeFileSync(issuerFile, pki.ca.certificatePem);
    broker = await startBroker({
      listener: {
        transport: 'tls',
        tls: { cert_file: pki.server.certFile, key_file: pki.server.keyFile },
        ocsp_stapling: { enabled: true, response_file: response, issuer_file: issuerFile },
      },
    });
  });
  afterAll(async () => {
    await broker?.stop();
    pki?.cleanup();
  });

  it('verifies the response against issuer_file and staples it', async () => {
    const stapled = await stapledResponse(broker.port, readFileSync(pki.caFile, 'utf8'));
    expect(stapled?.length).toBeGreaterThan(0);
  });
});
