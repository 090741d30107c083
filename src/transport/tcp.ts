import net from 'node:net';
import type { Broker } from '../broker.js';
import type { ListenerRuntime } from '../listener.js';

/** IPv4 clients on a dual-stack socket appear as `::ffff:a.b.c.d`; policies and bans see the plain IPv4 form. */
export function normalizeAddress(address: string | undefined): string {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export function peerOf(socket: net.Socket): { address: string; port: number } {
  return { address: normalizeAddress(socket.remoteAddress), port: socket.remotePort ?? 0 };
}

/** A plain TCP listener: every accepted socket becomes a `Connection`. */
export function createTcpServer(broker: Broker, listener: ListenerRuntime): net.Server {
  return net.createServer({ noDelay: true }, (socket) => {
    broker.accept(socket, listener, peerOf(socket), undefined);
  });
}

export function listen(server: net.Server, host: string, port: number): Promise<{ host: string; port: number }> {
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
