import { spawn } from 'node:child_process';
import { chmodSync, chownSync, lchownSync, lstatSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import { callAdmin } from '../../../src/admin/client.js';
import { AdminServer } from '../../../src/admin/server.js';
import { BulwarkError } from '../../../src/errors.js';
import { until } from '../../helpers/until.js';

let dir: string;
let servers: AdminServer[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'bw-admin-'));
  servers = [];
});
afterEach(async () => {
  for (const server of servers) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function started(options: Partial<ConstructorParameters<typeof AdminServer>[0]> = {}) {
  const events: AuditEvent[] = [];
  const server = new AdminServer({ dataDir: dir, onAudit: (e) => events.push(e), ...options });
  server.register('echo', (params) => ({ ok: true, result: params }), 'answer with the params');
  server.register('boom', () => {
    throw new Error('internal detail /etc/secret-path');
  });
  await server.start();
  servers.push(server);
  return { server, events };
}

/** A raw client: writes `lines` and collects `count` response lines. */
function exchange(socketPath: string, payload: string, count: number): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const socket: Socket = createConnection(socketPath);
    let text = '';
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (chunk) => {
      text += chunk.toString('utf8');
      const lines = text.split('\n').filter((l) => l !== '');
      if (lines.length >= count) {
        socket.destroy();
        resolve(lines.map((l) => JSON.parse(l) as unknown));
      }
    });
    socket.on('error', reject);
  });
}

