import net from 'node:net';
import type { Broker } from '../broker.js';
import type { ListenerRuntime, ListeningServer } from '../listener.js';
import { HandleServer } from './handle-server.js';
import { tcpHandles } from './tcp-handles.js';

/** IPv4 clients on a dual-stack socket appear as `::ffff:a.b.c.d`; policies and bans see the plain IPv4 form. */
export function normalizeAddress(address: string | undefined): string {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export function peerOf(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): {
  address: string;
  port: number;
} {
  return { address: normalizeAddress(socket.remoteAddress), port: socket.remotePort ?? 0 };
}

/**
 * A plain TCP listener: every accepted socket becomes a `Connection`. Sockets are driven through Node's TCP
 * handles (`socket_layer: direct`, the default) unless the listener asks for `net` or this Node lacks them.
 */
export function createTcpServer(broker: Broker, listener: ListenerRuntime): ListeningServer {
  if (listener.config.socket_layer !== 'net') {
    const { handles, why } = tcpHandles();
    if (handles) {
      return new HandleServer(
        handles,
        (socket, peer) => {
          broker.accept(socket, listener, peerOf(peer), undefined);
        },
        (error) => broker.log.warn({ listener: listener.name, err: error }, 'accepting a connection failed'),
      );
    }
    broker.log.warn({ listener: listener.name, reason: why }, 'socket_layer direct is unavailable: using net');
  }
  return net.createServer({ noDelay: true }, (socket) => {
    broker.accept(socket, listener, peerOf(socket), undefined);
  });
}

export function listen(server: ListeningServer, host: string, port: number): Promise<{ host: string; port: number }> {
  if (server instanceof HandleServer) return server.listen(host, port);
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    server.once('error', onError);
    server.listen({ host, port, ipv6Only: host === '::' ? false : undefined }, () => {
      server.off('error', onError);
      const address = server.address();
      if (address && typeof address === 'object') resolve({ host: address.address, port: address.port });
      else resolve({ host, port });
    });
  });
}
