import net from 'node:net';
import mqttPacket from 'mqtt-packet';

/** Clients connecting at once: enough that reads and writes batch as they do under a real storm. */
const CONCURRENCY = 32;

/**
 * Source addresses the clients take in turn. A reconnect wave comes from many addresses, and the guard keeps its last
 * answer per address: from one address alone, the warm-up never ran the address parsing and formatting behind that
 * answer, and the first storm compiled them (docs/performance.md, "Session 26"). All of 127.0.0.0/8 is loopback on
 * Linux; where it is not (macOS has 127.0.0.1 only), the first refused bind switches the clients to the default
 * source, and that client connects again from it.
 */
export const LOOPBACK_SOURCES: readonly string[] = Array.from({ length: 16 }, (_, i) => `127.0.0.${2 + i}`);

export interface RoundsResult {
  /** Clients that got an answer or failed: what was tried. */
  attempted: number;
  /** Clients whose CONNACK accepted them: only these ran the whole connect path. */
  accepted: number;
}

/**
 * Connects `total` MQTT clients over loopback TCP, `held` at a time: each round connects its clients, keeps them
 * until every one has its CONNACK (so the broker holds many sessions at once, as after a restart), then lets them
 * go. Both protocol versions, and both ways a client leaves (DISCONNECT, or closing its socket), as a fleet does.
 * Nothing new starts after `deadline` (a `performance.now()` time); clients still waiting then are dropped.
 */
export async function connectInRounds(
  ports: readonly number[],
  total: number,
  held: number,
  deadline: number,
  sourceAddresses: readonly string[] = LOOPBACK_SOURCES,
): Promise<RoundsResult> {
  const result: RoundsResult = { attempted: 0, accepted: 0 };
  const sources = { addresses: sourceAddresses };
  while (result.attempted < total && performance.now() < deadline) {
    const count = Math.min(held, total - result.attempted);
    const round = await connectRound(ports, result.attempted, count, deadline, sources);
    result.attempted += round.tried;
    result.accepted += round.clients.length;
    await Promise.all(round.clients.map((client) => client.leave()));
  }
  return result;
}

interface HeldClient {
  leave(): Promise<void>;
}

/** Up to `count` clients, CONCURRENCY connecting at a time; resolves once every client started has an answer. */
function connectRound(
  ports: readonly number[],
  first: number,
  count: number,
  deadline: number,
  sources: { addresses: readonly string[] },
): Promise<{ clients: HeldClient[]; tried: number }> {
  const clients: HeldClient[] = [];
  const pending = new Set<net.Socket>();
  let started = 0;
  let finished = 0;
  return new Promise((resolve) => {
    const expiry = setTimeout(
      () => {
        for (const socket of pending) socket.destroy();
      },
      Math.max(0, deadline - performance.now()),
    );
    const startNext = (): boolean => {
      if (started === count || performance.now() >= deadline) return false;
      connectOne(first + started++);
      return true;
    };
    const done = (): void => {
      finished++;
      if (!startNext() && finished === started) {
        clearTimeout(expiry);
        resolve({ clients, tried: started });
      }
    };
    const connectOne = (index: number): void => {
      const version = index % 2 === 0 ? 4 : 5;
      const addresses = sources.addresses;
      const localAddress = addresses.length > 0 ? addresses[index % addresses.length] : undefined;
      const socket = net.connect({
        port: ports[index % ports.length]!,
        host: '127.0.0.1',
        noDelay: true,
        ...(localAddress !== undefined ? { localAddress } : {}),
      });
      pending.add(socket);
      let answered = false;
      const fail = (): void => {
        if (answered) return;
        answered = true;
        pending.delete(socket);
        socket.destroy();
        done();
      };
      socket.on('error', (error: NodeJS.ErrnoException) => {
        if (localAddress === undefined || error.code !== 'EADDRNOTAVAIL' || answered) return fail();
        // This host cannot bind that source: the rest of the warm-up connects from the default one, and so does this
        // client, again, rather than count as refused (the warm-up would then warn of an incomplete run).
        sources.addresses = [];
        answered = true;
        pending.delete(socket);
        socket.destroy();
        connectOne(index);
      });
      socket.on('close', fail);
      socket.on('connect', () => socket.write(connectPacket(index, version)));
      socket.once('data', (connack: Buffer) => {
        if (answered) return;
        answered = true;
        pending.delete(socket);
        // A refused client (first byte CONNACK, fourth its code) ran a different path: not counted as accepted.
        if (connack[0] === 0x20 && connack[3] === 0) clients.push(heldClient(socket, index % 4 < 2));
        else socket.destroy();
        done();
      });
    };
    while (started < CONCURRENCY && startNext());
    if (started === 0) {
      clearTimeout(expiry);
      resolve({ clients, tried: 0 });
    }
  });
}

function heldClient(socket: net.Socket, sendsDisconnect: boolean): HeldClient {
  return {
    leave: () =>
      new Promise((resolve) => {
        if (socket.destroyed) return resolve();
        socket.removeAllListeners('close');
        socket.once('close', () => resolve());
        if (sendsDisconnect) socket.end(DISCONNECT);
        else socket.end();
      }),
  };
}

const DISCONNECT = mqttPacket.generate({ cmd: 'disconnect' });

/** The CONNECT the warm-up's client `index` sends: MQTT 3.1.1 or 5, clean start, no credentials, no properties. */
export function connectPacket(index: number, version: 4 | 5): Buffer {
  return mqttPacket.generate(
    {
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: version,
      clientId: `bulwark-warmup-${index}`,
      clean: true,
      keepalive: 60,
    },
    { protocolVersion: version },
  );
}
