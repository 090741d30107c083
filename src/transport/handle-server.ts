import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { HandleSocket, uvError } from './handle-socket.js';
import type { Status, TcpHandle, TcpHandles } from './tcp-handles.js';

/** The accepted client's address, named as `net.Socket` names it, so `peerOf` reads both. */
export interface Peer {
  remoteAddress: string | undefined;
  remotePort: number;
}

const OWNER = Symbol('bulwark.handle-server');
type OwnedHandle = TcpHandle & { [OWNER]: HandleServer };

/** As `net.Server`'s default: the kernel caps it at `net.core.somaxconn`. */
const BACKLOG = 511;

function onConnection(this: TcpHandle, status: Status, client: TcpHandle | undefined): void {
  (this as OwnedHandle)[OWNER].onConnection(status, client);
}

function onListenerClosed(this: TcpHandle): void {
  (this as OwnedHandle)[OWNER].onListenerClosed();
}

/**
 * A plain TCP listener on Node's native handle: each accepted connection becomes a `HandleSocket` with TCP_NODELAY
 * set. Like `net.Server`, `close()` stops accepting at once and calls back when the connections it accepted have
 * closed too. A failed accept (EMFILE when the descriptors run out) is reported and the listener keeps going.
 */
export class HandleServer {
  private handle: TcpHandle | undefined;
  /**
   * Linux copies TCP_NODELAY from the listening socket to every socket it accepts, so one `setsockopt` at listen
   * replaces one per connection (a system call and a call into native code on every connect). Elsewhere, or if
   * setting it on the listener fails, each accepted socket gets its own.
   */
  private acceptedInheritNoDelay = false;
  private open = 0;
  private closingListener = false;
  private listenerClosed = false;
  private closeCallbacks: (() => void)[] = [];

  constructor(
    private readonly handles: TcpHandles,
    private readonly onSocket: (socket: HandleSocket, peer: Peer) => void,
    private readonly onAcceptError: (error: NodeJS.ErrnoException) => void,
  ) {}

  /** Binds and listens; a host name is resolved first, as `net` does. An IPv6 wildcard also takes IPv4. */
  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    if (this.handle) throw new Error('already listening');
    const address = isIP(host) === 0 ? (await lookup(host)).address : host;
    const handle = this.handles.createServerHandle();
    let status = isIP(address) === 6 ? handle.bind6(address, port, 0) : handle.bind(address, port);
    if (status === 0) status = handle.listen(BACKLOG);
    if (status !== 0) {
      handle.close();
      throw uvError(status, 'listen', `${address}:${port}`);
    }
    this.acceptedInheritNoDelay = process.platform === 'linux' && handle.setNoDelay(true) === 0;
    (handle as OwnedHandle)[OWNER] = this;
    handle.onconnection = onConnection;
    this.handle = handle;
    const bound: Record<string, unknown> = {};
    handle.getsockname(bound);
    return {
      host: typeof bound['address'] === 'string' ? bound['address'] : address,
      port: typeof bound['port'] === 'number' ? bound['port'] : port,
    };
  }

  /** Stops accepting; `done` runs once the listening handle and every accepted connection are closed. */
  close(done?: () => void): void {
    if (done) this.closeCallbacks.push(done);
    const handle = this.handle;
    if (handle) {
      this.handle = undefined;
      this.closingListener = true;
      handle.close(onListenerClosed);
      return;
    }
    if (!this.closingListener) this.listenerClosed = true;
    this.maybeClosed();
  }

  /** @internal */
  onConnection(status: Status, client: TcpHandle | undefined): void {
    if (status !== 0 || !client) {
      this.onAcceptError(uvError(status, 'accept'));
      return;
    }
    if (!this.handle) {
      client.close();
      return;
    }
    if (!this.acceptedInheritNoDelay) client.setNoDelay(true);
    // The fields native code sets, there from the start: added to an empty object, they made shapes that no live
    // object keeps once the connections are gone, and V8 drops code compiled for such shapes at a full collection.
    const name: Record<string, unknown> = { address: undefined, family: undefined, port: undefined };
    client.getpeername(name);
    this.open++;
    const socket = new HandleSocket(this.handles, client, this);
    this.onSocket(socket, {
      remoteAddress: typeof name['address'] === 'string' ? name['address'] : undefined,
      remotePort: typeof name['port'] === 'number' ? name['port'] : 0,
    });
    if (!socket.destroyed) socket.start();
  }

  /** @internal */
  onListenerClosed(): void {
    this.closingListener = false;
    this.listenerClosed = true;
    this.maybeClosed();
  }

  /** @internal one of the accepted connections has closed. */
  socketClosed(): void {
    this.open--;
    this.maybeClosed();
  }

  private maybeClosed(): void {
    if (!this.listenerClosed || this.open > 0) return;
    const callbacks = this.closeCallbacks;
    this.closeCallbacks = [];
    for (const callback of callbacks) callback();
  }
}
