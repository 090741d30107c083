import { readFileSync } from 'node:fs';
import net from 'node:net';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { mintTestPki, type TestPki } from '../../helpers/certs.js';
import { until } from '../../helpers/until.js';
import { MAX_PENDING_HANDSHAKES } from '../../../src/transport/secure-listener.js';

/**
 * The bound on TLS handshakes in progress per listener (src/transport/secure-listener.ts): raw TCP connections that
 * never send a ClientHello fill it, the next connection is closed at once, and a real client gets in again once
 * some of them are gone. The connect timeout (which bounds each handshake's time) is set far beyond the test, so
 * every close seen here is the bound's doing.
 */
const WARNING = 'too many pending TLS handshakes: closing new connections';

/** The soft limit on open files of this process: the broker and the test's sockets share it. */
function openFileLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const soft = line?.split(/\s{2,}/)[1];
  return soft === undefined || soft === 'unlimited' ? Infinity : Number(soft);
}

function openSilent(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Resolves when the broker closes `socket`; fails the test (and destroys it) if it is still open after 10 s. */
function closed(socket: net.Socket): Promise<void> {
  socket.on('error', () => undefined);
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('the broker did not close the connection'));
    }, 10_000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

describe('the bound on TLS handshakes in progress', () => {
  let pki: TestPki | undefined;
  let broker: TestBroker | undefined;
  const sockets: net.Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await broker?.stop();
    broker = undefined;
    pki?.cleanup();
    pki = undefined;
  });

  async function tlsBroker(maxPendingTlsHandshakes?: number): Promise<TestBroker> {
    pki = await mintTestPki();
    broker = await startBroker({
      config: { limits: { connect_timeout_ms: 600_000 } },
      listener: { transport: 'tls', tls: { cert_file: pki.server.certFile, key_file: pki.server.keyFile } },
      ...(maxPendingTlsHandshakes !== undefined ? { maxPendingTlsHandshakes } : {}),
    });
    return broker;
  }

  const pendingOf = (b: TestBroker): number => b.server.secureListener('test')!.pendingHandshakes;

  async function fill(b: TestBroker, count: number): Promise<void> {
    for (let i = 0; i < count; i++) sockets.push(await openSilent(b.port));
    await until(() => pendingOf(b) === count, `${count} pending handshakes`, 15_000);
  }

  it('at the bound, new connections are closed at once, warned about once, and a real client gets in after', async () => {
    const cap = 8;
    const b = await tlsBroker(cap);
    expect(b.server.secureListener('test')!.maxPendingHandshakes).toBe(cap);
    await fill(b, cap);
    expect(b.logs.filter((l) => l.msg === WARNING)).toEqual([]);

    // Three more: each is closed by the broker while the silent ones stay open (their timeout is 10 minutes away).
    for (let i = 0; i < 3; i++) {
      const extra = await openSilent(b.port);
      await closed(extra);
    }
    expect(sockets.filter((s) => s.destroyed || s.readyState !== 'open')).toEqual([]);
    expect(pendingOf(b)).toBe(cap);
    // Each is recorded as closed by the bound, not as a client's failed handshake ("socket hang up").
    await until(
      () => b.audit.events.filter((e) => e.event.action === 'tls.handshake_refused').length === 3,
      'three refusals recorded',
    );
    for (const e of b.audit.events.filter((r) => r.event.action === 'tls.handshake_refused')) {
      expect(e.event).toMatchObject({
        code: 'too_many_pending_handshakes',
        reason: `closed before its handshake: ${cap} handshakes already in progress on this listener`,
      });
      expect(e.tls).toEqual({ error: 'too_many_pending_handshakes' });
    }
    expect(b.logs.filter((l) => l.msg === 'TLS handshake failed')).toEqual([]);
    const warnings = b.logs.filter((l) => l.msg === WARNING);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, listener: 'test', limit: cap });

    // While full, a real TLS client cannot get in either.
    const refused = mqtt.connect(`mqtts://127.0.0.1:${b.port}`, {
      ca: readFileSync(pki!.caFile),
      servername: 'localhost',
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    await new Promise<void>((resolve) => refused.once('close', () => resolve()));
    expect(refused.connected).toBe(false);
    refused.end(true);

    // Two silent clients leave: their places are free again.
    for (const s of sockets.splice(0, 2)) s.destroy();
    await until(() => pendingOf(b) === cap - 2, 'two handshakes released');
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${b.port}`, {
      ca: readFileSync(pki!.caFile),
      servername: 'localhost',
      clientId: 'after-the-bound',
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    await client.subscribeAsync('cap/echo', { qos: 1 });
    const echoed = new Promise<string>((resolve) => client.once('message', (_t, p) => resolve(p.toString())));
    await client.publishAsync('cap/echo', 'through', { qos: 1 });
    expect(await echoed).toBe('through');
    // A finished handshake no longer counts.
    expect(pendingOf(b)).toBe(cap - 2);

    // Nothing is left behind: the count returns to 0 once the silent clients go, the connected one included.
    for (const s of sockets.splice(0)) s.destroy();
    await until(() => pendingOf(b) === 0, 'no pending handshakes');
    await client.endAsync();
    await until(() => b.server.broker.connections.size === 0, 'no connections');
    expect(b.logs.filter((l) => l.msg === WARNING)).toHaveLength(1);
  });

  it('the bound is warned about again when it is reached again after it was left', async () => {
    const b = await tlsBroker(2);
    await fill(b, 2);
    await closed(await openSilent(b.port));
    sockets.shift()!.destroy();
    await until(() => pendingOf(b) === 1, 'one handshake released');
    sockets.push(await openSilent(b.port));
    await until(() => pendingOf(b) === 2, 'full again');
    await closed(await openSilent(b.port));
    expect(b.logs.filter((l) => l.msg === WARNING)).toHaveLength(2);
  });

  it(`without the internal option the bound is ${MAX_PENDING_HANDSHAKES}`, async () => {
    expect(MAX_PENDING_HANDSHAKES).toBe(1024);
    const b = await tlsBroker();
    expect(b.server.secureListener('test')!.maxPendingHandshakes).toBe(1024);
  });

  // The real thing: 1024 sockets on each side (the broker runs in this process), so 2048 descriptors and more.
  it.skipIf(openFileLimit() < 4096)(
    'a listener with the default bound takes 1024 silent handshakes and closes the 1025th',
    async () => {
      const b = await tlsBroker();
      await fill(b, 1024);
      await closed(await openSilent(b.port));
      expect(pendingOf(b)).toBe(1024);
      expect(b.logs.filter((l) => l.msg === WARNING)).toMatchObject([{ limit: 1024 }]);
      for (const s of sockets.splice(0)) s.destroy();
      await until(() => pendingOf(b) === 0, 'no pending handshakes', 15_000);
    },
  );
});
