import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { HandleServer, type Peer } from '../../../src/transport/handle-server.js';
import type { HandleSocket } from '../../../src/transport/handle-socket.js';
import { tcpHandles, type TcpHandles } from '../../../src/transport/tcp-handles.js';
import { until } from '../../helpers/until.js';

/**
 * The direct socket layer against real kernel sockets: `net` clients on loopback talk to a `HandleServer`, and
 * each test checks one promise `Connection` relies on from a socket (order, bounds, one close, errors as `net`).
 */
const handles = tcpHandles().handles!;

interface Accepted {
  socket: HandleSocket;
  peer: Peer;
  /** Copies of the reads, taken during each call, as a consumer must (the chunks are lent). */
  data: Buffer[];
  /** The chunks themselves. */
  lent: Buffer[];
  events: string[];
}

let servers: HandleServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(r))));
  servers = [];
});

async function serve(host = '127.0.0.1'): Promise<{
  server: HandleServer;
  port: number;
  host: string;
  accepted: Accepted[];
  next(): Promise<Accepted>;
  acceptErrors: NodeJS.ErrnoException[];
}> {
  const accepted: Accepted[] = [];
  const waiting: ((a: Accepted) => void)[] = [];
  const acceptErrors: NodeJS.ErrnoException[] = [];
  const server = new HandleServer(
    handles,
    (socket, peer) => {
      const entry: Accepted = { socket, peer, data: [], lent: [], events: [] };
      socket.on('data', (chunk: Buffer) => {
        entry.data.push(Buffer.from(chunk));
        entry.lent.push(chunk);
      });
      socket.on('error', (error: NodeJS.ErrnoException) => entry.events.push(`error ${error.code}`));
      socket.on('close', () => entry.events.push('close'));
      accepted.push(entry);
      waiting.shift()?.(entry);
    },
    (error) => acceptErrors.push(error),
  );
  servers.push(server);
  const bound = await server.listen(host, 0);
  return {
    server,
    port: bound.port,
    host: bound.host,
    accepted,
    acceptErrors,
    next: () =>
      new Promise((resolve) => {
        const ready = accepted.find((a) => !(a as { taken?: boolean }).taken);
        if (ready) {
          (ready as { taken?: boolean }).taken = true;
          resolve(ready);
        } else
          waiting.push((a) => {
            (a as { taken?: boolean }).taken = true;
            resolve(a);
          });
      }),
  };
}

async function dial(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  const client = net.connect({ port, host });
  await once(client, 'connect');
  return client;
}

/**
 * TCP_NODELAY as the kernel holds it for an accepted socket. Node cannot read socket options, so the descriptor is
 * handed to `perl` (Debian's essential perl-base, with its Socket module) as its descriptor 3.
 */
async function noDelayOf(socket: HandleSocket): Promise<boolean> {
  const fd = (socket as unknown as { handle: { fd: number } }).handle.fd;
  const child = spawn(
    'perl',
    [
      '-e',
      'use Socket qw(IPPROTO_TCP TCP_NODELAY); open(my $s, "+<&=3") or die "fd 3: $!"; ' +
        'my $v = getsockopt($s, IPPROTO_TCP, TCP_NODELAY) or die "getsockopt: $!"; print unpack("i", $v);',
    ],
    { stdio: ['ignore', 'pipe', 'pipe', fd] },
  );
  let out = '';
  let err = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const [code] = (await once(child, 'close')) as [number];
  expect(err).toBe('');
  expect(code).toBe(0);
  return Number(out) !== 0;
}

function readAll(client: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  client.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => client.on('end', () => resolve(Buffer.concat(chunks))));
}

/** 16 MiB, more than loopback socket buffers hold: with the peer paused, the rest waits in libuv. */
function writeBeyondTheKernel(socket: HandleSocket): Buffer[] {
  const chunks = Array.from({ length: 64 }, () => randomBytes(256 * 1024));
  for (const chunk of chunks) expect(socket.write(chunk)).toBe(true);
  return chunks;
}

