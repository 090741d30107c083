import type { IConnectPacket } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectClient, endAll, rawConnect, rawPublish, type Connected } from '../../helpers/mqtt-clients.js';
import { RawClient, connectPacket } from '../../helpers/raw-client.js';
import { until } from '../../helpers/until.js';

type Will = NonNullable<IConnectPacket['will']>;

function will(topic: string, extra: Partial<Will> = {}): Will {
  return { topic, payload: Buffer.from(`will of ${topic}`), qos: 1, retain: false, ...extra };
}

describe('will messages', () => {
  let broker: TestBroker;
  let watcher: Connected;
  let publisher: Connected;
  beforeAll(async () => {
    broker = await startBroker();
    watcher = await connectClient(broker.url, { clientId: 'will-watcher', protocolVersion: 5 });
    await watcher.client.subscribeAsync('will/#', { qos: 1 });
    publisher = await connectClient(broker.url, { clientId: 'will-publisher', protocolVersion: 5 });
  });
  afterAll(async () => {
    await endAll(watcher.client, publisher.client);
    await broker.stop();
  });

  function closedLog(clientId: string): Promise<Record<string, unknown>> {
    return broker.waitForLog((l) => l.msg === 'client disconnected' && l.clientId === clientId);
  }

  /** Publishes a marker on `will/marker/<name>` and waits for it: a will routed before it has arrived too. */
  async function settle(name: string): Promise<void> {
    await publisher.client.publishAsync(`will/marker/${name}`, 'marker', { qos: 1 });
    await watcher.received.waitForTopic(`will/marker/${name}`);
  }

  it.each([4, 5] as const)('v%i: the will is published when the network connection drops', async (version) => {
    const topic = `will/abrupt/${version}`;
    const { client } = await rawConnect(broker.port, `will-abrupt-${version}`, version, { will: will(topic) });
    client.end();
    const message = await watcher.received.waitForTopic(topic);
    expect(message.payload).toBe(`will of ${topic}`);
    expect(message.packet.qos).toBe(1);
    const line = await broker.waitForLog(
      (l) => l.msg === 'publishing will message' && l.clientId === `will-abrupt-${version}`,
    );
    expect(line.topic).toBe(topic);
  });

  it.each([4, 5] as const)('v%i: a normal DISCONNECT (0x00) discards the will', async (version) => {
    const id = `will-normal-${version}`;
    const topic = `will/normal/${version}`;
    const { client } = await rawConnect(broker.port, id, version, { will: will(topic) });
    client.send({ cmd: 'disconnect', reasonCode: 0 }, version);
    await client.waitClosed();
    await closedLog(id);
    await settle(`normal-${version}`);
    expect(watcher.received.on(topic)).toEqual([]);
  });

  it('v5: DISCONNECT 0x04 (disconnect with will message) publishes the will', async () => {
    const topic = 'will/with-will';
    const { client } = await rawConnect(broker.port, 'will-0x04', 5, { will: will(topic) });
    client.send({ cmd: 'disconnect', reasonCode: 0x04 }, 5);
    const message = await watcher.received.waitForTopic(topic);
    expect(message.payload).toBe(`will of ${topic}`);
  });

  it.each([
    { reasonCode: 0x80, hex: '0x80' },
    { reasonCode: 0x83, hex: '0x83' },
  ])(
    'v5: a DISCONNECT with error reason $hex publishes the will: only 0x00 discards it [MQTT-3.14.4-3]',
    async ({ reasonCode }) => {
      const topic = `will/client-error/${reasonCode}`;
      const { client } = await rawConnect(broker.port, `will-client-error-${reasonCode}`, 5, { will: will(topic) });
      client.send({ cmd: 'disconnect', reasonCode }, 5);
      const message = await watcher.received.waitForTopic(topic);
      expect(message.payload).toBe(`will of ${topic}`);
    },
  );

  it('v5: the will is published when the broker closes the connection for a protocol error', async () => {
    const topic = 'will/violation';
    const { client } = await rawConnect(broker.port, 'will-violation', 5, { will: will(topic) });
    client.send(rawPublish('will/x', 'bad alias', 0, undefined, { properties: { topicAlias: 0 } }), 5);
    expect((await client.next('disconnect')).reasonCode).toBe(0x94);
    await watcher.received.waitForTopic(topic);
  });

  it('v5: the will waits for the will delay interval, then is published', async () => {
    const id = 'will-delayed';
    const topic = 'will/delayed';
    const { client } = await rawConnect(broker.port, id, 5, {
      clean: false,
      properties: { sessionExpiryInterval: 60 },
      will: will(topic, { properties: { willDelayInterval: 1 } }),
    });
    client.end();
    await closedLog(id);
    await settle('delayed');
    expect(watcher.received.on(topic)).toEqual([]);
    const message = await watcher.received.waitForTopic(topic, 4000);
    expect(message.payload).toBe(`will of ${topic}`);
  });

  it('v5: reconnecting before the will delay interval has passed cancels the will', async () => {
    const id = 'will-cancelled';
    const topic = 'will/cancelled';
    const options = { clean: false, properties: { sessionExpiryInterval: 60 } };
    const { client } = await rawConnect(broker.port, id, 5, {
      ...options,
      will: will(topic, { properties: { willDelayInterval: 1 } }),
    });
    client.end();
    await closedLog(id);
    const again = await rawConnect(broker.port, id, 5, options);
    expect(again.connack.sessionPresent).toBe(true);
    // Will delays are whole seconds: wait past the delay once, then prove nothing was sent.
    await new Promise((r) => setTimeout(r, 1300));
    await settle('cancelled');
    expect(watcher.received.on(topic)).toEqual([]);
    again.client.end();
  });

  it('v5: a will delay beyond 24.8 days (2^31 ms, the longest Node timer) is not cut short to nothing', async () => {
    const id = 'will-long-delay';
    const topic = 'will/long-delay';
    const options = { clean: false, properties: { sessionExpiryInterval: 0xffff_ffff } };
    const { client } = await rawConnect(broker.port, id, 5, {
      ...options,
      will: will(topic, { properties: { willDelayInterval: 30 * 24 * 3600 } }),
    });
    client.end();
    await closedLog(id);
    await settle('long-delay');
    expect(watcher.received.on(topic)).toEqual([]);
    // Resuming the session cancels the will, so nothing is left waiting.
    const again = await rawConnect(broker.port, id, 5, options);
    expect(again.connack.sessionPresent).toBe(true);
    again.client.end();
  });

  it('v5: a session expiry shorter than the will delay publishes the will when the session ends', async () => {
    const id = 'will-session-ends';
    const topic = 'will/session-ends';
    const { client } = await rawConnect(broker.port, id, 5, {
      clean: false,
      properties: { sessionExpiryInterval: 1 },
      will: will(topic, { properties: { willDelayInterval: 3600 } }),
    });
    client.end();
    const message = await watcher.received.waitForTopic(topic, 4000);
    expect(message.payload).toBe(`will of ${topic}`);
  });

  it('v5: session expiry 0 with a will delay publishes the will at once, as the session ends with the connection', async () => {
    const topic = 'will/no-session';
    const { client } = await rawConnect(broker.port, 'will-no-session', 5, {
      will: will(topic, { properties: { willDelayInterval: 3600 } }),
    });
    client.end();
    await watcher.received.waitForTopic(topic, 2000);
  });

  it('v5: will properties are forwarded: content type, user properties, response topic, correlation data, format, expiry', async () => {
    const topic = 'will/properties';
    const { client } = await rawConnect(broker.port, 'will-properties', 5, {
      will: will(topic, {
        properties: {
          contentType: 'text/plain',
          userProperties: { site: 'lab', rack: '7' },
          responseTopic: 'will/reply',
          correlationData: Buffer.from([1, 2, 3]),
          payloadFormatIndicator: true,
          messageExpiryInterval: 120,
        },
      }),
    });
    client.end();
    const message = await watcher.received.waitForTopic(topic);
    const properties = message.packet.properties;
    expect(properties?.contentType).toBe('text/plain');
    expect(properties?.userProperties).toEqual({ site: 'lab', rack: '7' });
    expect(properties?.responseTopic).toBe('will/reply');
    expect(Buffer.from(properties!.correlationData!)).toEqual(Buffer.from([1, 2, 3]));
    expect(properties?.payloadFormatIndicator).toBe(true);
    expect(properties?.messageExpiryInterval).toBeGreaterThanOrEqual(1);
    expect(properties?.messageExpiryInterval).toBeLessThanOrEqual(120);
    // The will delay belongs to the CONNECT, not to the published message.
    expect(Object.keys(properties ?? {})).not.toContain('willDelayInterval');
  });

  it('a retained will is stored as the retained message of its topic', async () => {
    const topic = 'will/retained';
    const { client } = await rawConnect(broker.port, 'will-retained', 4, { will: will(topic, { retain: true }) });
    client.end();
    await watcher.received.waitForTopic(topic);
    const late = await connectClient(broker.url, { clientId: 'will-retained-late', protocolVersion: 4 });
    await late.client.subscribeAsync(topic, { qos: 1 });
    const [stored] = await late.received.waitFor(1);
    expect(stored!.packet.retain).toBe(true);
    expect(stored!.payload).toBe(`will of ${topic}`);
    await publisher.client.publishAsync(topic, '', { qos: 1, retain: true });
    await endAll(late.client);
  });

  it('v5: on takeover the old connection’s will (delay 0) is published [MQTT-3.1.4-3]', async () => {
    const id = 'will-takeover';
    const topic = 'will/takeover';
    const { client: old } = await rawConnect(broker.port, id, 5, { will: will(topic) });
    const fresh = await rawConnect(broker.port, id, 5);
    expect((await old.next('disconnect')).reasonCode).toBe(0x8e);
    await old.waitClosed();
    const message = await watcher.received.waitForTopic(topic, 2000);
    expect(message.payload).toBe(`will of ${topic}`);
    fresh.client.end();
  });
});

