import { chmod, lstat, stat, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { AuditEvent } from '../../audit/events.js';
import { unsafeDataDir } from '../data-dir.js';
import { BulwarkError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import {
  ADMIN_SOCKET_NAME,
  adminRequestSchema,
  DEFAULT_MAX_LINE_BYTES,
  type AdminErrorCode,
  type AdminResponse,
} from './protocol.js';

export interface AdminContext {
  /** `cli:<uid>@unix-socket`; the uid is what the client reported (see docs/admin.md). */
  actor: string;
  requestId: string | number;
}

export type AdminResult =
  | { ok: true; result: unknown; auditLabels?: Record<string, string> }
  | {
      ok: false;
      code: AdminErrorCode;
      message: string;
      /** Every problem, when there are several (a refused policy's `file:line:column: message` lines). */
      errors?: readonly string[];
      auditLabels?: Record<string, string>;
    };

/**
 * A command handler. Called once per request, requests of one connection in order, connections concurrently.
 * A throw becomes a `failed` response (and a failure audit event); the message of a thrown error is not sent to
 * the client, since it may carry internals. Handlers must not put secrets in `result` or `auditLabels`.
 */
export type AdminHandler = (params: unknown, context: AdminContext) => AdminResult | Promise<AdminResult>;

export interface AdminServerOptions {
  dataDir: string;
  /** Receives one `admin.command` event per request. Must not throw. */
  onAudit: (event: AuditEvent) => void;
  /**
   * False while the audit log cannot be written and is configured fail-closed: every command is then refused
   * (docs/audit.md "Durability and failure"), since what it did could not be recorded. Absent: always writable.
   */
  auditWritable?: () => boolean;
  log?: Logger;
  maxLineBytes?: number;
  maxConnections?: number;
  /** Idle connections are closed after this long. */
  idleTimeoutMs?: number;
}

const AUDIT_UNAVAILABLE =
  'the audit log cannot be written (audit.on_failure: fail-closed); administrative commands are refused until it recovers';

/** How long a closed connection's peer has to close its side before the socket is destroyed. */
const CLOSE_GRACE_MS = 2_000;

/** sockaddr_un.sun_path is 108 bytes on Linux and 104 on macOS, terminating NUL included. */
const MAX_SOCKET_PATH_BYTES = 103;

/**
 * The local control channel: a Unix domain socket in the data directory, mode 0600. Node exposes no peer
 * credentials (SO_PEERCRED), so access control is the file system's: only the broker's user (and root) can
 * connect. The data directory must not be writable by group or others, or someone could swap the socket.
 */
export class AdminServer {
  readonly socketPath: string;
  private readonly handlers = new Map<string, { handler: AdminHandler; description: string }>();
  private readonly sockets = new Set<Socket>();
  private readonly log: Logger;
  private readonly maxLineBytes: number;
  private server: Server | undefined;
  private socketInode: number | undefined;

  constructor(private readonly options: AdminServerOptions) {
    this.socketPath = join(options.dataDir, ADMIN_SOCKET_NAME);
    this.log = options.log ?? silentLogger;
    this.maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.register(
      'commands.list',
      () => ({
        ok: true,
        result: [...this.handlers].map(([name, h]) => ({ name, description: h.description })),
      }),
      'list the commands this broker accepts',
    );
  }

  /** Adds a command, e.g. `policy.reload`, `clients.list`. Registering a name twice is a bug and throws. */
  register(command: string, handler: AdminHandler, description = ''): void {
    if (this.handlers.has(command)) throw new Error(`admin command ${command} registered twice`);
    this.handlers.set(command, { handler, description });
  }

  get commands(): string[] {
    return [...this.handlers.keys()];
  }

  async start(): Promise<void> {
    if (this.server !== undefined) return;
    await this.checkDataDir();
    if (Buffer.byteLength(this.socketPath) > MAX_SOCKET_PATH_BYTES)
      throw new BulwarkError(
        'BULWARK_ERR_LISTEN',
        `admin socket path ${this.socketPath} is too long for a Unix socket`,
        undefined,
        `use a data directory path shorter than ${MAX_SOCKET_PATH_BYTES - ADMIN_SOCKET_NAME.length - 1} bytes`,
      );
    await this.clearStaleSocket();
    // Half-open: a client that ends its side once it has written its requests (`printf … | socat - UNIX-CONNECT:…`)
    // still gets their answers; `accept` closes ours after the last one.
    const server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // The socket file is created by bind() inside listen(); a umask of 0177 makes it 0600 from its first
      // instant, so there is no window in which another user could connect before the chmod below.
      const previous = process.umask(0o177);
      try {
        server.listen(this.socketPath, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(previous);
      }
    });
    server.on('error', (error) => this.log.error({ err: error }, 'admin socket error'));
    await chmod(this.socketPath, 0o600);
    const info = await lstat(this.socketPath);
    if (!info.isSocket() || (info.mode & 0o077) !== 0) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw new BulwarkError('BULWARK_ERR_LISTEN', `admin socket ${this.socketPath} is not owner-only after creation`);
    }
    this.socketInode = info.ino;
    this.server = server;
    this.log.info({ socket: this.socketPath }, 'admin control channel listening');
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    // Remove the file only if it is still ours (a second broker may have replaced a socket we no longer own).
    const info = await lstat(this.socketPath).catch(() => undefined);
    if (info?.isSocket() === true && info.ino === this.socketInode)
      await unlink(this.socketPath).catch(() => undefined);
  }

  /** The control socket goes only into a data directory start would accept (`unsafeDataDir`). */
  private async checkDataDir(): Promise<void> {
    if ((await stat(this.options.dataDir).catch(() => undefined)) === undefined)
      throw new BulwarkError(
        'BULWARK_ERR_LISTEN',
        `data directory ${this.options.dataDir} does not exist`,
        undefined,
        'create it with mode 0700 owned by the broker user',
      );
    const problem = unsafeDataDir(this.options.dataDir);
    if (problem) throw problem;
  }

  private async clearStaleSocket(): Promise<void> {
    const info = await lstat(this.socketPath).catch(() => undefined);
    if (info === undefined) return;
    if (!info.isSocket())
      throw new BulwarkError(
        'BULWARK_ERR_LISTEN',
        `${this.socketPath} exists and is not a socket; refusing to replace it`,
        undefined,
        'move the file away',
      );
    const live = await new Promise<boolean>((resolve) => {
      const probe = createConnection(this.socketPath);
      probe.once('connect', () => {
        probe.destroy();
        resolve(true);
      });
      probe.once('error', () => resolve(false));
    });
    if (live)
      throw new BulwarkError(
        'BULWARK_ERR_LISTEN',
        `another broker is listening on ${this.socketPath}`,
        undefined,
        'stop it, or use another data directory',
      );
    await unlink(this.socketPath);
  }

  private accept(socket: Socket): void {
    socket.on('error', () => socket.destroy());
    const limit = this.options.maxConnections ?? 16;
    // Refused with an answer rather than by `server.maxConnections`, which closes the socket unanswered and leaves
    // the client with an EPIPE on its request that says nothing about why.
    if (this.sockets.size >= limit) {
      this.audit('unparsed', 'cli:unknown@unix-socket', null, 'busy', `connection limit (${limit}) reached`);
      socket.resume();
      closeWithDeadline(
        socket,
        `${JSON.stringify(errorResponse(null, 'busy', `the control socket already has ${limit} connections, its limit; try again later`))}\n`,
      );
      return;
    }
    this.sockets.add(socket);
    // A client that ignores our FIN would keep its place (and with 16 of them, lock the CLI out) without the deadline.
    const idleTimeoutMs = this.options.idleTimeoutMs ?? 60_000;
    socket.setTimeout(idleTimeoutMs, () => closeWithDeadline(socket));
    let buffered: Buffer[] = [];
    let bufferedBytes = 0;
    let queue = Promise.resolve();
    // Requests read and not yet answered (and flushed). While there are any the socket is not read: a client that
    // writes requests and never reads the answers would otherwise have every one run and its answer kept in memory.
    // So what one connection holds is one read's worth of request lines and one answer the kernel has not taken.
    let unanswered = 0;
    const answered = (): void => {
      unanswered--;
      if (unanswered === 0 && !socket.destroyed && !socket.writableEnded && bufferedBytes <= this.maxLineBytes)
        socket.resume();
    };
    // The idle timeout restarts with every byte, so a client trickling one request line would keep its place for as
    // long as it liked: a line must also be complete within the idle timeout of its first byte. Not counted while the
    // broker itself is not reading (a request of this connection still running).
    let lineDeadline: NodeJS.Timeout | undefined;
    const lineTooSlow = (): void => {
      lineDeadline = undefined;
      if (socket.destroyed || socket.writableEnded || bufferedBytes === 0) return;
      if (unanswered > 0) {
        lineDeadline = setTimeout(lineTooSlow, idleTimeoutMs).unref();
        return;
      }
      buffered = [];
      socket.pause();
      this.audit('unparsed', 'cli:unknown@unix-socket', null, 'bad_request', 'request line not completed in time');
      closeWithDeadline(
        socket,
        `${JSON.stringify(errorResponse(null, 'bad_request', `request line not completed within ${idleTimeoutMs} ms of its first byte`))}\n`,
      );
    };
    socket.on('close', () => {
      this.sockets.delete(socket);
      clearTimeout(lineDeadline);
    });
    // The client has sent all it will: what it sent in full is run and answered, then the broker closes its side.
    // (Node closing it at once, as without `allowHalfOpen`, dropped the answer to any request still running: a
    // `ban.add` took effect and its client heard nothing.) A last line without its newline is not a request.
    socket.on('end', () => {
      clearTimeout(lineDeadline);
      lineDeadline = undefined;
      buffered = [];
      queue = queue.then(() => {
        if (!socket.destroyed && !socket.writableEnded) closeWithDeadline(socket);
      });
    });
    socket.on('data', (chunk: Buffer) => {
      let start = 0;
      for (let newline = chunk.indexOf(0x0a, start); newline !== -1; newline = chunk.indexOf(0x0a, start)) {
        buffered.push(chunk.subarray(start, newline));
        const line = Buffer.concat(buffered).toString('utf8');
        buffered = [];
        bufferedBytes = 0;
        clearTimeout(lineDeadline);
        lineDeadline = undefined;
        start = newline + 1;
        unanswered++;
        queue = queue.then(() => this.handleLine(line, socket)).then(answered);
      }
      if (unanswered > 0) socket.pause();
      if (start < chunk.length) {
        buffered.push(chunk.subarray(start));
        bufferedBytes += chunk.length - start;
        lineDeadline ??= setTimeout(lineTooSlow, idleTimeoutMs).unref();
        if (bufferedBytes > this.maxLineBytes) {
          buffered = [];
          queue = queue.then(() => {
            this.audit('unparsed', 'cli:unknown@unix-socket', null, 'too_large', 'request line too long');
            closeWithDeadline(
              socket,
              `${JSON.stringify(errorResponse(null, 'too_large', `request longer than ${this.maxLineBytes} bytes`))}\n`,
            );
          });
          socket.pause();
        }
      }
    });
  }

  /** Runs one request and resolves once its answer is in the kernel (or the connection is gone). */
  private async handleLine(line: string, socket: Socket): Promise<void> {
    // A connection being closed (idle, or a line too long) runs nothing more of what it had sent.
    if (line.trim() === '' || socket.destroyed || socket.writableEnded) return;
    const response = await this.dispatch(line);
    if (socket.destroyed || socket.writableEnded) return;
    if (socket.write(`${JSON.stringify(response)}\n`)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        socket.off('drain', done);
        socket.off('close', done);
        resolve();
      };
      socket.on('drain', done);
      socket.on('close', done);
    });
  }

  /** Parses, runs and audits one request. Never throws. */
  async dispatch(line: string): Promise<AdminResponse> {
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      this.audit('unparsed', 'cli:unknown@unix-socket', null, 'bad_request', 'not JSON');
      return errorResponse(null, 'bad_request', 'request is not a JSON object on one line');
    }
    const parsed = adminRequestSchema.safeParse(raw);
    if (!parsed.success) {
      const id = typeof raw === 'object' && raw !== null && 'id' in raw ? idOf((raw as { id: unknown }).id) : null;
      const message = `malformed request: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`;
      this.audit('unparsed', 'cli:unknown@unix-socket', id, 'bad_request', message);
      return errorResponse(id, 'bad_request', message);
    }
    const request = parsed.data;
    const actor = `cli:${request.uid ?? 'unknown'}@unix-socket`;
    const entry = this.handlers.get(request.command);
    if (entry === undefined) {
      this.audit(request.command, actor, request.id, 'unknown_command', 'unknown command');
      return errorResponse(request.id, 'unknown_command', `unknown command ${request.command}; try commands.list`);
    }
    if (this.options.auditWritable?.() === false) {
      // The refusal itself is queued for the log like every event, and written once the log recovers.
      this.audit(request.command, actor, request.id, 'audit_unavailable', AUDIT_UNAVAILABLE);
      return errorResponse(request.id, 'audit_unavailable', AUDIT_UNAVAILABLE);
    }
    let result: AdminResult;
    try {
      result = await entry.handler(request.params ?? {}, { actor, requestId: request.id });
    } catch (error) {
      this.log.error({ err: error, command: request.command }, 'admin command failed');
      result = { ok: false, code: 'failed', message: 'the command failed; see the broker log' };
    }
    if (result.ok) {
      this.audit(request.command, actor, request.id, undefined, undefined, result.auditLabels);
      return { id: request.id, ok: true, result: result.result };
    }
    this.audit(request.command, actor, request.id, result.code, result.message, result.auditLabels);
    return errorResponse(request.id, result.code, result.message, result.errors);
  }

  private audit(
    command: string,
    actor: string,
    requestId: string | number | null,
    errorCode: AdminErrorCode | undefined,
    message: string | undefined,
    extra?: Record<string, string>,
  ): void {
    const event: AuditEvent = {
      event: {
        action: 'admin.command',
        outcome: errorCode === undefined ? 'success' : 'failure',
        ...(message === undefined ? {} : { reason: message }),
      },
      actor,
      labels: {
        command,
        channel: 'unix-socket',
        ...(requestId === null ? {} : { request_id: String(requestId) }),
        ...(errorCode === undefined ? {} : { error_code: errorCode }),
        ...extra,
      },
    };
    try {
      this.options.onAudit(event);
    } catch (error) {
      this.log.error({ err: error }, 'admin audit sink threw');
    }
  }
}

/** Sends `last` and a FIN, and destroys the socket if the peer has not closed its side within the grace period. */
function closeWithDeadline(socket: Socket, last?: string): void {
  socket.setTimeout(0);
  if (last === undefined) socket.end();
  else socket.end(last);
  setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
}

function idOf(value: unknown): string | number | null {
  return typeof value === 'string' || typeof value === 'number' ? value : null;
}

function errorResponse(
  id: string | number | null,
  code: AdminErrorCode,
  message: string,
  errors?: readonly string[],
): AdminResponse {
  return { id, ok: false, error: { code, message, ...(errors === undefined ? {} : { errors }) } };
}
