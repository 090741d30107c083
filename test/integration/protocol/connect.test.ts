import mqttPacket, { type IDisconnectPacket } from 'mqtt-packet';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ChainResult, ConnectAttempt, ConnectAuthenticator } from '../../../authn/types.js';
import type { Authorizer } from '../../../authz/types.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { until } from '../../helpers/until.js';
import {
  connectClient,
  endAll,
  rawConnect,
  rawPublish,
  rawSubscribe,
  type Connected,
} from '../../helpers/mqtt-clients.js';
import { RawClient, connectPacket } from '../../helpers/raw-client.js';
import { identity } from '../../unit/authz/helpers.js';

const MAX_KEEPALIVE = 100;
const OUTPUT_BUFFER = 65_536;

/** A CONNECT written by hand, for protocol names and levels a codec will not produce. */
function handmadeConnect(protocolName: string, level: number, clientId = 'x'): Buffer {
  const name = Buffer.from(protocolName);
  const id = Buffer.from(clientId);
  const body = Buffer.concat([
    Buffer.from([0, name.length]),
    name,
    Buffer.from([level, 0x02, 0, 60]),
    ...(level === 5 ? [Buffer.from([0])] : []),
    Buffer.from([0, id.length]),
    id,
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

describe('CONNECT, keep alive and bad connections', () => {
  let broker: TestBroker;
  let publisher: Connected;
  beforeAll(async () => {
    broker = await startBroker({
      config: {
        limits: { connect_timeout_ms: 300, max_keepalive: MAX_KEEPALIVE, max_output_buffer_bytes: OUTPUT_BUFFER },
      },
    });
    publisher = await connectClient(broker.url, { clientId: 'connect-publisher', protocolVersion: 5, keepalive: 30 });
  });
  afterAll(async () => {
    await endAll(publisher.client);
    await broker.stop();
  });

  function logged(msg: string, where: (l: Record<string, unknown>) => boolean = () => true) {
    return broker.waitForLog((l) => l.msg === msg && where(l));
  }

  it('v5: an empty client id gets an assigned client identifier that works as the session id', async () => {
    const { client, connack } = await rawConnect(broker.port, '', 5, { keepalive: 30 });
    expect(connack.reasonCode).toBe(0);
    const assigned = connack.properties?.assignedClientIdentifier;
    expect(assigned).toBeTruthy();
    const suback = await rawSubscribe(client, 5, 1, [{ topic: 'assigned/t', qos: 1 }]);
    expect(suback.granted).toEqual([1]);
    await publisher.client.publishAsync('assigned/t', 'hi', { qos: 1 });
    expect((await client.next('publish')).payload.toString()).toBe('hi');
    const second = await rawConnect(broker.port, '', 5, { keepalive: 30 });
    expect(second.connack.properties?.assignedClientIdentifier).not.toBe(assigned);
    client.end();
    second.client.end();
  });

  it('3.1.1: an empty client id with clean session 0 is refused with return code 2, then closed', async () => {
    // mqtt-packet refuses to encode this CONNECT: encode it with clean session 1, then clear the flag.
    const bytes = mqttPacket.generate(connectPacket('', { clean: true, keepalive: 30 }), { protocolVersion: 4 });
    bytes[9] = bytes[9]! & ~0x02;
    const client = await RawClient.connect(broker.port, 4);
    client.sendBytes(bytes);
    const connack = await client.next('connack');
    expect(connack.returnCode).toBe(2);
    await client.waitClosed();
    const event = await broker.waitForAudit(
      'authn.denied',
      (e) => e.event.code === 'clientIdentifierNotValid' && e.mqtt?.protocol_version === 4,
    );
    expect(event.event.outcome).toBe('failure');
  });

  it('3.1.1: an empty client id with clean session 1 is accepted', async () => {
    const { client, connack } = await rawConnect(broker.port, '', 4, { clean: true, keepalive: 30 });
    expect(connack.returnCode).toBe(0);
    client.end();
  });

  it('MQTT 3.1 (MQIsdp, level 3) connects, subscribes and receives', async () => {
    const { client, connack } = await rawConnect(broker.port, 'mqtt31-client', 3, { keepalive: 30 });
    expect(connack.returnCode).toBe(0);
    const suback = await rawSubscribe(client, 3, 1, [{ topic: 'mqtt31/t', qos: 1 }]);
    expect(suback.granted).toEqual([1]);
    await publisher.client.publishAsync('mqtt31/t', 'old protocol', { qos: 1 });
    const publish = await client.next('publish');
    expect(publish.payload.toString()).toBe('old protocol');
    client.send({ cmd: 'puback', messageId: publish.messageId });
    client.end();
  });

  it('MQTT 3.1 refuses a client id longer than 23 characters with return code 2', async () => {
    const { client, connack } = await rawConnect(broker.port, 'x'.repeat(24), 3, { keepalive: 30 });
    expect(connack.returnCode).toBe(2);
    await client.waitClosed();
  });

  it('an unsupported protocol level above 5 gets CONNACK 0x84 and is closed', async () => {
    const client = await RawClient.connect(broker.port, 5);
    // 60 is pino's number for "fatal": logged under a key of its own, it cannot pass for the line's severity.
    client.sendBytes(handmadeConnect('MQTT', 60));
    const connack = await client.next('connack');
    expect(connack.reasonCode).toBe(0x84);
    await client.waitClosed();
    const line = await logged('refusing connection: unsupported protocol level', (l) => l.protocolLevel === 60);
    expect(line.peer).toBeTruthy();
    expect(line.level).toBe(30);
  });

  it('an unsupported protocol level below 3 gets CONNACK return code 1 and is closed', async () => {
    const client = await RawClient.connect(broker.port, 4);
    client.sendBytes(handmadeConnect('MQTT', 2));
    const connack = await client.next('connack');
    expect(connack.returnCode).toBe(1);
    await client.waitClosed();
    const line = await logged('refusing connection: unsupported protocol level', (l) => l.protocolLevel === 2);
    expect(line.level).toBe(30);
  });

  it('a protocol name that does not match the level is refused', async () => {
    const client = await RawClient.connect(broker.port, 4);
    client.sendBytes(handmadeConnect('MQIsdp', 4));
    const connack = await client.next('connack');
    expect(connack.returnCode).toBe(1);
    await client.waitClosed();
  });

  it('a first packet that is not CONNECT closes the connection, with a log line', async () => {
    const client = await RawClient.connect(broker.port, 4);
    client.send(rawPublish('first/not-connect', 'x', 0));
    await client.waitClosed();
    expect(client.packets).toEqual([]);
    await logged('closing connection: first packet is not CONNECT');
  });

  it.each([4, 5] as const)(
    'v%i: a CONNECT with bytes after its last field is malformed: closed (MQTT 5: after CONNACK 0x81), with a log line',
    async (version) => {
      const client = await RawClient.connect(broker.port, version);
      const connect = handmadeConnect('MQTT', version, `surplus-${version}`);
      const withSurplus = Buffer.concat([connect, Buffer.from([0xde, 0xad, 0xbe])]);
      withSurplus[1] = (withSurplus[1] as number) + 3;
      client.sendBytes(withSurplus);
      await client.waitClosed();
      const answers = client.packets.map((p) => [p.cmd, (p as { reasonCode?: number }).reasonCode]);
      expect(answers).toEqual(version === 5 ? [['connack', 0x81]] : []);
      const line = await logged(
        'closing connection: protocol violation',
        (l) => typeof l.detail === 'string' && l.detail.includes('3 bytes after its last field'),
      );
      expect(line.reason).toBe('malformedPacket');
    },
  );

  it.each([4, 5] as const)('v%i: a second CONNECT is a protocol violation', async (version) => {
    const id = `second-connect-${version}`;
    const { client } = await rawConnect(broker.port, id, version, { keepalive: 30 });
    client.send(connectPacket(id, { protocolVersion: version, keepalive: 30 }), version);
    if (version === 5) expect((await client.next('disconnect')).reasonCode).toBe(0x82);
    await client.waitClosed();
    expect(client.packets.filter((p) => p.cmd === 'connack')).toEqual([]);
    const line = await logged('closing connection: protocol violation', (l) => l.clientId === id);
    expect(line.reason).toBe('protocolError');
  });

  it.each([4, 5] as const)(
    'v%i: a client silent for 1.5 × its keep alive is closed; a client that pings stays',
    async (version) => {
      const id = `keepalive-silent-${version}`;
      const pinging = await connectClient(broker.url, {
        clientId: `keepalive-pinging-${version}`,
        protocolVersion: version,
        keepalive: 1,
      });
      let pingingClosed = 0;
      pinging.client.on('close', () => pingingClosed++);
      const connectedAt = Date.now();
      const { client } = await rawConnect(broker.port, id, version, { keepalive: 1 });
      if (version === 5) expect((await client.next('disconnect', 4000)).reasonCode).toBe(0x8d);
      await client.waitClosed(4000);
      // Not before 1.5 × the keep alive since its CONNECT, the last packet it sent [MQTT-3.1.2-22].
      expect(Date.now() - connectedAt).toBeGreaterThanOrEqual(1500);
      await logged('disconnecting client: keep alive timeout', (l) => l.clientId === id);
      // The pinging client outlived 1.5 × its keep alive without losing its connection once.
      expect(pingingClosed).toBe(0);
      expect(pinging.client.connected).toBe(true);
      await endAll(pinging.client);
    },
  );

  it('v5: bytes of a packet that never completes do not count as a packet for keep alive [MQTT-3.1.2-22]', async () => {
    const id = 'keepalive-trickle';
    const connectedAt = Date.now();
    const { client } = await rawConnect(broker.port, id, 5, { keepalive: 1 });
    // A PUBLISH announcing 100 bytes, then one byte every 300 ms: never a whole Control Packet, but never silent.
    client.sendBytes([0x30, 100, 0, 5]);
    const trickle = setInterval(() => client.sendBytes([0x61]), 300);
    try {
      expect((await client.next('disconnect', 4000)).reasonCode).toBe(0x8d);
      // Counted from the CONNECT, its last whole packet: not sooner.
      expect(Date.now() - connectedAt).toBeGreaterThanOrEqual(1500);
      await client.waitClosed(4000);
      await logged('disconnecting client: keep alive timeout', (l) => l.clientId === id);
    } finally {
      clearInterval(trickle);
    }
  });

  it('v5: a keep alive above limits.max_keepalive is lowered with Server Keep Alive in CONNACK', async () => {
    const { client, connack } = await rawConnect(broker.port, 'keepalive-v5-high', 5, { keepalive: MAX_KEEPALIVE * 2 });
    expect(connack.reasonCode).toBe(0);
    expect(connack.properties?.serverKeepAlive).toBe(MAX_KEEPALIVE);
    client.end();
  });

  it('v5: a keep alive of 0 (none) is given Server Keep Alive when a maximum is configured', async () => {
    const { client, connack } = await rawConnect(broker.port, 'keepalive-v5-zero', 5, { keepalive: 0 });
    expect(connack.reasonCode).toBe(0);
    expect(connack.properties?.serverKeepAlive).toBe(MAX_KEEPALIVE);
    client.end();
  });

  it('v5: a keep alive within the maximum is not overridden', async () => {
    const { client, connack } = await rawConnect(broker.port, 'keepalive-v5-ok', 5, { keepalive: 30 });
    expect(connack.properties?.serverKeepAlive).toBeUndefined();
    client.end();
  });

  it('3.1.1: a keep alive above limits.max_keepalive is refused and closed', async () => {
    const { client, connack } = await rawConnect(broker.port, 'keepalive-v4-high', 4, { keepalive: MAX_KEEPALIVE * 2 });
    expect(connack.returnCode).toBe(2);
    await client.waitClosed();
    const event = await broker.waitForAudit('authn.denied', (e) => e.mqtt?.client_id === 'keepalive-v4-high');
    expect(event.event.reason).toMatch(/keep alive/);
  });

  it('a TCP connection that sends nothing is closed after limits.connect_timeout_ms, with a log line', async () => {
    const before = broker.logs.filter(
      (l) => l.msg === 'closing connection: no CONNECT within the connect timeout',
    ).length;
    const recordsBefore = broker.audit.events.filter((e) => e.event.action === 'connection.connect_timeout').length;
    const client = await RawClient.connect(broker.port, 4);
    await client.waitClosed(3000);
    await broker.waitForLog(
      () =>
        broker.logs.filter((l) => l.msg === 'closing connection: no CONNECT within the connect timeout').length >
        before,
    );
    // And an audit record: holding sockets open without a CONNECT is an attack a reviewer must be able to see.
    const records = broker.audit.events.filter((e) => e.event.action === 'connection.connect_timeout');
    expect(records).toHaveLength(recordsBefore + 1);
    expect(records.at(-1)).toMatchObject({
      event: { outcome: 'failure', code: 'connect_timeout', reason: 'no CONNECT within the connect timeout' },
      client: { ip: '127.0.0.1' },
      mqtt: { listener: 'test' },
    });
    expect(records.at(-1)!.mqtt?.client_id).toBeUndefined();
  });

  it('a connection that sends half a CONNECT is closed after the connect timeout too', async () => {
    const client = await RawClient.connect(broker.port, 4);
    const bytes = mqttPacket.generate(connectPacket('half-connect', { keepalive: 30 }), { protocolVersion: 4 });
    client.sendBytes(bytes.subarray(0, 6));
    await client.waitClosed(3000);
    expect(client.packets).toEqual([]);
  });

  it('a subscriber that never reads is disconnected when its output buffer is full; others keep receiving', async () => {
    const id = 'never-reads';
    const { client: stuck } = await rawConnect(broker.port, id, 4, { keepalive: 30 });
    await rawSubscribe(stuck, 4, 1, [{ topic: 'busy/t', qos: 0 }]);
    stuck.socket.pause();
    const healthy = await connectClient(broker.url, { clientId: 'reads-fine', protocolVersion: 4, keepalive: 30 });
    await healthy.client.subscribeAsync('busy/t', { qos: 0 });
    const { client: flood } = await rawConnect(broker.port, 'flooder', 4, { keepalive: 30 });
    const chunk = mqttPacket.generate(rawPublish('busy/t', Buffer.alloc(32 * 1024, 0x7a), 0), { protocolVersion: 4 });
    const full = (l: Record<string, unknown>): boolean =>
      l.msg === 'disconnecting client: it does not read (output buffer full)' && l.clientId === id;
    let sent = 0;
    // Kernel socket buffers absorb a few MB before the broker's own buffer fills; flood until it does (bounded).
    while (!broker.logs.some(full) && sent < 2000) {
      for (let i = 0; i < 20; i++) flood.sendBytes(chunk);
      sent += 20;
      flood.send({ cmd: 'pingreq' });
      await flood.next('pingresp', 10_000);
    }
    const line = await broker.waitForLog(full);
    expect(line.buffered).toBeGreaterThan(OUTPUT_BUFFER);
    const event = await broker.waitForAudit('client.disconnected', (e) => e.mqtt?.client_id === id);
    expect(event.event.reason).toBe('output buffer full: client does not read');
    // The healthy subscriber and the publisher are unaffected.
    flood.send(rawPublish('busy/t', 'last', 0));
    await healthy.received.until(() => healthy.received.messages.some((m) => m.payload === 'last'), 'last', 20_000);
    expect(healthy.received.messages.length).toBe(sent + 1);
    expect(flood.closed).toBe(false);
    stuck.end();
    flood.end();
    await endAll(healthy.client);
  }, 60_000);
});

/** The broker's end of a loopback connection as /proc/net/tcp lists it (ports in hex, big-endian). */
function brokerSideOf(brokerPort: number, clientPort: number): { state: string; inode: string } | undefined {
  const hex = (port: number): string => port.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hex(brokerPort)}`) && f[2]?.endsWith(`:${hex(clientPort)}`)) {
      return { state: f[3]!, inode: f[9]! };
    }
  }
  return undefined;
}

/**
 * A raw client past its CONNACK whose socket stays open after the broker's FIN (allowHalfOpen: it does not answer
 * with its own, as a careless client's would not).
 */
async function halfOpenClient(
  port: number,
  clientId: string,
): Promise<{ socket: net.Socket; received: () => Buffer; ended: Promise<void>; connackLength: number }> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  const ended = new Promise<void>((resolve) => socket.once('end', resolve));
  socket.write(mqttPacket.generate(connectPacket(clientId)));
  const received = (): Buffer => Buffer.concat(chunks);
  await until(() => received().length >= 4, 'CONNACK');
  return { socket, received, ended, connackLength: received().length };
}

describe('DISCONNECT from a client that keeps its side open', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker();
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('is closed by the broker, and its disconnect is recorded', async () => {
    const client = await halfOpenClient(broker.port, 'half-open');
    expect(broker.server.broker.stats.clientsConnected).toBe(1);
    client.socket.write(Buffer.from([0xe0, 0]));
    // [MQTT-3.14.4-3]: a normal DISCONNECT discards the will; the server SHOULD close the network connection.
    const event = await broker.waitForAudit('client.disconnected', (e) => e.mqtt?.client_id === 'half-open');
    expect(event.event.reason).toBe('client disconnected (reason 0x00)');
    await client.ended;
    expect(broker.server.broker.stats.clientsConnected).toBe(0);
    client.socket.destroy();
  });

  it('closes its socket at once instead of waiting for the client: the FIN comes from a closed descriptor', async () => {
    const client = await halfOpenClient(broker.port, 'closed-at-once');
    client.socket.write(Buffer.from([0xe0, 0]));
    await client.ended;
    // A half-closed socket still belongs to the broker's descriptor (inode set); a closed one is the kernel's alone.
    const row = brokerSideOf(broker.port, client.socket.localPort!);
    expect(row, 'the broker side of the connection in /proc/net/tcp').toBeDefined();
    expect(row!.inode).toBe('0');
    client.socket.destroy();
  });

  it('a connection the broker ends itself is destroyed after CLOSE_GRACE_MS when the client never closes', async () => {
    const client = await halfOpenClient(broker.port, 'ended-by-broker');
    // A second CONNECT is a protocol violation: the broker half-closes and waits for the client's FIN, with a deadline.
    client.socket.write(mqttPacket.generate(connectPacket('ended-by-broker')));
    await client.ended;
    const event = await broker.waitForAudit('client.disconnected', (e) => e.mqtt?.client_id === 'ended-by-broker');
    expect(event.event.reason).toContain('CONNECT');
    expect(brokerSideOf(broker.port, client.socket.localPort!)?.inode ?? '0').toBe('0');
    client.socket.destroy();
  });

  it('still delivers what it queued in the same tick as the DISCONNECT before closing', async () => {
    const client = await halfOpenClient(broker.port, 'ping-then-disconnect');
    // PINGREQ and DISCONNECT in one segment: the PINGRESP is queued, then the connection closes in the same tick.
    client.socket.write(Buffer.from([0xc0, 0, 0xe0, 0]));
    await client.ended;
    expect([...client.received().subarray(client.connackLength)]).toEqual([0xd0, 0]);
    client.socket.destroy();
  });
});

describe('graceful shutdown', () => {
  it('stopping the broker sends DISCONNECT 0x8B to v5 clients, closes 3.1.1 clients and publishes no will', async () => {
    const broker = await startBroker();
    const watcher = await connectClient(broker.url, { clientId: 'shutdown-watcher', protocolVersion: 4 });
    await watcher.client.subscribeAsync('shutdown/#', { qos: 0 });
    const v5 = await rawConnect(broker.port, 'shutdown-v5', 5, {
      will: { topic: 'shutdown/will', payload: Buffer.from('w'), qos: 0, retain: false },
    });
    const v4 = await rawConnect(broker.port, 'shutdown-v4', 4);
    await broker.stop();
    expect((await v5.client.next('disconnect')).reasonCode).toBe(0x8b);
    await v5.client.waitClosed();
    await v4.client.waitClosed();
    expect(watcher.received.on('shutdown/will')).toEqual([]);
    expect(broker.audit.events.some((e) => e.event.action === 'broker.stopped')).toBe(true);
    await endAll(watcher.client);
  });
});

/** A chain that answers every CONNECT with `authenticate` and takes part in no enhanced authentication. */
function allowing(authenticate: ConnectAuthenticator['authenticate']): ConnectAuthenticator {
  return {
    authenticate,
    continueExchange: () =>
      Promise.resolve({ kind: 'deny', reason: 'protocolError', detail: 'no exchange', decidedBy: 'test', steps: [] }),
    supportsMethod: () => false,
  };
}

/** A policy that allows everything: these tests are about the connection, not authorization. */
const ALLOW_ALL: Authorizer = {
  check: () => ({ allowed: true, reason: 'test allows' }),
  onChange: () => undefined,
  invalidate: () => undefined,
};

/** A chain's answer that allows the client as itself, decided by `authenticator`. */
function allowAs(attempt: ConnectAttempt, authenticator: string, extra: { expiresAt?: number } = {}): ChainResult {
  return {
    kind: 'allow',
    identity: identity({ clientId: attempt.clientId, username: attempt.username, authenticator, ...extra }),
    steps: [],
  };
}

describe('a credential that expires further off than the longest Node timer', () => {
  const DAY_MS = 24 * 3600 * 1000;
  /** Every client gets an identity whose credential (a JWT's `exp`, say) runs out 30 days after it connects. */
  const thirtyDayCredentials = allowing((attempt) =>
    allowAs(attempt, 'thirty-days', { expiresAt: Date.now() + 30 * DAY_MS }),
  );
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker({
      authenticator: thirtyDayCredentials,
      authorizer: ALLOW_ALL,
    });
  });
  afterAll(async () => {
    vi.useRealTimers();
    await broker.stop();
  });

  it('v5: the client is disconnected when its 30-day credential runs out (0x87), not kept past it', async () => {
    // The broker's clock from the CONNECT on, so the days pass at once; its sockets do not need timers. Keep alive 0,
    // so that only the credential can end the connection.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      const { client, connack } = await rawConnect(broker.port, 'thirty-days', 5, { keepalive: 0, username: 'd' });
      expect(connack.reasonCode).toBe(0);
      vi.advanceTimersByTime(29 * DAY_MS);
      client.send({ cmd: 'pingreq' }, 5);
      await client.next('pingresp');
      vi.advanceTimersByTime(DAY_MS + 1000);
      // A connection still open answers the PINGREQ; the DISCONNECT, when sent, comes first.
      client.send({ cmd: 'pingreq' }, 5);
      const answer = await client.nextOf(['disconnect', 'pingresp']);
      expect(answer.cmd).toBe('disconnect');
      const disconnect = answer as IDisconnectPacket;
      expect([disconnect.reasonCode, disconnect.properties?.reasonString]).toEqual([0x87, 'credential expired']);
      client.end();
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('a second CONNECT that arrives while the first is still being answered', () => {
  /** Allows every client, 50 ms later: the CONNECT is answered after whatever the client sent behind it was read. */
  const slowAllow = allowing(
    (attempt) => new Promise((resolve) => setTimeout(() => resolve(allowAs(attempt, 'slow')), 50)),
  );
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker({
      authenticator: slowAllow,
      authorizer: ALLOW_ALL,
    });
  });
  afterAll(() => broker.stop());

  it('a connect that fails between its session and its CONNACK is not counted as a client that left', async () => {
    const stats = broker.server.broker.stats;
    const before = stats.clientsConnected;
    const client = await RawClient.connect(broker.port, 5);
    client.send(connectPacket('connack-fails', { protocolVersion: 5 }), 5);
    // While the authenticator waits, the CONNACK is made to fail as an internal error would make it.
    const connection = await until(
      () => [...broker.server.broker.connections].find((c) => c.clientId === 'connack-fails'),
      'the connection',
    );
    connection.writePacket = (packet) => {
      if (packet.cmd === 'connack') throw new Error('CONNACK could not be encoded');
    };
    await client.waitClosed();
    await broker.waitForLog(
      (l) => l.msg === 'internal error while handling a packet' && l.clientId === 'connack-fails',
    );
    await until(() => !broker.server.broker.connections.has(connection) || undefined, 'the connection gone');
    // Never counted in, so not counted out: the count was one lower after every such failure.
    expect(stats.clientsConnected).toBe(before);
  });

  it.each([
    [4, 5],
    [5, 4],
    [3, 5],
  ] as const)(
    'v%i then v%i in one write: the first is answered in its own version, then the second closes the connection',
    async (first, second) => {
      const id = `pipelined-${first}-${second}`;
      const client = await RawClient.connect(broker.port, first);
      // Until the fix, the second CONNECT's version replaced the first's before its CONNACK was encoded: the broker
      // logged an internal error ("Invalid return code") and the client got nothing, or a CONNACK it could not read.
      client.sendBytes(
        Buffer.concat([
          mqttPacket.generate(
            connectPacket(id, { protocolVersion: first, protocolId: first === 3 ? 'MQIsdp' : 'MQTT' }),
            {
              protocolVersion: first,
            },
          ),
          mqttPacket.generate(connectPacket(`${id}-again`, { protocolVersion: second }), { protocolVersion: second }),
        ]),
      );
      const connack = await client.next('connack');
      expect(first === 5 ? connack.reasonCode : connack.returnCode).toBe(0);
      if (first === 5) expect((await client.next('disconnect')).reasonCode).toBe(0x82);
      await client.waitClosed();
      const line = await broker.waitForLog(
        (l) => l.msg === 'closing connection: protocol violation' && l.clientId === id,
      );
      expect([line.reason, line.detail]).toEqual(['protocolError', 'second CONNECT on the same connection']);
      expect(
        broker.logs.filter((l) => l.msg === 'internal error while handling a packet' && l.clientId === id),
      ).toEqual([]);
    },
  );
});