describe('admin control socket', () => {
  it('creates the socket owner-only (0600) in the data directory', async () => {
    const { server } = await started();
    const info = lstatSync(server.socketPath);
    expect(info.isSocket()).toBe(true);
    expect(info.mode & 0o777).toBe(0o600);
    expect(server.socketPath).toBe(join(dir, 'admin.sock'));
  });

  it('answers a command and audits it with the actor', async () => {
    const { server, events } = await started();
    const answer = await callAdmin(server.socketPath, 'echo', { hello: 'world' });
    expect(answer).toEqual({ kind: 'ok', result: { hello: 'world' } });
    expect(events).toEqual([
      expect.objectContaining({
        event: { action: 'admin.command', outcome: 'success' },
        actor: `cli:${process.getuid?.()}@unix-socket`,
        labels: expect.objectContaining({ command: 'echo', channel: 'unix-socket' }),
      }),
    ]);
  });

  it('answers malformed requests with an error and keeps serving on the same connection', async () => {
    const { server, events } = await started();
    const responses = await exchange(
      server.socketPath,
      'not json\n{"id":1}\n{"id":2,"command":"nope"}\n{"id":3,"command":"boom"}\n{"id":4,"command":"echo","params":[1]}\n',
      5,
    );
    expect(responses).toEqual([
      { id: null, ok: false, error: expect.objectContaining({ code: 'bad_request' }) },
      { id: 1, ok: false, error: expect.objectContaining({ code: 'bad_request' }) },
      { id: 2, ok: false, error: expect.objectContaining({ code: 'unknown_command' }) },
      { id: 3, ok: false, error: { code: 'failed', message: 'the command failed; see the broker log' } },
      { id: 4, ok: true, result: [1] },
    ]);
    expect(events.map((e) => [e.event.outcome, e.labels?.command, e.labels?.error_code])).toEqual([
      ['failure', 'unparsed', 'bad_request'],
      ['failure', 'unparsed', 'bad_request'],
      ['failure', 'nope', 'unknown_command'],
      ['failure', 'boom', 'failed'],
      ['success', 'echo', undefined],
    ]);
    expect(JSON.stringify(responses)).not.toContain('secret-path');
    expect(await callAdmin(server.socketPath, 'echo', 'still up')).toEqual({ kind: 'ok', result: 'still up' });
  });

  it('closes a connection whose request line exceeds the limit, and keeps serving others', async () => {
    const { server } = await started({ maxLineBytes: 1024 });
    const [response] = await exchange(server.socketPath, 'x'.repeat(4096), 1);
    expect(response).toMatchObject({ ok: false, error: { code: 'too_large' } });
    expect(await callAdmin(server.socketPath, 'echo', 1)).toEqual({ kind: 'ok', result: 1 });
  });

  it('answers every request a client sent before ending its side, then closes (printf … | socat)', async () => {
    const { server, events } = await started();
    const sockets = (server as unknown as { sockets: Set<Socket> }).sockets;
    // Still running when the broker reads the client's FIN, as a ban.add writing the block list may be.
    server.register('after-fin', async () => {
      await until(() => [...sockets].every((s) => s.readableEnded), 'the client ending its side');
      return { ok: true, result: 'ran' };
    });
    const client = createConnection({ path: server.socketPath, allowHalfOpen: true });
    let text = '';
    client.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    const closed = new Promise<void>((resolve) => client.on('close', () => resolve()));
    client.on('connect', () =>
      client.end(
        `${JSON.stringify({ id: 1, command: 'after-fin' })}\n${JSON.stringify({ id: 2, command: 'echo', params: [2] })}\n` +
          '{"id":3,"command":"echo"',
      ),
    );
    await closed;
    expect(
      text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as unknown),
    ).toEqual([
      { id: 1, ok: true, result: 'ran' },
      { id: 2, ok: true, result: [2] },
    ]);
    // The unfinished last line is no request: it is neither run nor audited.
    expect(events.map((e) => e.labels?.['request_id'])).toEqual(['1', '2']);
  });

  it('reads no further requests while its answers wait for a client that does not read them', async () => {
    const { server } = await started();
    const REQUESTS = 100;
    const ANSWER_BYTES = 256 * 1024;
    let handled = 0;
    server.register('large', () => {
      handled++;
      return { ok: true, result: 'x'.repeat(ANSWER_BYTES) };
    });
    const client = createConnection(server.socketPath);
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    client.write(Array.from({ length: REQUESTS }, (_, id) => `${JSON.stringify({ id, command: 'large' })}\n`).join(''));
    // Each answer is larger than what the kernel buffers between the two ends, so the server may be at most a
    // few answers ahead of what the client has read. Without the bound it answered every request at once and kept
    // them all in memory, however slowly the client read.
    const aheadOfReader: number[] = [];
    let text = '';
    let read = 0;
    await new Promise<void>((resolve, reject) => {
      client.on('error', reject);
      client.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        for (let newline = text.indexOf('\n'); newline !== -1; newline = text.indexOf('\n')) {
          text = text.slice(newline + 1);
          read++;
          aheadOfReader.push(handled - read);
        }
        if (read === REQUESTS) resolve();
      });
    });
    client.destroy();
    expect(handled).toBe(REQUESTS);
    expect(Math.max(...aheadOfReader)).toBeLessThanOrEqual(4);
  });

  it('closes a connection whose request line is not completed in time, though bytes keep arriving', async () => {
    const { server, events } = await started({ idleTimeoutMs: 200 });
    const client = createConnection(server.socketPath);
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    let text = '';
    client.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    let ended = false;
    client.on('end', () => (ended = true));
    client.on('error', () => undefined);
    // Each byte comes well within the idle timeout, so only a deadline on the whole request line can end this.
    client.write('{"id":1,');
    const trickle = setInterval(() => client.write(' '), 50);
    try {
      await until(() => ended, 'the server to close the connection');
    } finally {
      clearInterval(trickle);
      client.destroy();
    }
    expect(JSON.parse(text.trim())).toMatchObject({ id: null, ok: false, error: { code: 'bad_request' } });
    expect(events.at(-1)?.labels).toMatchObject({ command: 'unparsed', error_code: 'bad_request' });
    expect(await callAdmin(server.socketPath, 'echo', 1)).toEqual({ kind: 'ok', result: 1 });
  });

  it('lists registered commands and refuses to register one twice', async () => {
    const { server } = await started();
    const answer = await callAdmin(server.socketPath, 'commands.list', {});
    expect(answer.kind === 'ok' && (answer.result as Array<{ name: string }>).map((c) => c.name)).toEqual([
      'commands.list',
      'echo',
      'boom',
    ]);
    expect(() => server.register('echo', () => ({ ok: true, result: null }))).toThrow(/twice/);
  });

  it('refuses to start when the socket path exists and is not a socket', async () => {
    writeFileSync(join(dir, 'admin.sock'), 'precious');
    const error = await started().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BulwarkError);
    expect((error as BulwarkError).message).toMatch(/not a socket/);
    expect(lstatSync(join(dir, 'admin.sock')).isFile()).toBe(true);
  });

  it('refuses to start while another process listens on the socket, and replaces a stale one', async () => {
    const other = createServer();
    await new Promise<void>((resolve) => other.listen(join(dir, 'admin.sock'), resolve));
    const error = await started().catch((e: unknown) => e);
    expect((error as BulwarkError).message).toMatch(/another broker/);
    await new Promise<void>((resolve) => other.close(() => resolve()));
    // A broker killed with SIGKILL leaves its socket file behind with nobody listening.
    const child = spawn(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(join(dir, 'admin.sock'))}, () => console.log('up'))`,
    ]);
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
    expect(lstatSync(join(dir, 'admin.sock')).isSocket()).toBe(true);
    const { server } = await started();
    expect(await callAdmin(server.socketPath, 'echo', 'fresh')).toEqual({ kind: 'ok', result: 'fresh' });
  });

  it('refuses a data directory writable by group or others', async () => {
    chmodSync(dir, 0o777);
    const error = await started().catch((e: unknown) => e);
    expect((error as BulwarkError).message).toMatch(/writable by group or others/);
  });

  it.skipIf(process.geteuid?.() !== 0)('refuses a data directory owned by another user', async () => {
    chownSync(dir, 65534, 65534);
    const error = await started().catch((e: unknown) => e);
    expect((error as BulwarkError).message).toMatch(/owned by uid 65534/);
    expect(() => lstatSync(join(dir, 'admin.sock'))).toThrow();
  });

  it.skipIf(process.geteuid?.() !== 0)('refuses a data directory named through a link another user owns', async () => {
    const link = join(mkdtempSync(join(tmpdir(), 'bw-admin-link-')), 'data');
    symlinkSync(dir, link);
    lchownSync(link, 65534, 65534);
    const error = await started({ dataDir: link }).catch((e: unknown) => e);
    expect((error as BulwarkError).message).toMatch(/symbolic link owned by uid 65534/);
    expect(() => lstatSync(join(dir, 'admin.sock'))).toThrow();
  });

  it('removes its socket on stop, after which the client reports the broker unreachable', async () => {
    const { server } = await started();
    await server.stop();
    expect(() => lstatSync(server.socketPath)).toThrow();
    expect((await callAdmin(server.socketPath, 'echo', 1)).kind).toBe('unreachable');
  });

  it('destroys an idle connection whose client ignores the FIN', async () => {
    const { server } = await started({ idleTimeoutMs: 100 });
    const client = createConnection({ path: server.socketPath, allowHalfOpen: true });
    let failure: NodeJS.ErrnoException | undefined;
    client.on('error', (error) => (failure = error));
    // The client never ends its side. While the server has only half-closed, writes still reach it; once it has
    // destroyed the socket, a write fails.
    await new Promise<void>((resolve) => client.once('end', () => resolve()));
    const writer = setInterval(() => client.write('{'), 100);
    try {
      await until(() => failure, 'the server to drop the connection', 6_000);
    } finally {
      clearInterval(writer);
      client.destroy();
    }
    expect(['EPIPE', 'ECONNRESET']).toContain(failure!.code);
  }, 10_000);

  it('answers busy when its connection limit is reached, and serves again once a connection closes', async () => {
    const { server, events } = await started({ maxConnections: 2 });
    const held = await Promise.all(
      [1, 2].map(
        () =>
          new Promise<Socket>((resolve) => {
            const socket = createConnection(server.socketPath, () => resolve(socket));
          }),
      ),
    );
    const refused = await callAdmin(server.socketPath, 'echo', 1);
    expect(refused).toEqual({
      kind: 'error',
      code: 'busy',
      message: 'the control socket already has 2 connections, its limit; try again later',
    });
    expect(events.at(-1)?.labels).toMatchObject({ error_code: 'busy' });
    held[0]!.destroy();
    let next = await callAdmin(server.socketPath, 'echo', 2);
    for (let tries = 0; next.kind !== 'ok' && tries < 50; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      next = await callAdmin(server.socketPath, 'echo', 2);
    }
    expect(next).toEqual({ kind: 'ok', result: 2 });
    held[1]!.destroy();
  });
});
