import { readFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { mintTestPki, type TestPki } from '../../helpers/certs.js';
import { connectPacket } from '../../helpers/raw-client.js';
import { until } from '../../helpers/until.js';

/** CONNECT (3.1.1, clean session, keep alive 60, client id `text-1`): every byte is ASCII, so valid as text. */
const CONNECT = Buffer.from([
  0x10, 0x12, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x06, 0x74, 0x65, 0x78, 0x74, 0x2d,
  0x31,
]);

interface Outcome {
  opened: boolean;
  status?: number;
  closeCode?: number;
  received: Buffer[];
}

function run(url: string, protocols: string[], send: (ws: WebSocket) => void): Promise<Outcome> {
  return new Promise((resolve) => {
    const outcome: Outcome = { opened: false, received: [] };
    const ws = new WebSocket(url, protocols);
    ws.on('unexpected-response', (_req, res) => {
      outcome.status = res.statusCode;
      res.resume();
      ws.terminate();
      resolve(outcome);
    });
    ws.on('error', () => undefined);
    ws.on('open', () => {
      outcome.opened = true;
      send(ws);
    });
    ws.on('message', (data: Buffer) => outcome.received.push(data));
    ws.on('close', (code) => {
      outcome.closeCode = code;
      resolve(outcome);
    });
  });
}

describe('MQTT over WebSocket framing and subprotocol', () => {
  let broker: TestBroker;
  let url: string;

  beforeAll(async () => {
    broker = await startBroker({ listener: { transport: 'ws' } });
    url = `ws://127.0.0.1:${broker.port}/mqtt`;
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('closes the connection on a CONNECT sent in a text frame, without a CONNACK [MQTT-6.0.0-1]', async () => {
    const outcome = await run(url, ['mqtt'], (ws) => ws.send(CONNECT.toString('latin1'), { binary: false }));
    expect(outcome.opened).toBe(true);
    expect(outcome.received).toEqual([]);
    expect(broker.audit.events.some((e) => e.mqtt?.client_id === 'text-1')).toBe(false);
  });

  it('answers the same CONNECT in a binary frame', async () => {
    const outcome = await run(url, ['mqtt'], (ws) => {
      ws.once('message', () => ws.close());
      ws.send(CONNECT, { binary: true });
    });
    expect(outcome.received[0]?.[0]).toBe(0x20);
  });

  it.each([[[]], [['chat']]])('refuses an upgrade offering %j as subprotocols with 400', async (protocols) => {
    const outcome = await run(url, protocols, () => undefined);
    expect(outcome.opened).toBe(false);
    expect(outcome.status).toBe(400);
  });

  it('accepts mqttv3.1 for 3.1 clients', async () => {
    const outcome = await run(url, ['mqttv3.1'], (ws) => ws.close());
    expect(outcome.opened).toBe(true);
  });
});

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** An upgrade request; `change` replaces or removes (undefined) headers of a valid one. */
function upgradeRequest(path: string, change: Record<string, string | undefined> = {}, method = 'GET'): string {
  const headers: Record<string, string | undefined> = {
    Host: 'localhost',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': KEY,
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Protocol': 'mqtt',
    ...change,
  };
  const lines = Object.entries(headers).flatMap(([name, value]) => (value === undefined ? [] : [`${name}: ${value}`]));
  return `${method} ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
}

describe('refused WebSocket upgrades', () => {
  let broker: TestBroker;

  beforeAll(async () => {
    // The default connect timeout, so that it is the refusal itself that closes the socket.
    broker = await startBroker({ listener: { transport: 'ws' } });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it.each([
    ['another path', upgradeRequest('/other'), 404],
    ['no MQTT subprotocol', upgradeRequest('/mqtt', { 'Sec-WebSocket-Protocol': undefined }), 400],
    ['another method', upgradeRequest('/mqtt', {}, 'POST'), 405],
    ['no key', upgradeRequest('/mqtt', { 'Sec-WebSocket-Key': undefined }), 400],
    ['a malformed request line', 'GET /mqtt HTTP/1.1 garbage\r\n\r\n', 400],
  ])(
    'answers an upgrade with %s, closes the socket though the client keeps its side open, and records it',
    async (_what, request, status) => {
      const socket = net.connect({ host: '127.0.0.1', port: broker.port, allowHalfOpen: true });
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      const port = socket.localPort;
      let answer = '';
      socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
      let failure: NodeJS.ErrnoException | undefined;
      socket.on('error', (error) => (failure = error));
      socket.write(request);
      await new Promise<void>((resolve) => socket.once('end', () => resolve()));
      expect(answer.split('\r\n')[0]).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      // The client never ends its side: once the server has destroyed the socket, a write fails.
      const writer = setInterval(() => socket.write('x'), 20);
      try {
        await until(() => failure, 'the server to close the refused socket');
      } finally {
        clearInterval(writer);
        socket.destroy();
      }
      const record = await broker.waitForAudit('connection.malformed_connect', (e) => e.client?.port === port);
      expect(record.event).toMatchObject({ code: 'protocolError', outcome: 'failure' });
      expect(record.event.reason).toMatch(/^WebSocket upgrade refused: /);
      expect(record.mqtt?.listener).toBe('test');
    },
  );

  it('records a plain HTTP request, answered 426', async () => {
    const socket = await openRaw(broker.port, 'GET /mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const port = socket.localPort;
    const answer = await new Promise<string>((resolve) =>
      socket.once('data', (chunk: Buffer) => resolve(String(chunk))),
    );
    socket.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 426 /);
    const record = await broker.waitForAudit('connection.malformed_connect', (e) => e.client?.port === port);
    expect(record.event.reason).toBe('WebSocket upgrade refused: not a WebSocket upgrade request');
  });

  it('still upgrades a valid request', async () => {
    const outcome = await run(`ws://127.0.0.1:${broker.port}/mqtt`, ['mqtt'], (ws) => {
      ws.once('message', () => ws.close());
      ws.send(CONNECT, { binary: true });
    });
    expect(outcome.received[0]?.[0]).toBe(0x20);
  });
});

