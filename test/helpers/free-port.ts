import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Ports below this are left alone: well-known and registered services live there. */
const LOWEST = 10_000;
const ATTEMPTS = 50;

/**
 * The kernel's range for ephemeral ports (the local port of every outgoing connection), or undefined where it
 * cannot be read.
 */
export function ephemeralPortRange(): { low: number; high: number } | undefined {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return { low: low!, high: high! };
  } catch {
    // Not Linux: fall back to a port the kernel picks.
  }
  return undefined;
}

function bindable(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

/**
 * A free loopback port for a server a test starts, stops and starts again on the same port (a broker restart, a
 * database). It is taken from below the ephemeral range: a port the kernel hands out as ephemeral can be taken
 * between the stop and the restart by any outgoing connection on the machine, such as the restarted broker's own
 * 4,000 start-up warm-up clients or another test file's, and the restart then fails with EADDRINUSE (it did once
 * in CI, session 15). Where the range cannot be read, the kernel picks.
 */
export async function freePort(): Promise<number> {
  const range = ephemeralPortRange();
  if (range && range.low > LOWEST + 1000) {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const port = LOWEST + Math.floor(Math.random() * (range.low - LOWEST));
      if ((await bindable(port)) === port) return port;
    }
  }
  const port = await bindable(0);
  if (port === undefined) throw new Error('no free loopback port');
  return port;
}
