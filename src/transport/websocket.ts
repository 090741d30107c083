import http from 'node:http';
import type https from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { TlsPeerInfo } from '../../authn/types.js';
import type { Broker } from '../broker.js';
import { connectTimeoutEvent, malformedConnectEvent } from '../connection-events.js';
import type { ListenerRuntime } from '../listener.js';
import { normalizeAddress } from './tcp.js';

function destroySocket(this: Duplex): void {
  this.destroy();
}

const UPGRADE_TIMEOUT = 'no WebSocket upgrade within the connect timeout';

/** The client's address as a TCP listener reports it (a TLS socket has the same members). */
function peerOfSocket(socket: Duplex): { address: string; port: number } {
  const { remoteAddress, remotePort } = socket as Partial<net.Socket>;
  return { address: normalizeAddress(remoteAddress), port: remotePort ?? 0 };
}

/** Subprotocols MQTT over WebSocket clients offer ([MQTT-6.0.0-3]); `mqtt` first, `mqttv3.1` for old clients. */
const SUBPROTOCOLS = ['mqtt', 'mqttv3.1'];

export interface WebSocketOptions {
  path: string;
  maxPayload: number;
}

/**
 * MQTT over WebSocket: an HTTP(S) server that upgrades requests on `path` and hands the broker a byte stream.
 * Each WebSocket binary message may carry any part of the MQTT stream ([MQTT-6.0.0-2]); the framer reassembles.
 */