describe('secure WebSocket with require_certificate', () => {
  let pki: TestPki;
  let broker: TestBroker;

  beforeAll(async () => {
    pki = await mintTestPki();
    broker = await startBroker({
      listener: {
        transport: 'wss',
        tls: {
          cert_file: pki.server.certFile,
          key_file: pki.server.keyFile,
          ca_file: pki.caFile,
          require_certificate: true,
        },
      },
    });
  });
  afterAll(async () => {
    await broker?.stop();
    pki?.cleanup();
  });

  it('refuses an HTTPS GET without a certificate at the TLS layer, with no HTTP answer, and records it', async () => {
    const answered = await new Promise<number | 'closed'>((resolve) => {
      const req = https.get(
        { host: '127.0.0.1', port: broker.port, path: '/mqtt', servername: 'localhost', ca: readFileSync(pki.caFile) },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', () => resolve('closed'));
    });
    expect(answered).toBe('closed');
    const refused = await broker.waitForAudit('tls.handshake_refused', (e) => e.event.code === 'missing');
    expect(refused.client?.ip).toBe('127.0.0.1');
  });

  it('still serves MQTT to a client with a valid certificate', async () => {
    const client = await mqtt.connectAsync(`wss://localhost:${broker.port}/mqtt`, {
      ca: readFileSync(pki.caFile),
      cert: readFileSync(pki.clients.good.certFile),
      key: readFileSync(pki.clients.good.keyFile),
      reconnectPeriod: 0,
    });
    await client.endAsync();
  });
});

/** Opens a TCP connection to `port` and writes `bytes` (nothing when empty); resolves once it is connected. */
function openRaw(port: number, bytes: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      if (bytes !== '') socket.write(bytes);
      resolve(socket);
    });
    socket.on('error', reject);
  });
}

