import net from 'node:net';
import {
  CONNACK,
  connectPacket,
  Framer,
  SUBACK,
  subscribePacket,
  type ConnectOptions,
  type PacketHandler,
} from './wire.js';

/**
 * One MQTT connection of the load generator: a raw socket plus the framer. The handshake is awaited; after it,
 * every packet goes to `onPacket`, which the scenario sets (no per-packet promises or events).
 */
export class RawClient {
  readonly socket: net.Socket;
  onPacket: PacketHandler = () => {};
  /** Called after each chunk's packets, so replies (acknowledgements) can be written as one batch. */
  onChunkEnd: () => void = () => {};
  closed = false;
  private readonly framer: Framer;
  private waiting: ((first: number, buf: Buffer, start: number, end: number) => void) | undefined;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    this.framer = new Framer((first, buf, start, end) => {
      const waiting = this.waiting;
      if (waiting) waiting(first, buf, start, end);
      else this.onPacket(first, buf, start, end);
    });
    socket.on('data', (chunk: Buffer) => {
      if (!this.framer.push(chunk)) socket.destroy();
      else this.onChunkEnd();
    });
    socket.on('close', () => {
      this.closed = true;
    });
    socket.on('error', () => {});
  }

  /** Connects and waits for CONNACK. Resolves with the 3.1.1 return code (0 = accepted) or -1 if closed. */
  static open(port: number, options: ConnectOptions): Promise<{ client: RawClient; returnCode: number }> {
    return new Promise((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' });
      const client = new RawClient(socket);
      let done = false;
      const finish = (returnCode: number): void => {
        if (done) return;
        done = true;
        client.waiting = undefined;
        resolve({ client, returnCode });
      };
      client.waiting = (first, buf, start) => {
        if (first >> 4 === CONNACK) finish(buf[start + 1] as number);
      };
      socket.once('close', () => finish(-1));
      socket.once('connect', () => socket.write(connectPacket(options)));
    });
  }

  /** Subscribes to one filter and resolves with the granted code (0x80 = refused, -1 = connection closed). */
  subscribe(topic: string, qos: 0 | 1 | 2): Promise<number> {
    return new Promise((resolve) => {
      const onClose = (): void => resolve(-1);
      this.socket.once('close', onClose);
      this.waiting = (first, buf, start, end) => {
        if (first >> 4 !== SUBACK) return;
        this.waiting = undefined;
        this.socket.off('close', onClose);
        resolve(end > start + 2 ? (buf[start + 2] as number) : -1);
      };
      this.socket.write(subscribePacket(topic, qos));
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
