import { Buffer } from 'node:buffer';
import { getSystemErrorMap, getSystemErrorName } from 'node:util';
import type { ByteStream } from '../connection/byte-stream.js';
import type { ShutdownRequest, Status, TcpHandle, TcpHandles, WriteRequest } from './tcp-handles.js';

/** The socket a native handle belongs to, kept on the handle as `net` does, so the callbacks below can be shared. */
const OWNER = Symbol('bulwark.handle-socket');
type OwnedHandle = TcpHandle & { [OWNER]: HandleSocket };

/** An error shaped as `net` shapes it (`read ECONNRESET`, with `code`, `errno`, `syscall`), for logs and audit. */
export function uvError(status: Status, syscall: string, detail?: string): NodeJS.ErrnoException {
  let code = `E${-status}`;
  let text = '';
  try {
    code = getSystemErrorName(status);
    text = getSystemErrorMap().get(status)?.[1] ?? '';
  } catch {
    // Not a known errno: keep the number.
  }
  const message = detail === undefined ? `${syscall} ${code}` : `${syscall} ${code}: ${text} ${detail}`;
  return Object.assign(new Error(message), { code, errno: status, syscall });
}

/**
 * A write request the kernel took whole was never bound to native state (Node binds the request object only when a
 * write has to wait), so it can carry the next write, of any socket: one object instead of one per write.
 */
let spareWriteRequest: WriteRequest | undefined;

/**
 * Every direct socket reads into this one buffer, and each read is lent to the connection as a view of it, valid
 * until the handler returns (`ByteStream`'s `data`): the framer and the codec copy what they keep. Without it Node
 * gives each read an ArrayBuffer and a Buffer of its own, which a young-generation collection then finds and frees
 * one by one: at 5,000 single-message reads a second that was 0.4 ms of every second collection, and the messages
 * that arrived meanwhile waited for it (docs/performance.md, session 14). Reads run one at a time on the main thread
 * and each is handled before the next one starts, so one buffer serves every socket.
 */
const READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024);
/** Views of the first N bytes of the read buffer for small reads (acknowledgements, small PUBLISH), made once. */
const SMALL_READ = 1024;
const readViews = new Array<Buffer | undefined>(SMALL_READ + 1).fill(undefined);

function readView(length: number): Buffer {
  if (length > SMALL_READ) return READ_BUFFER.subarray(0, length);
  return (readViews[length] ??= READ_BUFFER.subarray(0, length));
}

function onHandleRead(this: TcpHandle): void {
  (this as OwnedHandle)[OWNER].onRead();
}

function onWriteComplete(this: WriteRequest, status: Status): void {
  this.buffer = undefined;
  (this.handle as OwnedHandle)[OWNER].onWriteDone(status);
}

function onShutdownComplete(this: ShutdownRequest, status: Status): void {
  (this.handle as OwnedHandle)[OWNER].onShutdownDone(status);
}

function onHandleClosed(this: TcpHandle): void {
  (this as OwnedHandle)[OWNER].onClosed();
}

/**
 * An accepted TCP connection driven through its native handle. It keeps the semantics the broker relied on from
 * `net.Socket` (with `allowHalfOpen` off): `data`, then at most one `error`, then exactly one `close`, always after
 * the handle is closed; `end()` sends what is queued before the FIN, and the peer's FIN ends our side too. Writes go
 * to libuv directly: what the kernel takes at once is done, the rest stays queued in libuv (`writableLength`) and
 * its buffer stays referenced until the write completes.
 */
export class HandleSocket implements ByteStream {
  destroyed = false;
  /**
   * The listeners, as fields rather than an EventEmitter: a connection subscribes once to each event and the
   * emitter's set-up was 2% of accepting a client on the connect benchmark. `data` and `error` take one listener
   * (the connection); `close` takes any number (shutdown waits on it too).
   */
  private dataListener: ((this: HandleSocket, chunk: Buffer) => void) | undefined;
  private errorListener: ((this: HandleSocket, error: Error) => void) | undefined;
  private closeListeners: ((this: HandleSocket) => void)[] = [];
  /** `end()` was called: no more writes; libuv sends the FIN once the queued writes are done. */
  private ending = false;
  private finSent = false;
  private peerEnded = false;
  private corked: Buffer[] | undefined;
  private corkedBytes = 0;
  private paused = false;

  constructor(
    private readonly handles: TcpHandles,
    private readonly handle: TcpHandle,
    private readonly owner: { socketClosed(): void },
  ) {
    (handle as OwnedHandle)[OWNER] = this;
    handle.onread = onHandleRead;
    handle.useUserBuffer(READ_BUFFER);
  }

  /** Starts reading; separate from the constructor so the connection's listeners are in place first. */
  start(): void {
    const status = this.handle.readStart();
    if (status !== 0) this.fail(status, 'read');
  }

