/**
 * Node's own TCP handles, without the `net.Socket` stream around them.
 *
 * `net.Socket` builds a Duplex (a readable and a writable state, an event table, a write queue) for every accepted
 * connection, and tears it down through the stream machinery. On this project's connect benchmark that is about
 * 70 µs of CPU per connection, over half of what accepting a client costs; the native handle underneath does the
 * same socket work without it (docs/performance.md, session 5). These are the same bindings `net` is built on,
 * reached through `process.binding`, which Node keeps for them on an allow list. Nothing else in the broker touches
 * Node internals: this module checks their shape once, and when they are missing or changed the TCP listeners
 * fall back to `net` (see `tcpHandles()`).
 */

/** libuv status codes are negative errno values; 0 is success. */
export type Status = number;

export interface WriteRequest {
  handle: TcpHandle;
  oncomplete: (this: WriteRequest, status: Status) => void;
  /** Kept referenced until the write completes: libuv writes from the caller's memory. */
  buffer: Buffer | Buffer[] | undefined;
}

export interface ShutdownRequest {
  handle: TcpHandle;
  oncomplete: (this: ShutdownRequest, status: Status) => void;
}

export interface TcpHandle {
  /** Reads are reported here; with a user buffer the bytes are in that buffer and `buffer` is undefined. */
  onread: ((this: TcpHandle, buffer: ArrayBuffer | undefined) => void) | undefined;
  onconnection: ((this: TcpHandle, status: Status, client: TcpHandle | undefined) => void) | undefined;
  /** Bytes handed to libuv and not yet written to the kernel. */
  readonly writeQueueSize: number;
  bind(address: string, port: number): Status;
  bind6(address: string, port: number, flags: number): Status;
  listen(backlog: number): Status;
  getsockname(out: Record<string, unknown>): Status;
  getpeername(out: Record<string, unknown>): Status;
  setNoDelay(enable: boolean): Status;
  readStart(): Status;
  readStop(): Status;
  /** Reads go into `buffer` (its start, at most its length) instead of a new ArrayBuffer per read. */
  useUserBuffer(buffer: Buffer): void;
  writeBuffer(request: WriteRequest, data: Buffer): Status;
  writev(request: WriteRequest, chunks: Buffer[], allBuffers: true): Status;
  shutdown(request: ShutdownRequest): Status;
  close(callback?: () => void): void;
}

export interface TcpHandles {
  createServerHandle(): TcpHandle;
  createWriteRequest(handle: TcpHandle): WriteRequest;
  createShutdownRequest(handle: TcpHandle): ShutdownRequest;
  /** Bytes read by the read that is being reported; negative is a libuv error, `eof` the end of the stream. */
  lastReadStatus(): Status;
  /** Whether the write just dispatched is still in flight (its `oncomplete` will run) rather than done. */
  lastWriteWasAsync(): boolean;
  readonly eof: Status;
  readonly ipv6OnlyFlag: number;
}

interface TcpWrapBinding {
  TCP: new (type: number) => TcpHandle;
  constants: { SOCKET: number; SERVER: number; UV_TCP_IPV6ONLY: number };
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteRequest;
  ShutdownWrap: new () => ShutdownRequest;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
}

interface UvBinding {
  UV_EOF: number;
}

type Binding = (name: string) => unknown;

const HANDLE_METHODS = [
  'bind',
  'bind6',
  'listen',
  'getsockname',
  'getpeername',
  'setNoDelay',
  'readStart',
  'readStop',
  'useUserBuffer',
  'writeBuffer',
  'writev',
  'shutdown',
  'close',
] as const;

function isRecord(value: unknown): value is Record<string, unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null;
}

/** Checks the bindings have the shape this module relies on; `undefined` when any part is missing. */
function load(binding: Binding): TcpHandles | undefined {
  const tcp = binding('tcp_wrap');
  const stream = binding('stream_wrap');
  const uv = binding('uv');
  if (!isRecord(tcp) || !isRecord(stream) || !isRecord(uv)) return undefined;
  const constants = tcp['constants'];
  if (typeof tcp['TCP'] !== 'function' || !isRecord(constants) || typeof constants['SERVER'] !== 'number') return;
  if (typeof stream['WriteWrap'] !== 'function' || typeof stream['ShutdownWrap'] !== 'function') return undefined;
  if (!(stream['streamBaseState'] instanceof Int32Array)) return undefined;
  for (const key of ['kReadBytesOrError', 'kLastWriteWasAsync']) if (typeof stream[key] !== 'number') return undefined;
  if (typeof uv['UV_EOF'] !== 'number') return undefined;
  const t = tcp as unknown as TcpWrapBinding;
  const s = stream as unknown as StreamWrapBinding;
  const probe = new t.TCP(t.constants.SERVER) as unknown as Record<string, unknown>;
  const complete = HANDLE_METHODS.every((name) => typeof probe[name] === 'function');
  (probe as unknown as TcpHandle).close();
  if (!complete) return undefined;
  const state = s.streamBaseState;
  const { kReadBytesOrError, kLastWriteWasAsync, WriteWrap, ShutdownWrap } = s;
  const { TCP } = t;
  const server = t.constants.SERVER;
  return {
    createServerHandle: () => new TCP(server),
    createWriteRequest(handle) {
      const request = new WriteWrap();
      request.handle = handle;
      return request;
    },
    createShutdownRequest(handle) {
      const request = new ShutdownWrap();
      request.handle = handle;
      return request;
    },
    lastReadStatus: () => state[kReadBytesOrError]!,
    lastWriteWasAsync: () => state[kLastWriteWasAsync] !== 0,
    eof: (uv as unknown as UvBinding).UV_EOF,
    ipv6OnlyFlag: t.constants.UV_TCP_IPV6ONLY,
  };
}

let loaded: { handles: TcpHandles | undefined; why: string } | undefined;

/**
 * The TCP handle bindings, or why they cannot be used. `process.binding` is deprecated (DEP0111) but still serves
 * these modules; under `--pending-deprecation` it would warn, and a future Node may drop it, so any failure here
 * means "use `net`", never a broken listener.
 */
export function tcpHandles(): { handles: TcpHandles | undefined; why: string } {
  if (loaded) return loaded;
  const binding = (process as unknown as { binding?: Binding }).binding;
  if (typeof binding !== 'function') return (loaded = { handles: undefined, why: 'process.binding is unavailable' });
  const pending =
    process.execArgv.includes('--pending-deprecation') ||
    (process.env['NODE_OPTIONS'] ?? '').includes('--pending-deprecation') ||
    process.env['NODE_PENDING_DEPRECATION'] === '1';
  if (pending)
    return (loaded = { handles: undefined, why: 'process.binding is deprecated under --pending-deprecation' });
  try {
    const handles = load(binding.bind(process));
    loaded = handles
      ? { handles, why: '' }
      : { handles: undefined, why: `Node ${process.version}'s TCP bindings do not have the expected shape` };
  } catch (error) {
    loaded = { handles: undefined, why: `Node's TCP bindings cannot be loaded: ${(error as Error).message}` };
  }
  return loaded;
}
