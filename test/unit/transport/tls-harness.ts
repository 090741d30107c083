import type { AddressInfo } from 'node:net';
import { type ConnectionOptions, type Server, type TLSSocket, type TlsOptions, connect, createServer } from 'node:tls';
import type { TlsPeerInfo } from '../../../authn/types.js';
import { tlsPeerInfo } from '../../../src/transport/peer-certificate.js';

/** What the server side saw of one handshake. */
export interface Accepted {
  socket: TLSSocket;
  info: TlsPeerInfo;
}

/** A real node:tls server on loopback port 0 that records every accepted connection. */
export interface TestTlsServer {
  server: Server;
  host: string;
  port: number;
  /** Resolves with the next connection the server completes a handshake for. */
  nextAccepted(): Promise<Accepted>;
  /** Errors the server reported for handshakes that failed (`tlsClientError`). */
  clientErrors: Error[];
  close(): Promise<void>;
}

export async function startTlsServer(
  options: TlsOptions,
  host = '127.0.0.1',
  pskIdentityOf?: (socket: TLSSocket) => string | undefined,
): Promise<TestTlsServer> {
  const server = createServer(options);
  const accepted: Accepted[] = [];
  const waiting: Array<(a: Accepted) => void> = [];
  const clientErrors: Error[] = [];
  const sockets = new Set<TLSSocket>();
  server.on('secureConnection', (socket: TLSSocket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const entry = { socket, info: tlsPeerInfo(socket, pskIdentityOf?.(socket)) };
    const waiter = waiting.shift();
    if (waiter) waiter(entry);
    else accepted.push(entry);
  });
  server.on('tlsClientError', (error) => clientErrors.push(error));
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    server,
    host,
    port: (server.address() as AddressInfo).port,
    clientErrors,
    nextAccepted: () => {
      const ready = accepted.shift();
      return ready ? Promise.resolve(ready) : new Promise((resolve) => waiting.push(resolve));
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export type ClientResult = { ok: true; socket: TLSSocket } | { ok: false; error: Error };

/** Connects and resolves once the handshake completed (or failed). The caller ends `socket`. */
export function connectClient(server: TestTlsServer, options: ConnectionOptions): Promise<ClientResult> {
  return new Promise((resolve) => {
    const socket = connect({ host: server.host, port: server.port, servername: 'localhost', ...options });
    socket.once('secureConnect', () => resolve({ ok: true, socket }));
    socket.once('error', (error) => resolve({ ok: false, error }));
  });
}