  pause(): this {
    if (!this.destroyed && !this.paused) {
      this.paused = true;
      this.handle.readStop();
    }
    return this;
  }

  resume(): this {
    if (!this.destroyed && this.paused) {
      this.paused = false;
      this.start();
    }
    return this;
  }

  on(event: 'data', listener: (chunk: Buffer) => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
  on(event: 'close', listener: () => void): this;
  on(event: 'data' | 'error' | 'close', listener: (...args: never[]) => void): this {
    if (event === 'close') {
      this.closeListeners.push(listener as () => void);
      return this;
    }
    if ((event === 'data' ? this.dataListener : this.errorListener) !== undefined)
      throw new Error(`a HandleSocket takes one '${event}' listener`);
    if (event === 'data') this.dataListener = listener as (chunk: Buffer) => void;
    else this.errorListener = listener as (error: Error) => void;
    return this;
  }

  /** `close` happens once, so listening once is listening. */
  once(event: 'close', listener: () => void): this {
    return this.on(event, listener);
  }

  get writableLength(): number {
    return this.destroyed ? 0 : this.handle.writeQueueSize + this.corkedBytes;
  }

  write(data: Buffer): boolean {
    if (this.destroyed || this.ending) return false;
    if (this.corked) {
      this.corked.push(data);
      this.corkedBytes += data.length;
      return true;
    }
    const request = this.writeRequest();
    return this.dispatched(request, this.handle.writeBuffer(request, data), data);
  }

  cork(): void {
    if (!this.destroyed) this.corked ??= [];
  }

  uncork(): void {
    const chunks = this.corked;
    if (!chunks) return;
    this.corked = undefined;
    this.corkedBytes = 0;
    if (chunks.length === 0 || this.destroyed) return;
    if (chunks.length === 1) {
      this.write(chunks[0]!);
      return;
    }
    const request = this.writeRequest();
    this.dispatched(request, this.handle.writev(request, chunks, true), chunks);
  }

  end(data?: Buffer): this {
    if (data) this.write(data);
    if (this.ending || this.destroyed) return this;
    this.uncork();
    this.ending = true;
    this.sendFin();
    return this;
  }

  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.corked = undefined;
    this.corkedBytes = 0;
    // Writes still queued in libuv complete with ECANCELED; their callbacks see `destroyed` and stop there.
    this.handle.close(onHandleClosed);
    return this;
  }

  closeIfWritten(): boolean {
    if (this.destroyed) return true;
    if (this.writableLength > 0) return false;
    this.destroy();
    return true;
  }

  private writeRequest(): WriteRequest {
    const spare = spareWriteRequest;
    if (spare === undefined) {
      const request = this.handles.createWriteRequest(this.handle);
      request.oncomplete = onWriteComplete;
      return request;
    }
    spareWriteRequest = undefined;
    spare.handle = this.handle;
    return spare;
  }

  private dispatched(request: WriteRequest, status: Status, data: Buffer | Buffer[]): boolean {
    if (status !== 0) {
      this.fail(status, 'write');
      return false;
    }
    if (this.handles.lastWriteWasAsync()) request.buffer = data;
    else spareWriteRequest = request;
    return true;
  }

  /** `uv_shutdown` waits for the writes queued before it, so what was written goes out before the FIN. */
  private sendFin(): void {
    const request = this.handles.createShutdownRequest(this.handle);
    request.oncomplete = onShutdownComplete;
    // Fails when the peer is already gone (ENOTCONN): nothing is left to say to it.
    if (this.handle.shutdown(request) !== 0) this.destroy();
  }

  private fail(status: Status, syscall: string): void {
    if (this.destroyed) return;
    this.errorListener?.call(this, uvError(status, syscall));
    this.destroy();
  }

  /** @internal libuv reported a read. */
  onRead(): void {
    const status = this.handles.lastReadStatus();
    if (status > 0) {
      if (!this.destroyed) this.dataListener?.call(this, readView(status));
      return;
    }
    if (status === 0) return;
    if (status !== this.handles.eof) {
      this.fail(status, 'read');
      return;
    }
    // The peer's FIN: no half-open connections, as `net` with `allowHalfOpen: false`.
    this.peerEnded = true;
    if (this.destroyed) return;
    if (!this.ending) this.end();
    else if (this.finSent) this.destroy();
  }

  /** @internal a write that did not complete at once has. */
  onWriteDone(status: Status): void {
    if (status < 0) this.fail(status, 'write');
  }

  /** @internal our FIN is out. */
  onShutdownDone(status: Status): void {
    this.finSent = true;
    if (this.destroyed) return;
    if (status < 0 || this.peerEnded) this.destroy();
  }

  /** @internal the handle is closed: the descriptor is released. */
  onClosed(): void {
    this.owner.socketClosed();
    const listeners = this.closeListeners;
    this.closeListeners = [];
    for (const listener of listeners) listener.call(this);
  }
}