function closed(socket: net.Socket): Promise<void> {
  return socket.destroyed || socket.readyState === 'closed'
    ? Promise.resolve()
    : new Promise((resolve) => socket.once('close', () => resolve()));
}

describe('the HTTP phase before a WebSocket upgrade', () => {
  let broker: TestBroker;

  beforeAll(async () => {
    // The connect timeout is the bound under test; Node's own HTTP deadlines are a minute or more.
    broker = await startBroker({ listener: { transport: 'ws' }, config: { limits: { connect_timeout_ms: 300 } } });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it.each([
    ['sends nothing', ''],
    ['never finishes its request headers', 'GET /mqtt HTTP/1.1\r\nHost: localhost\r\n'],
    ['asks a plain GET and keeps the connection alive', 'GET /mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n'],
  ])('closes a connection that %s after the connect timeout, and records it', async (_what, bytes) => {
    const socket = await openRaw(broker.port, bytes);
    socket.resume();
    const port = socket.localPort;
    const record = await broker.waitForAudit('connection.connect_timeout', (e) => e.client?.port === port);
    expect(record.event).toMatchObject({ code: 'connect_timeout', outcome: 'failure' });
    expect(record.mqtt?.listener).toBe('test');
    await closed(socket);
  });

  it('on wss, counts from the end of the TLS handshake and closes a client that then sends nothing', async () => {
    const pki = await mintTestPki();
    const secure = await startBroker({
      listener: { transport: 'wss', tls: { cert_file: pki.server.certFile, key_file: pki.server.keyFile } },
      config: { limits: { connect_timeout_ms: 300 } },
    });
    try {
      const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect(
          { host: '127.0.0.1', port: secure.port, servername: 'localhost', ca: readFileSync(pki.caFile) },
          () => resolve(s),
        );
        s.on('error', reject);
      });
      socket.resume();
      const port = socket.localPort;
      const record = await secure.waitForAudit('connection.connect_timeout', (e) => e.client?.port === port);
      expect(record.event.code).toBe('connect_timeout');
      expect(secure.audit.events.some((e) => e.event.action === 'tls.handshake_refused')).toBe(false);
      await new Promise<void>((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
    } finally {
      await secure.stop();
      pki.cleanup();
    }
  });

  it('sees a client whose connection ends with a TCP reset as gone: logged, not counted, its will published', async () => {
    const url = `ws://127.0.0.1:${broker.port}/mqtt`;
    const watcher = await mqtt.connectAsync(url, { clientId: 'ws-reset-watcher', reconnectPeriod: 0 });
    await watcher.subscribeAsync('ws/reset/will', { qos: 1 });
    const wills: string[] = [];
    watcher.on('message', (_topic, payload) => wills.push(payload.toString()));
    const stats = broker.server.broker.stats;
    const before = stats.clientsConnected;
    const ws = new WebSocket(url, ['mqtt']);
    ws.on('error', () => undefined);
    await new Promise((resolve) => ws.once('open', resolve));
    const connack = new Promise((resolve) => ws.once('message', resolve));
    ws.send(
      mqttPacket.generate(
        connectPacket('ws-reset', {
          keepalive: 0,
          will: { topic: 'ws/reset/will', payload: Buffer.from('gone'), qos: 1, retain: false },
        }),
      ),
      { binary: true },
    );
    await connack;
    expect(stats.clientsConnected).toBe(before + 1);
    // Keep alive 0: nothing but the transport can tell the broker this client is gone.
    (ws as unknown as { _socket: net.Socket })._socket.resetAndDestroy();
    await broker.waitForLog((l) => l.msg === 'client disconnected' && l.clientId === 'ws-reset');
    await until(() => wills.length > 0 || undefined, 'the will');
    expect(wills).toEqual(['gone']);
    expect(stats.clientsConnected).toBe(before);
    await watcher.endAsync();
  });

  it('leaves an upgraded connection to the broker: it still gets its CONNACK', async () => {
    const outcome = await run(`ws://127.0.0.1:${broker.port}/mqtt`, ['mqtt'], (ws) => {
      ws.once('message', () => ws.close());
      ws.send(CONNECT, { binary: true });
    });
    expect(outcome.received[0]?.[0]).toBe(0x20);
  });
});

interface Refused {
  port: number;
  closeCode: number;
}

/** Opens a WebSocket, lets `send` write to it, and resolves with its local port and the close code it got. */
function refusedBy(url: string, send: (ws: WebSocket) => void): Promise<Refused> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['mqtt']);
    let port = 0;
    ws.on('error', () => undefined);
    ws.on('unexpected-response', () => reject(new Error('upgrade refused')));
    ws.on('open', () => {
      port = (ws as unknown as { _socket: net.Socket })._socket.localPort ?? 0;
      send(ws);
    });
    ws.on('close', (closeCode) => resolve({ port, closeCode }));
  });
}