export function createWebSocketServer(
  broker: Broker,
  listener: ListenerRuntime,
  options: WebSocketOptions,
  httpsServer?: https.Server,
  tlsInfo?: (socket: Duplex) => TlsPeerInfo | undefined,
): http.Server {
  const server: http.Server = httpsServer ?? http.createServer();
  const upgradeDeadlines = boundUpgradeTime(server, broker, listener, httpsServer !== undefined);
  /**
   * Recorded as a first packet that is not MQTT is on a TCP listener (`connection.malformed_connect`, bounded by
   * `Broker.recordRefusal`); `why` is our own text, never the client's bytes.
   */
  const recordRefusal = (socket: Duplex, status: number, why: string): void => {
    const peer = peerOfSocket(socket);
    const detail = `WebSocket upgrade refused: ${why}`;
    if (broker.recordRefusal(malformedConnectEvent(peer, listener.name, 'protocolError', detail, undefined, undefined)))
      broker.log.info(
        { peer: `${peer.address}:${peer.port}`, listener: listener.name, status, reason: why },
        'refusing WebSocket upgrade',
      );
  };
  /**
   * Answers and closes. Once Node has handed the socket to the `upgrade` event no HTTP deadline applies to it, so a
   * plain `end()` left it half-open for as long as the client kept its side open: the socket is destroyed as soon
   * as the answer is flushed, as ws does for the refusals it makes itself.
   */
  const refuseUpgrade = (socket: Duplex, status: number, why: string, body: string, extraHeaders = ''): void => {
    recordRefusal(socket, status, why);
    socket.once('finish', () => socket.destroy());
    socket.end(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: text/plain\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n${extraHeaders}\r\n${body}`,
    );
  };
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    recordRefusal(req.socket, 426, 'not a WebSocket upgrade request');
    res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' });
    res.end('This is an MQTT over WebSocket endpoint.\n');
  });
  // Without a listener Node answers a request it cannot parse (400, 431 for headers too large) unrecorded.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    const code = error.code ?? '';
    const answerable = socket.writable && (socket as Partial<net.Socket>).bytesWritten === 0;
    if (code.startsWith('HPE_') && answerable) {
      const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      refuseUpgrade(socket, status, `malformed HTTP request (${code})`, 'malformed HTTP request\n');
      return;
    }
    // Node's own request deadline, met only when the connect timeout is longer (our deadline records first).
    if (code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      const peer = peerOfSocket(socket);
      broker.recordRefusal(connectTimeoutEvent(peer, listener.name, undefined, UPGRADE_TIMEOUT));
    }
    socket.destroy();
  });
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxPayload,
    perMessageDeflate: false,
    handleProtocols: (offered) => SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
  });
  // ws's own refusals (method, Upgrade, Sec-WebSocket-Key or -Version headers), recorded like ours; with this
  // listener ws leaves the answer to us. Its messages are its own fixed texts.
  wss.on('wsClientError', (error: Error, socket: Duplex, request: http.IncomingMessage) => {
    const status = request.method === 'GET' ? 400 : 405;
    const version = error.message.includes('Sec-WebSocket-Version') ? 'Sec-WebSocket-Version: 13, 8\r\n' : '';
    refuseUpgrade(socket, status, error.message, `${error.message}\n`, version);
  });
  server.on('upgrade', (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node takes its HTTP error handler off the socket before this event: without one of ours, a client that
    // resets while we answer (ECONNRESET, EPIPE) raised an unhandled 'error' that ended the broker process.
    socket.on('error', destroySocket);
    const path = (request.url ?? '/').split('?')[0];
    if (path !== options.path) {
      refuseUpgrade(socket, 404, `path is not ${options.path}`, 'not found\n');
      return;
    }
    // [MQTT-6.0.0-3] a client offers `mqtt`; like Mosquitto, an upgrade offering no MQTT subprotocol is refused
    // rather than served as MQTT to something that never asked for it.
    const offered = (request.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!SUBPROTOCOLS.some((p) => offered.includes(p))) {
      refuseUpgrade(socket, 400, 'no MQTT subprotocol offered', 'offer the WebSocket subprotocol mqtt\n');
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      // Upgraded: from here the connection's own deadline applies.
      clearTimeout(upgradeDeadlines.get(socket));
      upgradeDeadlines.delete(socket);
      const stream = createWebSocketStream(ws, { allowHalfOpen: false });
      // A client whose TCP connection ends with a reset (closed with our data unread, or gone without a close
      // frame) closes `ws`, and the stream ends; but ending its writable side waits for the reset socket's 'finish',
      // which never comes, so the stream never closed and the connection stayed: no 'client disconnected', no will,
      // counted as connected, its session never offline. Once what it sent has been read, the stream is destroyed.
      ws.once('close', () => {
        if (stream.readableEnded) stream.destroy();
        else stream.once('end', () => stream.destroy());
      });
      const peer = { address: normalizeAddress(request.socket.remoteAddress), port: request.socket.remotePort ?? 0 };
      const connection = broker.accept(stream, listener, peer, tlsInfo?.(request.socket));
      if (connection === undefined) return;
      // [MQTT-6.0.0-1] MQTT travels in binary frames: a text frame closes the connection before its bytes reach
      // the parser (prepended, so it runs before the stream pushes them).
      ws.prependListener('message', (_data: unknown, isBinary: boolean) => {
        if (isBinary) return;
        connection.transportRefused('protocolError', 'text WebSocket frame: MQTT is carried in binary frames');
        ws.close(1003, 'MQTT is carried in binary frames');
        stream.destroy();
      });
      // ws refuses a message over `maxPayload` (the maximum packet size), and a frame that breaks RFC 6455 (an
      // unmasked frame, a bad opcode), before the framer sees a byte of it, and closes (1009, 1002) itself: the
      // refusal is recorded as the framer's would be. ws's messages are its own texts. This listener runs after the
      // stream's, which has destroyed the stream but not yet told the connection why.
      ws.on('error', (error: Error & { code?: string }) => {
        const code = error.code ?? '';
        if (code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH')
          connection.transportRefused(
            'packetTooLarge',
            `WebSocket message exceeds the maximum packet size of ${options.maxPayload} bytes`,
          );
        else if (code.startsWith('WS_ERR_'))
          connection.transportRefused('protocolError', `WebSocket protocol error: ${error.message}`);
      });
    });
  });
  return server;
}

/**
 * The HTTP phase before the upgrade counts like the wait for CONNECT on a TCP listener: a client that sends no
 * request, a slow one, or only a plain GET on a kept-alive connection is closed after `limits.connect_timeout_ms`
 * and recorded as `connection.connect_timeout` (bounded, `Broker.recordRefusal`). Node's own HTTP deadlines
 * (`headersTimeout`, checked every 30 s) would hold such a socket for a minute or more, unrecorded. On `wss` the
 * time starts after the TLS handshake, which has its own deadline, as the CONNECT wait does on a `tls` listener.
 * One timer per socket, and only until its upgrade: the connection then has the broker's own deadline.
 */
function boundUpgradeTime(
  server: http.Server,
  broker: Broker,
  listener: ListenerRuntime,
  secure: boolean,
): WeakMap<Duplex, NodeJS.Timeout> {
  const deadlines = new WeakMap<Duplex, NodeJS.Timeout>();
  const timeoutMs = broker.limits.connect_timeout_ms;
  server.on(secure ? 'secureConnection' : 'connection', (socket: Duplex) => {
    const timer = setTimeout(() => {
      deadlines.delete(socket);
      if (socket.destroyed) return;
      const peer = peerOfSocket(socket);
      if (broker.recordRefusal(connectTimeoutEvent(peer, listener.name, undefined, UPGRADE_TIMEOUT)))
        broker.log.info(
          { peer: `${peer.address}:${peer.port}`, listener: listener.name },
          `closing connection: ${UPGRADE_TIMEOUT}`,
        );
      socket.destroy();
    }, timeoutMs);
    deadlines.set(socket, timer);
    socket.once('close', () => {
      clearTimeout(timer);
      deadlines.delete(socket);
    });
  });
  return deadlines;
}