describe('socket_layer direct: HandleServer and HandleSocket on real sockets', () => {
  it('carries every write the kernel takes whole on one request object, and gives each write that waits its own', async () => {
    let created = 0;
    const counting: TcpHandles = {
      ...handles,
      createWriteRequest: (handle) => {
        created++;
        return handles.createWriteRequest(handle);
      },
    };
    let accepted: HandleSocket | undefined;
    const server = new HandleServer(
      counting,
      (socket) => (accepted = socket),
      () => {},
    );
    servers.push(server);
    const { port } = await server.listen('127.0.0.1', 0);
    const client = await dial(port);
    const socket = await until(() => accepted, 'accepted');
    const received = readAll(client);
    try {
      const small = Array.from({ length: 50 }, (_, i) => Buffer.from(`message ${i};`));
      for (const chunk of small) expect(socket.write(chunk)).toBe(true);
      // At most one: a request left spare by an earlier socket in this process serves as well.
      expect(created).toBeLessThanOrEqual(1);
      const before = created;
      // More than the kernel holds: the writes that wait each keep their own request (and buffer) until done.
      const big = writeBeyondTheKernel(socket);
      expect(created - before).toBeGreaterThan(1);
      socket.end();
      expect((await received).equals(Buffer.concat([...small, ...big]))).toBe(true);
    } finally {
      // A failed expectation must not leave the server waiting for this connection.
      client.destroy();
      socket.destroy();
    }
  });

  it('delivers what the client sends, in order, and reports the peer as net would', async () => {
    const s = await serve();
    const client = await dial(s.port);
    const a = await s.next();
    expect(a.peer).toEqual({ remoteAddress: '127.0.0.1', remotePort: client.localPort });
    const sent = randomBytes(256 * 1024);
    client.write(sent);
    await until(() => Buffer.concat(a.data).length === sent.length, 'all bytes');
    expect(Buffer.concat(a.data).equals(sent)).toBe(true);
    client.destroy();
  });

  it('lends each read as a view of one shared buffer, which the next read of any socket reuses', async () => {
    const s = await serve();
    const clients = [await dial(s.port), await dial(s.port)];
    try {
      const accepted = [await s.next(), await s.next()];
      // What a listener copies during the call is its own; the lent view itself shows the latest read afterwards.
      for (let k = 0; k < 20; k++)
        for (const [i, client] of clients.entries()) {
          client.write(Buffer.alloc(100, 10 * k + i));
          await until(() => accepted[i]!.data.length === k + 1, `read ${k} of socket ${i}`);
        }
      for (const [i, a] of accepted.entries())
        expect(a.data.map((chunk) => chunk.every((byte) => byte === chunk[0]) && chunk[0])).toEqual(
          Array.from({ length: 20 }, (_, k) => 10 * k + i),
        );
      const views = accepted.flatMap((a) => a.lent);
      expect(new Set(views.map((chunk) => chunk.buffer)).size).toBe(1);
      expect(views.every((chunk) => chunk[0] === 10 * 19 + 1)).toBe(true);
    } finally {
      for (const client of clients) client.destroy();
    }
  });

  it('every accepted socket has TCP_NODELAY set, read back from the socket itself', async () => {
    const s = await serve();
    const clients = [await dial(s.port), await dial(s.port)];
    for (const client of clients) {
      const a = await s.next();
      expect(await noDelayOf(a.socket)).toBe(true);
      client.destroy();
    }
  });

  it('queues what the kernel cannot take at once, counts it in writableLength, and delivers it intact', async () => {
    const s = await serve();
    const client = await dial(s.port);
    client.pause();
    const a = await s.next();
    const chunks = writeBeyondTheKernel(a.socket);
    // The bound sees what waits in libuv.
    expect(a.socket.writableLength).toBeGreaterThan(1024 * 1024);
    const received = readAll(client);
    client.resume();
    a.socket.end();
    const all = await received;
    const expected = createHash('sha256').update(Buffer.concat(chunks)).digest('hex');
    expect(all.length).toBe(64 * 256 * 1024);
    expect(createHash('sha256').update(all).digest('hex')).toBe(expected);
    client.end();
    await until(() => a.events.includes('close'), 'close');
    expect(a.socket.writableLength).toBe(0);
  });

  it('end(data) sends the data before the FIN; the peer closing its side closes the socket once, without error', async () => {
    const s = await serve();
    const client = await dial(s.port);
    const a = await s.next();
    const received = readAll(client);
    a.socket.end(Buffer.from('last words'));
    expect((await received).toString()).toBe('last words');
    expect(a.socket.write(Buffer.from('after end'))).toBe(false);
    client.end();
    await until(() => a.events.includes('close'), 'close');
    await new Promise((r) => setTimeout(r, 20));
    expect(a.events).toEqual(['close']);
  });

  it('a client FIN ends the connection: no half-open socket is kept', async () => {
    const s = await serve();
    const client = await dial(s.port);
    const a = await s.next();
    const ended = once(client, 'end');
    client.end(Buffer.from('bye'));
    await ended;
    await until(() => a.events.includes('close'), 'close');
    expect(Buffer.concat(a.data).toString()).toBe('bye');
    expect(a.events).toEqual(['close']);
  });

  it('uncork writes what was held as one writev, in order', async () => {
    const s = await serve();
    const client = await dial(s.port);
    const a = await s.next();
    const received = readAll(client);
    a.socket.cork();
    for (const part of ['one ', 'two ', 'three']) a.socket.write(Buffer.from(part));
    expect(a.socket.writableLength).toBe('one two three'.length);
    a.socket.uncork();
    a.socket.end();
    expect((await received).toString()).toBe('one two three');
    client.destroy();
  });

  it('closeIfWritten() closes once everything written is in the kernel, which still delivers it before the FIN', async () => {
    const s = await serve();
    const client = await dial(s.port);
    const a = await s.next();
    const received = readAll(client);
    expect(a.socket.write(Buffer.from('in the kernel'))).toBe(true);
    expect(a.socket.closeIfWritten()).toBe(true);
    expect((await received).toString()).toBe('in the kernel');
    await until(() => a.events.includes('close'), 'close');
    expect(a.events).toEqual(['close']);
    client.destroy();
  });

  it('closeIfWritten() refuses, and leaves the socket open, while writes still wait in user space', async () => {
    const s = await serve();
    const client = await dial(s.port);
    client.pause();
    const a = await s.next();
    writeBeyondTheKernel(a.socket);
    expect(a.socket.closeIfWritten()).toBe(false);
    expect(a.socket.destroyed).toBe(false);
    const received = readAll(client);
    client.resume();
    a.socket.end();
    expect((await received).length).toBe(64 * 256 * 1024);
    client.destroy();
    await until(() => a.events.includes('close'), 'close');
  });

  it('a reset by the peer is reported as net reports it (read ECONNRESET), then closes once', async () => {
    const s = await serve();
    const client = await dial(s.port);
    const a = await s.next();
    client.resetAndDestroy();
    await until(() => a.events.includes('close'), 'close');
    expect(a.events).toEqual(['error ECONNRESET', 'close']);
  });

  it('destroy() with writes still queued closes once, drops the queue, and does not throw', async () => {
    const s = await serve();
    const client = await dial(s.port);
    client.pause();
    const a = await s.next();
    writeBeyondTheKernel(a.socket);
    expect(a.socket.writableLength).toBeGreaterThan(0);
    a.socket.destroy();
    a.socket.destroy();
    expect(a.socket.write(Buffer.from('x'))).toBe(false);
    await until(() => a.events.includes('close'), 'close');
    await new Promise((r) => setTimeout(r, 20));
    expect(a.events).toEqual(['close']);
    client.destroy();
  });

  it('close() stops accepting at once and calls back only when the accepted connections have closed', async () => {
    const s = await serve();
    const client = await dial(s.port);
    const a = await s.next();
    let closed = false;
    s.server.close(() => (closed = true));
    await new Promise((r) => setTimeout(r, 30));
    const refused = net.connect({ port: s.port, host: '127.0.0.1' });
    const [error] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
    expect(error.code).toBe('ECONNREFUSED');
    expect(closed).toBe(false);
    a.socket.destroy();
    await until(() => closed, 'close callback');
    client.destroy();
  });

  it('refuses a port in use with the error net gives', async () => {
    const s = await serve();
    const second = new HandleServer(
      handles,
      () => undefined,
      () => undefined,
    );
    await expect(second.listen('127.0.0.1', s.port)).rejects.toMatchObject({
      code: 'EADDRINUSE',
      syscall: 'listen',
      message: `listen EADDRINUSE: address already in use 127.0.0.1:${s.port}`,
    });
  });

  it('listens on IPv6 loopback and resolves host names', async () => {
    const v6 = await serve('::1');
    expect(v6.host).toBe('::1');
    const client = await dial(v6.port, '::1');
    const a = await v6.next();
    expect(a.peer.remoteAddress).toBe('::1');
    client.destroy();
    const named = await serve('localhost');
    expect(['127.0.0.1', '::1']).toContain(named.host);
  });

  it('a failed accept is reported and the listener goes on accepting', async () => {
    const s = await serve();
    // EMFILE cannot be caused on demand without starving the test runner of descriptors: deliver libuv's status.
    s.server.onConnection(-24, undefined);
    expect(s.acceptErrors.map((e) => [e.code, e.syscall])).toEqual([['EMFILE', 'accept']]);
    const client = await dial(s.port);
    await s.next();
    client.destroy();
  });
});
