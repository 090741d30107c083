import http from 'node:http';
import type https from 'node:https';
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { TlsPeerInfo } from '../../authn/types.js';
import type { Broker } from '../broker.js';
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
      // [MQTT-6.0.0-1] MQTT travels in binary frames: a text frame closes the connection before its bytes reach
      // the parser (prepended, so it runs before the stream pushes them).
      ws.prependListener('message', (_data: unknown, isBinary: boolean) => {
        if (isBinary) return;
        ws.close(1003, 'MQTT is carried in binary frames');
        stream.destroy();
      });
      const peer = { address: normalizeAddress(request.socket.remoteAddress), port: request.socket.remotePort ?? 0 };
      broker.accept(stream, listener, peer, tlsInfo?.(request.socket));
    });
  });
  return server;
}
