import mqtt, { type Packet } from 'mqtt-packet';
import { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';

/** A socket that records each write the broker makes, so the tests see how packets were batched. */
class RecordingSocket extends Duplex {
  /** Every recording socket's writes in the order the broker made them, across connections. */
  static readonly order: RecordingSocket[] = [];
  readonly writes: Buffer[] = [];
  ended = false;
  endedAfterWrites = -1;

  override _read(): void {}

  /** Called after each write is recorded, from inside the broker's write, as an in-process peer would be. */
  onWrite: ((socket: RecordingSocket) => void) | undefined;

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.writes.push(chunk);
    RecordingSocket.order.push(this);
    this.onWrite?.(this);
    done();
  }

  override _final(done: (error?: Error | null) => void): void {
    this.ended = true;
    this.endedAfterWrites = this.writes.length;
    done();
  }

  packets(protocolVersion = 4): Packet[] {
    const parser = mqtt.parser({ protocolVersion });
    const seen: Packet[] = [];
    parser.on('packet', (p: Packet) => seen.push(p));
    for (const w of this.writes) parser.parse(w);
    return seen;
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('socket writes', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker();
  });
  afterAll(() => broker.stop());

  function accept(): RecordingSocket {
    const socket = new RecordingSocket();
    broker.server.broker.accept(socket, broker.server.listeners[0]!, { address: '127.0.0.1', port: 1 }, undefined);
    return socket;
  }

  const connect = (clientId: string): Buffer =>
    mqtt.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 60 });
  const publish = (id: number, payload: Buffer): Buffer =>
    mqtt.generate({ cmd: 'publish', topic: 'w/c', payload, qos: 1, retain: false, dup: false, messageId: id });

  /** A connected client subscribed at QoS 0 to `topic`; its CONNACK and SUBACK arrive within a few ticks. */
  function subscribed(clientId: string, topic: string): RecordingSocket {
    const socket = accept();
    socket.push(connect(clientId));
    socket.push(mqtt.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 0 }] }));
    return socket;
  }

  it('sends every packet answered within one tick as one write, in order', async () => {
    const socket = accept();
    socket.push(connect('coalesce-1'));
    for (let i = 0; i < 20 && socket.writes.length === 0; i++) await tick();
    expect(socket.packets().map((p) => p.cmd)).toEqual(['connack']);
    const before = socket.writes.length;
    socket.push(Buffer.concat([1, 2, 3, 4, 5].map((id) => publish(id, Buffer.from('x')))));
    for (let i = 0; i < 20 && socket.writes.length === before; i++) await tick();
    await tick();
    expect(socket.writes.length - before).toBe(1);
    const acks = socket.packets().slice(1);
    expect(acks.map((p) => [p.cmd, p.messageId])).toEqual([1, 2, 3, 4, 5].map((id) => ['puback', id]));
    socket.destroy();
  });

  it("writes what a read made the broker send when the read's handler returns, without waiting for a tick", async () => {
    const socket = accept();
    socket.push(connect('same-read'));
    for (let i = 0; i < 20 && socket.writes.length === 0; i++) await tick();
    expect(socket.packets().map((p) => p.cmd)).toEqual(['connack']);
    // The stream hands a pushed chunk to the broker at once: no tick runs between the read and this check.
    socket.push(publish(9, Buffer.from('x')));
    expect(socket.packets().map((p) => [p.cmd, p.messageId])).toEqual([
      ['connack', undefined],
      ['puback', 9],
    ]);
    socket.destroy();
  });

  it('flushes every connection written to in a tick once, in the order written, and again in later ticks', async () => {
    const sockets = [accept(), accept(), accept()];
    const connections = [...broker.server.broker.connections].filter((c) =>
      sockets.includes(c.socket as RecordingSocket),
    );
    expect(connections).toHaveLength(3);
    const pingresp = Buffer.from([0xd0, 0x00]);
    for (let round = 1; round <= 3; round++) {
      for (const c of connections) c.writeBytes(pingresp);
      connections[0]!.writeBytes(pingresp);
      expect(sockets.map((s) => s.writes.length)).toEqual([round - 1, round - 1, round - 1]);
      await tick();
      // The first connection's two packets of this tick went out as one write.
      expect(sockets.map((s) => s.writes.length)).toEqual([round, round, round]);
      expect(sockets[0]!.writes.at(-1)).toEqual(Buffer.concat([pingresp, pingresp]));
    }
    for (const s of sockets) s.destroy();
  });

  it('a connection whose socket write throws is closed and logged; the others queued with it are still written', async () => {
    const sockets = [accept(), accept(), accept()];
    const connections = [...broker.server.broker.connections].filter((c) =>
      sockets.includes(c.socket as RecordingSocket),
    );
    const broken = sockets[0]!;
    broken.write = () => {
      throw new Error('write exploded');
    };
    const pingresp = Buffer.from([0xd0, 0x00]);
    for (let round = 1; round <= 2; round++) {
      for (const c of connections) c.writeBytes(pingresp);
      await tick();
      // Flushed on the tick after the failure too: the count of queued connections did not stay behind.
      expect([sockets[1]!.writes.length, sockets[2]!.writes.length]).toEqual([round, round]);
    }
    expect(broken.destroyed).toBe(true);
    const logged = await broker.waitForLog((l) => l['msg'] === 'socket write failed: closing the connection');
    expect((logged['err'] as { message: string }).message).toBe('write exploded');
    for (const s of sockets) s.destroy();
  });

  it("writes the deliveries a connected publisher's PUBLISH routed before that publisher's own PUBACK", async () => {
    // A PUBACK flushed at the end of the publisher's read went out ahead of the deliveries and delayed every one of
    // them by a write: p50 latency +10% on the benchmark (docs/performance.md, session 8).
    const sub = subscribed('order-sub', 'w/order');
    const pub = accept();
    pub.push(connect('order-pub'));
    for (let i = 0; i < 50 && (sub.packets().length < 2 || pub.packets().length < 1); i++) await tick();
    expect([sub.packets().map((p) => p.cmd), pub.packets().map((p) => p.cmd)]).toEqual([
      ['connack', 'suback'],
      ['connack'],
    ]);
    const from = RecordingSocket.order.length;
    pub.push(
      mqtt.generate({
        cmd: 'publish',
        topic: 'w/order',
        payload: Buffer.from('x'),
        qos: 1,
        retain: false,
        dup: false,
        messageId: 7,
      }),
    );
    for (let i = 0; i < 50 && (sub.packets().length < 3 || pub.packets().length < 2); i++) await tick();
    expect([sub.packets()[2]?.cmd, pub.packets()[1]?.cmd]).toEqual(['publish', 'puback']);
    const written = RecordingSocket.order.slice(from).filter((s) => s === sub || s === pub);
    expect(written.map((s) => (s === sub ? 'delivery to the subscriber' : 'PUBACK to the publisher'))).toEqual([
      'delivery to the subscriber',
      'PUBACK to the publisher',
    ]);
    sub.destroy();
    pub.destroy();
  });

  it("writes what a read handled inside another connection's write queued (an in-process stream answers at once)", async () => {
    // The subscriber's stream answers its first delivery from inside the broker's write, by pushing a PUBLISH of its
    // own: the broker handles that read while it is still flushing the read that routed the delivery.
    const echoed = mqtt.generate({
      cmd: 'publish',
      topic: 'w/echo-back',
      payload: Buffer.from('echo'),
      qos: 1,
      retain: false,
      dup: false,
      messageId: 42,
    });
    let answered = false;
    const sub = subscribed('echo-sub', 'w/echo');
    sub.onWrite = (socket) => {
      if (!answered && socket.packets().some((p) => p.cmd === 'publish')) {
        answered = true;
        socket.push(echoed);
      }
    };
    const watcher = subscribed('echo-watcher', 'w/echo-back');
    const pub = accept();
    pub.push(connect('echo-pub'));
    for (let i = 0; i < 50 && (sub.packets().length < 2 || watcher.packets().length < 2); i++) await tick();
    pub.push(
      mqtt.generate({ cmd: 'publish', topic: 'w/echo', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }),
    );
    for (let i = 0; i < 50 && watcher.packets().length < 3; i++) await tick();
    expect(answered).toBe(true);
    expect(sub.packets().map((p) => [p.cmd, p.messageId])).toContainEqual(['puback', 42]);
    expect(watcher.packets().map((p) => (p.cmd === 'publish' ? [p.topic, p.payload.toString()] : p.cmd))).toEqual([
      'connack',
      'suback',
      ['w/echo-back', 'echo'],
    ]);
    for (const s of [sub, watcher, pub]) s.destroy();
  });

  it('writes a batch larger than the copy limit buffer by buffer, still in order', async () => {
    const sub = subscribed('coalesce-sub', 'w/c');
    const pub = accept();
    pub.push(connect('coalesce-pub'));
    for (let i = 0; i < 50 && sub.packets().length < 2; i++) await tick();
    expect(sub.packets().map((p) => p.cmd)).toEqual(['connack', 'suback']);
    const before = sub.writes.length;
    // Three 100 KiB messages delivered in one tick: 300 KiB is past the 256 KiB that is copied into one buffer.
    const big = Buffer.alloc(100 * 1024, 0x61);
    pub.push(Buffer.concat([1, 2, 3].map((id) => publish(id, big))));
    for (let i = 0; i < 50 && sub.packets().length < 5; i++) await tick();
    expect(sub.writes.length - before).toBe(3);
    expect(
      sub
        .packets()
        .slice(2)
        .map((p) => (p.cmd === 'publish' ? p.payload.length : -1)),
    ).toEqual([big.length, big.length, big.length]);
    sub.destroy();
    pub.destroy();
  });

  it('encodes a QoS 0 message once per protocol version and hands each subscriber the bytes of its own version', async () => {
    const subscriber = (clientId: string, protocolVersion: 4 | 5): RecordingSocket => {
      const socket = accept();
      socket.push(
        mqtt.generate(
          { cmd: 'connect', protocolId: 'MQTT', protocolVersion, clientId, clean: true, keepalive: 60 },
          { protocolVersion },
        ),
      );
      socket.push(
        mqtt.generate(
          { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'shared/enc', qos: 0 }] },
          { protocolVersion },
        ),
      );
      return socket;
    };
    const subs = [subscriber('enc-a', 4), subscriber('enc-b', 5), subscriber('enc-c', 4), subscriber('enc-d', 5)];
    const versions = [4, 5, 4, 5] as const;
    for (let i = 0; i < 50 && subs.some((s, k) => s.packets(versions[k]).length < 2); i++) await tick();
    const pub = accept();
    pub.push(connect('enc-pub'));
    const payload = Buffer.from('same bytes for every subscriber of a version');
    pub.push(mqtt.generate({ cmd: 'publish', topic: 'shared/enc', payload, qos: 0, retain: false, dup: false }));
    for (let i = 0; i < 50 && subs.some((s, k) => s.packets(versions[k]).length < 3); i++) await tick();
    subs.forEach((s, k) => {
      const v = versions[k]!;
      const expected = mqtt.generate(
        { cmd: 'publish', topic: 'shared/enc', payload, qos: 0, retain: false, dup: false },
        { protocolVersion: v },
      );
      expect(Buffer.concat(s.writes).subarray(-expected.length).equals(expected)).toBe(true);
      s.destroy();
    });
    pub.destroy();
  });

  it('sends a refusal CONNACK before it ends the stream', async () => {
    const socket = accept();
    // MQTT 3.1 allows client ids of at most 23 characters: CONNACK return code 2, then the stream ends.
    socket.push(
      mqtt.generate({
        cmd: 'connect',
        protocolId: 'MQIsdp',
        protocolVersion: 3,
        clientId: 'x'.repeat(30),
        clean: true,
        keepalive: 0,
      }),
    );
    for (let i = 0; i < 50 && !socket.ended; i++) await tick();
    expect(socket.ended).toBe(true);
    expect(socket.endedAfterWrites).toBe(1);
    const [connack] = socket.packets();
    expect(connack).toMatchObject({ cmd: 'connack', returnCode: 2 });
  });
});