describe('will messages: a takeover while the old connection is still closing', () => {
  // With `net` sockets the broker half-closes after a DISCONNECT and waits for the client's FIN (up to the close
  // grace): a client that has not closed its side yet, or a WebSocket peer that has not answered the close, keeps
  // the old connection attached to its session while the client reconnects with the same identifier.
  let broker: TestBroker;
  let watcher: Connected;
  beforeAll(async () => {
    broker = await startBroker({ listener: { socket_layer: 'net' } });
    watcher = await connectClient(broker.url, { clientId: 'closing-watcher', protocolVersion: 5 });
    await watcher.client.subscribeAsync('will/#', { qos: 1 });
  });
  afterAll(async () => {
    await endAll(watcher.client);
    await broker.stop();
  });

  it.each([4, 5] as const)(
    'v%i: a normal DISCONNECT (0x00) discards the will also when the client reconnects at once [MQTT-3.14.4-3]',
    async (version) => {
      const id = `will-quick-reconnect-${version}`;
      const topic = `will/quick-reconnect/${version}`;
      const old = await RawClient.connect(broker.port, version, { allowHalfOpen: true });
      old.send(connectPacket(id, { protocolVersion: version, will: will(topic) }), version);
      await old.next('connack');
      old.send({ cmd: 'disconnect', reasonCode: 0 }, version);
      // The broker has handled the DISCONNECT and ended its side; the old connection stays open until ours ends.
      await until(() => old.ended, 'the broker to end the old connection');
      const fresh = await rawConnect(broker.port, id, version);
      await broker.waitForLog((l) => l.msg === 'session taken over by a new connection' && l.clientId === id);
      await watcher.client.publishAsync(`will/marker/quick-${version}`, 'marker', { qos: 1 });
      await watcher.received.waitForTopic(`will/marker/quick-${version}`);
      expect(watcher.received.on(topic)).toEqual([]);
      await endAll(old, fresh.client);
    },
  );

  it('v5: the will of a connection that ended without DISCONNECT 0x00 is still published on takeover', async () => {
    const id = 'will-quick-reconnect-abrupt';
    const topic = 'will/quick-reconnect/abrupt';
    const old = await RawClient.connect(broker.port, 5, { allowHalfOpen: true });
    old.send(connectPacket(id, { protocolVersion: 5, will: will(topic) }), 5);
    await old.next('connack');
    // Half-closed by the client without a DISCONNECT: the broker ends the connection as abnormal.
    old.socket.end();
    const fresh = await rawConnect(broker.port, id, 5);
    expect((await watcher.received.waitForTopic(topic)).payload).toBe(`will of ${topic}`);
    await endAll(old, fresh.client);
  });
});

