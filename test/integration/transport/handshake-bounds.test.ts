import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { mintTestPki, type TestPki } from '../../helpers/certs.js';

/** Resolves when the server closes `socket`, or with false if it is still open after `withinMs`. */
function closedWithin(socket: net.Socket, withinMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, withinMs);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

describe('a TLS handshake that does not finish', () => {
  let pki: TestPki;
  const brokers: TestBroker[] = [];
  let tlsBroker: TestBroker;
  let proxiedTls: TestBroker;
  let wss: TestBroker;

  beforeAll(async () => {
    pki = await mintTestPki();
    const tls = { cert_file: pki.server.certFile, key_file: pki.server.keyFile };
    const config = { limits: { connect_timeout_ms: 300 } };
    tlsBroker = await startBroker({ config, listener: { transport: 'tls', tls } });
    proxiedTls = await startBroker({
      config,
      listener: {
        transport: 'tls',
        tls,
        proxy_protocol: { enabled: true, trusted_proxies: ['127.0.0.1/32'] },
      },
    });
    wss = await startBroker({ config, listener: { transport: 'wss', tls } });
    brokers.push(tlsBroker, proxiedTls, wss);
  });
  afterAll(async () => {
    for (const b of brokers) await b.stop();
    pki?.cleanup();
  });

  // The bound is limits.connect_timeout_ms (300 ms here); Node's own default would keep the socket 120 s.
  it.each([
    ['tls', () => tlsBroker, '', '127.0.0.1'],
    ['wss', () => wss, '', '127.0.0.1'],
    ['tls behind PROXY', () => proxiedTls, 'PROXY TCP4 198.51.100.7 127.0.0.1 40000 1883\r\n', '198.51.100.7'],
  ] as const)(
    'on a %s listener a silent client is closed by the connect timeout',
    async (_kind, broker, header, ip) => {
      const socket = net.connect(broker().port, '127.0.0.1');
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      if (header) socket.write(header);
      expect(await closedWithin(socket, 5_000)).toBe(true);
      const refused = await broker().waitForAudit(
        'tls.handshake_refused',
        (e) => e.event.code === 'ERR_TLS_HANDSHAKE_TIMEOUT',
      );
      expect(refused.event.outcome).toBe('failure');
      // The address is taken when the socket connects: once destroyed it no longer has one.
      expect(refused.client?.ip).toBe(ip);
    },
  );

  it('a client stalled in the middle of its ClientHello is closed too', async () => {
    const socket = net.connect(tlsBroker.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    // A record header announcing 512 bytes of handshake, then nothing more.
    socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]));
    expect(await closedWithin(socket, 5_000)).toBe(true);
  });

  it('a client that resets in the middle of its handshake is recorded with its address', async () => {
    const socket = net.connect(tlsBroker.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const port = socket.localPort;
    socket.write(Buffer.from('16030100c8010000c40303', 'hex'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.resetAndDestroy();
    const refused = await tlsBroker.waitForAudit(
      'tls.handshake_refused',
      (e) => e.event.code === 'ECONNRESET' && e.client?.port === port,
    );
    expect(refused.client?.ip).toBe('127.0.0.1');
  });
});