describe('what the WebSocket layer refuses is recorded as the framer would record it', () => {
  const MAX = 1024;
  let broker: TestBroker;
  let url: string;

  beforeAll(async () => {
    broker = await startBroker({ listener: { transport: 'ws' }, config: { limits: { max_packet_size: MAX } } });
    url = `ws://127.0.0.1:${broker.port}/mqtt`;
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('records a first message larger than the maximum packet size as a malformed CONNECT', async () => {
    const big = mqttPacket.generate(connectPacket('ws-big', { username: 'u', password: Buffer.alloc(2 * MAX) }));
    const refused = await refusedBy(url, (ws) => ws.send(big));
    expect(refused.closeCode).toBe(1009);
    const record = await broker.waitForAudit('connection.malformed_connect', (e) => e.client?.port === refused.port);
    expect(record.event).toMatchObject({ code: 'packetTooLarge', outcome: 'failure' });
    expect(record.event.reason).toContain(`maximum packet size of ${MAX} bytes`);
    await broker.waitForLog(
      (l) => l['msg'] === 'closing connection: protocol violation' && l['reason'] === 'packetTooLarge',
    );
  });

  it('records a text frame before CONNECT as a malformed CONNECT', async () => {
    const refused = await refusedBy(url, (ws) => ws.send(CONNECT.toString('latin1'), { binary: false }));
    expect(refused.closeCode).toBe(1003);
    const record = await broker.waitForAudit('connection.malformed_connect', (e) => e.client?.port === refused.port);
    expect(record.event).toMatchObject({
      code: 'protocolError',
      reason: expect.stringContaining('text WebSocket frame'),
    });
  });

  it('records a frame that breaks the WebSocket protocol before CONNECT as a malformed CONNECT', async () => {
    // A client's frames must be masked (RFC 6455 section 5.1): this binary frame carrying a CONNECT is not.
    const refused = await refusedBy(url, (ws) =>
      (ws as unknown as { _socket: net.Socket })._socket.write(
        Buffer.concat([Buffer.from([0x82, CONNECT.length]), CONNECT]),
      ),
    );
    expect(refused.closeCode).toBe(1002);
    const record = await broker.waitForAudit('connection.malformed_connect', (e) => e.client?.port === refused.port);
    expect(record.event).toMatchObject({
      code: 'protocolError',
      reason: expect.stringMatching(/^WebSocket protocol error: /),
    });
  });

  it('says why a connected client was closed for an oversize message', async () => {
    const refused = await refusedBy(url, (ws) => {
      ws.once('message', () =>
        ws.send(
          mqttPacket.generate({
            cmd: 'publish',
            topic: 't',
            payload: Buffer.alloc(2 * MAX),
            qos: 0,
            retain: false,
            dup: false,
          }),
        ),
      );
      ws.send(mqttPacket.generate(connectPacket('ws-big-pub')));
    });
    expect(refused.closeCode).toBe(1009);
    const record = await broker.waitForAudit('client.disconnected', (e) => e.mqtt?.client_id === 'ws-big-pub');
    expect(record.event.reason).toBe(`WebSocket message exceeds the maximum packet size of ${MAX} bytes`);
  });
});
