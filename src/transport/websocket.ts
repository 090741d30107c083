import http from 'node:http';
import type https from 'node:https';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { TlsPeerInfo } from '../../authn/types.js';
import type { Broker } from '../broker.js';
import { connectTimeoutEvent } from '../connection-events.js';
import type { ListenerRuntime } from '../listener.js';
import { normalizeAddress } from './tcp.js';

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
  server.on('request', (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' });
    res.end('This is an MQTT over WebSocket endpoint.\n');
  });
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxPayload,
    perMessageDeflate: false,
    handleProtocols: (offered) => SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
  });
  server.on('upgrade', (request, socket, head) => {
    // Node takes its HTTP error handler off the socket before this event: without one of ours, a client that
    // resets while we answer (ECONNRESET, EPIPE) raised an unhandled 'error' that ended the broker process.
    socket.on('error', destroySocket);
    clearTimeout(upgradeDeadlines.get(socket));
    upgradeDeadlines.delete(socket);
    const path = (request.url ?? '/').split('?')[0];
    if (path !== options.path) {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
      return;
    }
    // [MQTT-6.0.0-3] a client offers `mqtt`; like Mosquitto, an upgrade offering no MQTT subprotocol is refused
    // rather than served as MQTT to something that never asked for it.
    const offered = (request.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!SUBPROTOCOLS.some((p) => offered.includes(p))) {
      socket.end(
        'HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n' +
          'offer the WebSocket subprotocol mqtt\n',
      );
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      const stream = createWebSocketStream(ws, { allowHalfOpen: false });
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
      // ws refuses a message over `maxPayload` (the maximum packet size) before the framer sees a byte of it, and
      // closes with 1009 itself: the refusal is recorded as the framer's would be. This listener runs after the
      // stream's, which has destroyed the stream but not yet told the connection why.
      ws.on('error', (error: Error & { code?: string }) => {
        if (error.code !== 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') return;
        connection.transportRefused(
          'packetTooLarge',
          `WebSocket message exceeds the maximum packet size of ${options.maxPayload} bytes`,
        );
      });
    });
  });
  return server;
}

function destroySocket(this: Duplex): void {
  this.destroy();
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
  server.on(secure ? 'secureConnection' : 'connection', (socket: Duplex & net.Socket) => {
    const timer = setTimeout(() => {
      deadlines.delete(socket);
      if (socket.destroyed) return;
      const peer = { address: normalizeAddress(socket.remoteAddress), port: socket.remotePort ?? 0 };
      const detail = 'no WebSocket upgrade within the connect timeout';
      if (broker.recordRefusal(connectTimeoutEvent(peer, listener.name, undefined, detail)))
        broker.log.info(
          { peer: `${peer.address}:${peer.port}`, listener: listener.name },
          `closing connection: ${detail}`,
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