describe('a session expiry the broker capped to 0', () => {
  let broker: TestBroker;
  let watcher: Connected;
  beforeAll(async () => {
    broker = await startBroker({ config: { limits: { max_session_expiry_interval: 0 } } });
    watcher = await connectClient(broker.url, { clientId: 'capped-watcher', protocolVersion: 5 });
    await watcher.client.subscribeAsync('capped/#', { qos: 1 });
  });
  afterAll(async () => {
    await endAll(watcher.client);
    await broker.stop();
  });

  it('v5: a DISCONNECT setting the expiry its CONNECT asked for is no protocol error, and a normal one discards the will [MQTT-3.14.2-2]', async () => {
    const id = 'capped-expiry';
    const { client, connack } = await rawConnect(broker.port, id, 5, {
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
      will: will('capped/will'),
    });
    // The broker said 0 in its CONNACK; the client, which asked for an hour, may still name one on DISCONNECT.
    expect(connack.properties?.sessionExpiryInterval).toBe(0);
    client.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 3600 } }, 5);
    await client.waitClosed();
    const line = await broker.waitForLog((l) => l.msg === 'client disconnected' && l.clientId === id);
    expect(line.reason).toBe('client disconnected (reason 0x00)');
    expect(broker.logs.filter((l) => l.clientId === id && l.msg === 'closing connection: protocol violation')).toEqual(
      [],
    );
    // A marker published after the disconnect arrives; a will routed before it would have arrived first.
    await watcher.client.publishAsync('capped/marker', 'marker', { qos: 1 });
    await watcher.received.waitForTopic('capped/marker');
    expect(watcher.received.on('capped/will')).toEqual([]);
    // Capped again: nothing of the session is kept.
    const again = await rawConnect(broker.port, id, 5, { clean: false, properties: { sessionExpiryInterval: 3600 } });
    expect(again.connack.sessionPresent).toBe(false);
    again.client.end();
  });
});
