import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LdapConnectionPool } from '../../../../authn/ldap/connection-pool.js';
import { caPem, slapd } from './fixtures.js';

/**
 * A TCP proxy in front of slapd that, while stalling, forwards each connection's first request (the StartTLS
 * extended operation) but holds everything after it: the TLS handshake then never completes, as with a directory
 * or middlebox that hangs mid-handshake. `resume()` lets the held bytes through.
 */
class StallingProxy {
  stalling = false;
  readonly #held: { upstream: Socket; chunks: Buffer[] }[] = [];
  readonly #sockets = new Set<Socket>();
  readonly server: Server;

  constructor(target: URL) {
    this.server = createServer((client) => {
      const upstream = connect(Number(target.port), target.hostname);
      this.#sockets.add(client).add(upstream);
      upstream.on('data', (d) => client.write(d));
      let first = true;
      let held: { upstream: Socket; chunks: Buffer[] } | undefined;
      client.on('data', (d: Buffer) => {
        if (first || (!this.stalling && !held)) {
          first = false;
          upstream.write(d);
          return;
        }
        if (!held) {
          held = { upstream, chunks: [] };
          this.#held.push(held);
        }
        held.chunks.push(d);
      });
      const close = (): void => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `ldap://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  resume(): void {
    this.stalling = false;
    for (const h of this.#held.splice(0)) for (const c of h.chunks.splice(0)) h.upstream.write(c);
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!slapd)('ldap connection pool over StartTLS with a stalling handshake', () => {
  let proxy: StallingProxy;
  let url: string;
  const pools: LdapConnectionPool[] = [];
  const pool = (connectTimeoutMs: number): LdapConnectionPool => {
    const p = new LdapConnectionPool(
      { url, startTls: true, tls: { ca: caPem() }, connectTimeoutMs, operationTimeoutMs: 1_000 },
      1,
      10,
      false,
    );
    pools.push(p);
    return p;
  };
  const whoami = (p: LdapConnectionPool, ms: number): Promise<boolean> =>
    p.withConnection(AbortSignal.timeout(ms), async (c) => c.client.isConnected);

  beforeAll(async () => {
    proxy = new StallingProxy(new URL(slapd?.url ?? ''));
    url = await proxy.start();
  });
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.close()));
    await proxy.stop();
  });

  it('a connection that comes up after its waiter gave up serves the next lease instead of leaking the slot', async () => {
    const p = pool(2_000);
    expect(await whoami(p, 2_000)).toBe(true);
    await p.close();
    const q = pool(2_000);
    proxy.stalling = true;
    // The first lease opens the only connection and gives up; its slot goes to the waiter, which gives up too
    // while the connection opened for it is still in its handshake.
    const first = whoami(q, 100);
    const second = whoami(q, 300);
    await expect(first).rejects.toThrow();
    await expect(second).rejects.toThrow();
    await sleep(50);
    proxy.resume();
    // The late connection is the pool's again: the next lease gets it (or a fresh one), within its deadline.
    expect(await whoami(q, 1_500)).toBe(true);
    expect(q.size).toBe(1);
  });

  it('a StartTLS handshake that stalls fails after the connect timeout and frees its slot', async () => {
    const p = pool(300);
    proxy.stalling = true;
    try {
      await expect(whoami(p, 5_000)).rejects.toThrow(/StartTLS not completed within 300 ms/);
      expect(p.size).toBe(0);
    } finally {
      proxy.resume();
    }
    expect(await whoami(p, 2_000)).toBe(true);
  });
});
