import { createConnection } from 'node:net';
import { join } from 'node:path';
import { ADMIN_SOCKET_NAME, adminResponseSchema } from './protocol.js';

export type AdminCallResult =
  /** No broker is listening: no socket file, or a stale one (connection refused). Safe to work offline. */
  | { kind: 'unreachable'; reason: string }
  | { kind: 'ok'; result: unknown }
  | { kind: 'error'; code: string; message: string; errors?: readonly string[] };

export function adminSocketPath(dataDir: string): string {
  return join(dataDir, ADMIN_SOCKET_NAME);
}

/** Errors that mean "nobody is listening", as opposed to "someone is, but refused us" (EACCES) or a timeout. */
const UNREACHABLE = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK']);

/** The broker accepted the connection and dropped it before answering. */
const CUT_OFF = new Set(['EPIPE', 'ECONNRESET']);

function cutOff(socketPath: string, code: string): AdminCallResult {
  return {
    kind: 'error',
    code: 'closed',
    message:
      `the broker closed the connection on ${socketPath} without answering (${code}): ` +
      'it may be at its limit of control connections, or stopping; try again',
  };
}

let nextId = 1;

/**
 * Sends one command to the broker's control channel and waits for its answer. Never throws: an unreachable broker,
 * a permission problem, a timeout and an error answer are all values. Permission and timeout are `error`, not
 * `unreachable`, so a caller never falls back to editing files under a broker that is actually running.
 */
export function callAdmin(
  socketPath: string,
  command: string,
  params: unknown,
  options: { timeoutMs?: number } = {},
): Promise<AdminCallResult> {
  const id = nextId++;
  return new Promise((resolve) => {
    let settled = false;
    let connected = false;
    const chunks: Buffer[] = [];
    const socket = createConnection(socketPath);
    const finish = (result: AdminCallResult): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(options.timeoutMs ?? 10_000, () =>
      finish({ kind: 'error', code: 'timeout', message: `no answer from ${socketPath}` }),
    );
    socket.on('connect', () => {
      connected = true;
      socket.write(`${JSON.stringify({ id, command, params, uid: process.getuid?.() })}\n`);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (!connected && UNREACHABLE.has(error.code ?? ''))
        finish({ kind: 'unreachable', reason: `${error.code ?? 'error'} on ${socketPath}` });
      else if (connected && CUT_OFF.has(error.code ?? '')) finish(cutOff(socketPath, error.code!));
      else finish({ kind: 'error', code: error.code ?? 'socket_error', message: error.message });
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (!chunk.includes(0x0a)) return;
      const text = Buffer.concat(chunks).toString('utf8');
      const line = text.slice(0, text.indexOf('\n'));
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        finish({ kind: 'error', code: 'bad_response', message: 'the broker answered something that is not JSON' });
        return;
      }
      const response = adminResponseSchema.safeParse(parsed);
      if (!response.success) finish({ kind: 'error', code: 'bad_response', message: 'unexpected answer shape' });
      else if (response.data.ok) finish({ kind: 'ok', result: response.data.result });
      else {
        const { code, message, errors } = response.data.error;
        finish({ kind: 'error', code, message, ...(errors === undefined ? {} : { errors }) });
      }
    });
    socket.on('close', () => finish(cutOff(socketPath, 'closed')));
  });
}
