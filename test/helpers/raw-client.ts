import net from 'node:net';
import mqtt, { type Packet } from 'mqtt-packet';

/**
 * A client that speaks bytes: for the cases a client library will not produce (malformed packets, protocol
 * violations, a second CONNECT, a client that never reads).
 */
export class RawClient {
  readonly packets: Packet[] = [];
  readonly socket: net.Socket;
  closed = false;
  /** The peer (the broker) has ended its side: with `allowHalfOpen` ours stays open until `end()`. */
  ended = false;
  private readonly parser;
  private waiters: { match: (p: Packet) => boolean; resolve: (p: Packet) => void }[] = [];
  private closeWaiters: (() => void)[] = [];

  private constructor(socket: net.Socket, protocolVersion: number) {
    this.socket = socket;
    this.parser = mqtt.parser({ protocolVersion });
    this.parser.on('packet', (packet: Packet) => {
      this.packets.push(packet);
      const index = this.waiters.findIndex((w) => w.match(packet));
      if (index >= 0) this.waiters.splice(index, 1)[0]!.resolve(packet);
    });
    socket.on('data', (d) => this.parser.parse(d));
    socket.on('end', () => {
      this.ended = true;
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.closeWaiters) w();
    });
    socket.on('error', () => undefined);
  }

  /**
   * `allowHalfOpen`: the client does not close its side when the broker closes its own, so the broker's connection
   * stays open (half-closed) until the client ends it, as a slow or unresponsive peer would keep it.
   */
  static connect(port: number, protocolVersion = 4, options: { allowHalfOpen?: boolean } = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: options.allowHalfOpen ?? false }, () =>
        resolve(new RawClient(socket, protocolVersion)),
      );
      socket.once('error', reject);
    });
  }

  send(packet: Packet, protocolVersion = 4): void {
    this.socket.write(mqtt.generate(packet, { protocolVersion }));
  }

  sendBytes(bytes: Buffer | number[]): void {
    this.socket.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes));
  }

  /** Resolves with the next packet of this kind (already received ones included). */
  next<C extends Packet['cmd']>(cmd: C, timeoutMs = 5000): Promise<Extract<Packet, { cmd: C }>> {
    return this.nextOf([cmd], timeoutMs);
  }

  /** Resolves with the next packet of any of these kinds, for a step the server may answer in more than one way. */
  nextOf<C extends Packet['cmd']>(cmds: readonly C[], timeoutMs = 5000): Promise<Extract<Packet, { cmd: C }>> {
    const wanted = (p: Packet): boolean => (cmds as readonly string[]).includes(p.cmd);
    const index = this.packets.findIndex(wanted);
    if (index >= 0) return Promise.resolve(this.packets.splice(index, 1)[0] as Extract<Packet, { cmd: C }>);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${cmds.join(' or ')} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        match: wanted,
        resolve: (p) => {
          clearTimeout(timer);
          this.packets.splice(this.packets.indexOf(p), 1);
          resolve(p as Extract<Packet, { cmd: C }>);
        },
      });
    });
  }

  waitClosed(timeoutMs = 5000): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`connection not closed within ${timeoutMs} ms`)), timeoutMs);
      this.closeWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  end(): void {
    this.socket.destroy();
  }
}

export function connectPacket(clientId: string, extra: Partial<mqtt.IConnectPacket> = {}): mqtt.IConnectPacket {
  return { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 60, ...extra };
}
