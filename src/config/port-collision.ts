import { isIP } from 'node:net';

interface Socketed {
  listeners: readonly { host: string; port: number; name?: string | undefined; transport: string }[];
  metrics: { enabled: boolean; host: string; port: number };
}

/**
 * The first of two sockets on one port of overlapping addresses (two listeners, or a listener and the metrics
 * endpoint), with the setting's path: start would open some of them and then fail with EADDRINUSE. Ports picked at
 * start (0) never collide. The overlap follows Linux: the same address; `::`, which takes every address on a
 * dual-stack system; `0.0.0.0` and an IPv4 address. A host name is compared as written, since what it resolves to
 * (`localhost` is `::1` first on many systems) is only known at start.
 */
export function portCollision(config: Socketed): { path: (string | number)[]; message: string } | undefined {
  const taken: { host: string; port: number; what: string }[] = [];
  const claim = (host: string, port: number, what: string, path: (string | number)[]) => {
    if (port === 0) return undefined;
    const other = taken.find((t) => t.port === port && addressesOverlap(t.host, host));
    if (other) return { path, message: `port ${port} on ${host} is already ${other.what}'s (${other.host})` };
    taken.push({ host, port, what });
    return undefined;
  };
  for (const [index, listener] of config.listeners.entries()) {
    const name = listener.name ?? `${listener.transport}:${listener.port}`;
    const found = claim(listener.host, listener.port, `listener ${name}`, ['listeners', index, 'port']);
    if (found) return found;
  }
  if (!config.metrics.enabled) return undefined;
  return claim(config.metrics.host, config.metrics.port, 'the metrics endpoint', ['metrics', 'port']);
}

function addressesOverlap(a: string, b: string): boolean {
  if (a.toLowerCase() === b.toLowerCase() || a === '::' || b === '::') return true;
  return (a === '0.0.0.0' && isIP(b) === 4) || (b === '0.0.0.0' && isIP(a) === 4);
}
