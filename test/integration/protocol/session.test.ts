import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import {
  connectClient,
  endAll,
  rawConnect,
  rawPublish,
  rawSubscribe,
  waitClientClosed,
  type Connected,
} from '../../helpers/mqtt-clients.js';

const QUEUE_LIMIT = 3;

async function disconnected(broker: TestBroker, clientId: string, count = 1): Promise<void> {
  await broker.waitForLog(
    () => broker.logs.filter((l) => l.msg === 'client disconnected' && l.clientId === clientId).length >= count,
  );
}

describe('sessions', () => {
  let broker: TestBroker;
  let publisher: Connected;
  beforeAll(async () => {
    broker = await startBroker({ config: { limits: { max_queued_messages: QUEUE_LIMIT } } });
    publisher = await connectClient(broker.url, { clientId: 'session-publisher', protocolVersion: 5 });
  });
  afterAll(async () => {
    await endAll(publisher.client);
    await broker.stop();
  });

  it('3.1.1: clean session 1 never has a session present; clean session 0 resumes with session present', async () => {
    const id = 'sess-v4';
    const a = await connectClient(broker.url, { clientId: id, protocolVersion: 4, clean: true });
    expect(a.connack.sessionPresent).toBe(false);
    await a.client.endAsync();
    await disconnected(broker, id, 1);
    const b = await connectClient(broker.url, { clientId: id, protocolVersion: 4, clean: false });
    expect(b.connack.sessionPresent).toBe(false);
    await b.client.subscribeAsync('sess/v4', { qos: 1 });
    await b.client.endAsync();
    await disconnected(broker, id, 2);
    const c = await connectClient(broker.url, { clientId: id, protocolVersion: 4, clean: false });
    expect(c.connack.sessionPresent).toBe(true);
    // The subscription came back with the session.
    await publisher.client.publishAsync('sess/v4', 'kept', { qos: 1 });
    expect((await c.received.waitFor(1))[0]!.payload).toBe('kept');
    await c.client.endAsync();
    await disconnected(broker, id, 3);
    const d = await connectClient(broker.url, { clientId: id, protocolVersion: 4, clean: true });
    expect(d.connack.sessionPresent).toBe(false);
    await endAll(d.client);
  });

  it('v5: clean start 0 with a session expiry resumes the session and its subscriptions', async () => {
    const id = 'sess-v5';
    const options = {
      clientId: id,
      protocolVersion: 5 as const,
      clean: false,
      properties: { sessionExpiryInterval: 60 },
    };
    const a = await connectClient(broker.url, options);
    expect(a.connack.sessionPresent).toBe(false);
    await a.client.subscribeAsync('sess/v5', { qos: 1 });
    await a.client.endAsync();
    await disconnected(broker, id);
    const b = await connectClient(broker.url, options);
    expect(b.connack.sessionPresent).toBe(true);
    await publisher.client.publishAsync('sess/v5', 'resumed', { qos: 1 });
    expect((await b.received.waitFor(1))[0]!.payload).toBe('resumed');
    await endAll(b.client);
  });

  it('v5: clean start 1 discards an existing session', async () => {
    const id = 'sess-v5-clean';
    const a = await connectClient(broker.url, {
      clientId: id,
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 60 },
    });
    await a.client.subscribeAsync('sess/clean', { qos: 1 });
    await a.client.endAsync();
    await disconnected(broker, id);
    const b = await connectClient(broker.url, { clientId: id, protocolVersion: 5, clean: true });
    expect(b.connack.sessionPresent).toBe(false);
    await b.client.subscribeAsync('sess/clean/marker', { qos: 1 });
    await publisher.client.publishAsync('sess/clean', 'old subscription', { qos: 1 });
    await publisher.client.publishAsync('sess/clean/marker', 'marker', { qos: 1 });
    await b.received.waitForTopic('sess/clean/marker');
    expect(b.received.on('sess/clean')).toEqual([]);
    await endAll(b.client);
  });

  it('v5: a session with a 1 s expiry interval is gone after it expires', async () => {
    const id = 'sess-expiry';
    const options = {
      clientId: id,
      protocolVersion: 5 as const,
      clean: false,
      properties: { sessionExpiryInterval: 1 },
    };
    const a = await connectClient(broker.url, options);
    await a.client.subscribeAsync('sess/expiry', { qos: 1 });
    await a.client.endAsync();
    await disconnected(broker, id);
    // Session expiry is in whole seconds: the one wait this file needs.
    await new Promise((r) => setTimeout(r, 1300));
    const b = await connectClient(broker.url, options);
    expect(b.connack.sessionPresent).toBe(false);
    await endAll(b.client);
  });

  it.each([
    { version: 4 as const, extra: { clean: false } },
    { version: 5 as const, extra: { clean: false, properties: { sessionExpiryInterval: 60 } } },
  ])(
    'v$version: QoS 1 and 2 messages published while offline are delivered on reconnect, in order; QoS 0 is not queued',
    async ({ version, extra }) => {
      const id = `sess-queue-${version}`;
      const first = await connectClient(broker.url, { clientId: id, protocolVersion: version, ...extra });
      await first.client.subscribeAsync(`sess/queue/${version}`, { qos: 2 });
      await first.client.endAsync();
      await disconnected(broker, id);
      const sent = [
        { payload: 'm1', qos: 1 as const },
        { payload: 'm2', qos: 2 as const },
        { payload: 'zero', qos: 0 as const },
        { payload: 'm3', qos: 1 as const },
      ];
      for (const m of sent) await publisher.client.publishAsync(`sess/queue/${version}`, m.payload, { qos: m.qos });
      const second = await connectClient(broker.url, { clientId: id, protocolVersion: version, ...extra });
      expect(second.connack.sessionPresent).toBe(true);
      await second.client.subscribeAsync(`sess/queue/${version}/marker`, { qos: 1 });
      await publisher.client.publishAsync(`sess/queue/${version}/marker`, 'marker', { qos: 1 });
      await second.received.waitForTopic(`sess/queue/${version}/marker`);
      const queued = second.received.wire.filter((p) => p.topic === `sess/queue/${version}`);
      expect(queued.map((p) => [p.payload.toString(), p.qos])).toEqual([
        ['m1', 1],
        ['m2', 2],
        ['m3', 1],
      ]);
      await endAll(second.client);
    },
  );

  it('drop-new: a full offline queue keeps the oldest messages, drops new ones and logs it', async () => {
    const id = 'sess-overflow-new';
    const options = {
      clientId: id,
      protocolVersion: 5 as const,
      clean: false,
      properties: { sessionExpiryInterval: 60 },
    };
    const first = await connectClient(broker.url, options);
    await first.client.subscribeAsync('sess/overflow-new', { qos: 1 });
    await first.client.endAsync();
    await disconnected(broker, id);
    const droppedBefore = broker.server.broker.stats.messagesDropped;
    for (let i = 1; i <= QUEUE_LIMIT + 2; i++)
      await publisher.client.publishAsync('sess/overflow-new', `n${i}`, { qos: 1 });
    const line = await broker.waitForLog((l) => l.msg === 'session queue full: message dropped' && l.clientId === id);
    expect(line.policy).toBe('drop-new');
    expect(line.limit).toBe(QUEUE_LIMIT);
    // Both drops are counted; only the first is logged within the interval, so a slow client cannot flood the log.
    expect(broker.server.broker.stats.messagesDropped - droppedBefore).toBe(2);
    expect(broker.logs.filter((l) => l.msg === 'session queue full: message dropped' && l.clientId === id)).toEqual([
      expect.objectContaining({ dropped: 1 }),
    ]);
    const second = await connectClient(broker.url, options);
    const messages = await second.received.waitFor(QUEUE_LIMIT);
    expect(messages.map((m) => m.payload)).toEqual(['n1', 'n2', 'n3']);
    await endAll(second.client);
  });

  it('3.1.1 takeover: the old connection is closed and the new one has the session', async () => {
    const id = 'takeover-v4';
    const old = await connectClient(broker.url, { clientId: id, protocolVersion: 4, clean: false });
    await old.client.subscribeAsync('sess/takeover4', { qos: 1 });
    const closed = waitClientClosed(old.client);
    const fresh = await connectClient(broker.url, { clientId: id, protocolVersion: 4, clean: false });
    await closed;
    expect(fresh.connack.sessionPresent).toBe(true);
    await broker.waitForLog((l) => l.msg === 'session taken over by a new connection' && l.clientId === id);
    await publisher.client.publishAsync('sess/takeover4', 'to the new one', { qos: 1 });
    expect((await fresh.received.waitFor(1))[0]!.payload).toBe('to the new one');
    expect(old.received.messages).toEqual([]);
    await endAll(fresh.client, old.client);
  });

  it('v5 takeover: the old connection receives DISCONNECT 0x8E, then is closed', async () => {
    const id = 'takeover-v5';
    const { client: old } = await rawConnect(broker.port, id, 5);
    const fresh = await connectClient(broker.url, { clientId: id, protocolVersion: 5 });
    const disconnect = await old.next('disconnect');
    expect(disconnect.reasonCode).toBe(0x8e);
    await old.waitClosed();
    expect(fresh.client.connected).toBe(true);
    const event = await broker.waitForAudit('client.disconnected', (e) => e.mqtt?.client_id === id);
    expect(event.event.reason).toBe('another connection used this client identifier');
    await endAll(fresh.client);
  });

  it('taking over a non-persistent session with clean start 0 reports no session present and stays unique', async () => {
    const id = 'takeover-ephemeral';
    const { client: first } = await rawConnect(broker.port, id, 5, { clean: true });
    const second = await rawConnect(broker.port, id, 5, { clean: false, properties: { sessionExpiryInterval: 60 } });
    await first.waitClosed();
    // The first session ended with its connection (expiry 0): there is nothing to resume.
    expect.soft(second.connack.sessionPresent).toBe(false);
    // A third connection with the same id must take over the second one.
    const third = await rawConnect(broker.port, id, 5, { clean: false, properties: { sessionExpiryInterval: 60 } });
    expect((await second.client.next('disconnect', 2000)).reasonCode).toBe(0x8e);
    await second.client.waitClosed();
    expect(third.connack.sessionPresent).toBe(true);
    third.client.end();
  });

  it('an inbound QoS 2 message re-sent with DUP after a reconnect is not routed a second time', async () => {
    const id = 'sess-inbound-qos2';
    const watcher = await connectClient(broker.url, { clientId: `${id}-watcher`, protocolVersion: 5 });
    await watcher.client.subscribeAsync('sess/in2/#', { qos: 2 });
    const first = await rawConnect(broker.port, id, 4, { clean: false });
    first.client.send(rawPublish('sess/in2/m', 'exactly once', 2, 5));
    expect((await first.client.next('pubrec')).messageId).toBe(5);
    first.client.end();
    await disconnected(broker, id);
    // [MQTT-4.4.0-1] the client resends the unacknowledged PUBLISH with DUP; the broker must recognise the id.
    const second = await rawConnect(broker.port, id, 4, { clean: false });
    expect(second.connack.sessionPresent).toBe(true);
    second.client.send(rawPublish('sess/in2/m', 'exactly once', 2, 5, { dup: true }));
    expect((await second.client.next('pubrec')).messageId).toBe(5);
    second.client.send({ cmd: 'pubrel', messageId: 5 });
    expect((await second.client.next('pubcomp')).messageId).toBe(5);
    second.client.send(rawPublish('sess/in2/marker', 'marker', 1, 6));
    await second.client.next('puback');
    await watcher.received.waitForTopic('sess/in2/marker');
    expect(watcher.received.on('sess/in2/m').map((m) => m.payload)).toEqual(['exactly once']);
    second.client.end();
    await endAll(watcher.client);
  });

  it('v5: DISCONNECT may lower the session expiry to 0, which ends the session', async () => {
    const id = 'sess-disconnect-zero';
    const { client } = await rawConnect(broker.port, id, 5, {
      clean: false,
      properties: { sessionExpiryInterval: 60 },
    });
    await rawSubscribe(client, 5, 1, [{ topic: 'sess/dz', qos: 1 }]);
    client.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } }, 5);
    await client.waitClosed();
    await disconnected(broker, id);
    const again = await rawConnect(broker.port, id, 5, { clean: false, properties: { sessionExpiryInterval: 60 } });
    expect(again.connack.sessionPresent).toBe(false);
    again.client.end();
  });

  it('v5: DISCONNECT raising the session expiry from 0 is a protocol error (DISCONNECT 0x82)', async () => {
    const id = 'sess-disconnect-raise';
    const { client } = await rawConnect(broker.port, id, 5);
    client.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 60 } }, 5);
    expect((await client.next('disconnect')).reasonCode).toBe(0x82);
    await client.waitClosed();
    const again = await rawConnect(broker.port, id, 5, { clean: false, properties: { sessionExpiryInterval: 60 } });
    expect(again.connack.sessionPresent).toBe(false);
    again.client.end();
  });

  it('v5: reconnecting with a lower Receive Maximum, the unacknowledged messages are re-sent as the window frees [MQTT-3.3.4-9] [MQTT-4.4.0-1]', async () => {
    const id = 'sess-lower-receive-maximum';
    const topic = 'sess/lower-rm';
    const session = { clean: false, properties: { sessionExpiryInterval: 60, receiveMaximum: 10 } };
    const first = await rawConnect(broker.port, id, 5, session);
    await rawSubscribe(first.client, 5, 1, [{ topic, qos: 1 }]);
    for (let i = 0; i < 5; i++) await publisher.client.publishAsync(topic, `m${i}`, { qos: 1 });
    const sent: [string, number | undefined][] = [];
    for (let i = 0; i < 5; i++) {
      const publish = await first.client.next('publish');
      sent.push([publish.payload.toString(), publish.messageId]);
    }
    first.client.end();
    await disconnected(broker, id);
    const second = await rawConnect(broker.port, id, 5, {
      ...session,
      properties: { ...session.properties, receiveMaximum: 2 },
    });
    expect(second.connack.sessionPresent).toBe(true);
    /** Whatever the broker has sent by the time it answers a PINGREQ (it handles packets in order). */
    const publishesNow = async (): Promise<[string, number | undefined, boolean][]> => {
      second.client.send({ cmd: 'pingreq' }, 5);
      await second.client.next('pingresp');
      const publishes = second.client.packets.filter((p) => p.cmd === 'publish');
      second.client.packets.splice(0, second.client.packets.length);
      return publishes.map((p) => [p.payload.toString(), p.messageId, p.dup]);
    };
    const resent = await publishesNow();
    expect(resent).toEqual(sent.slice(0, 2).map(([payload, messageId]) => [payload, messageId, true]));
    for (let i = 0; i < 3; i++) {
      second.client.send({ cmd: 'puback', messageId: sent[i]![1] }, 5);
      expect(await publishesNow()).toEqual([[sent[i + 2]![0], sent[i + 2]![1], true]]);
    }
    for (let i = 3; i < 5; i++) second.client.send({ cmd: 'puback', messageId: sent[i]![1] }, 5);
    await publisher.client.publishAsync(topic, 'after', { qos: 1 });
    const after = await second.client.next('publish');
    expect([after.payload.toString(), after.dup]).toEqual(['after', false]);
    second.client.send({ cmd: 'puback', messageId: after.messageId }, 5);
    second.client.end();
  });

  it('v5: a QoS 2 message awaiting PUBCOMP fills the new window: its PUBREL is re-sent, the next PUBLISH waits for the PUBCOMP', async () => {
    const id = 'sess-lower-receive-maximum-qos2';
    const topic = 'sess/lower-rm2';
    const first = await rawConnect(broker.port, id, 5, {
      clean: false,
      properties: { sessionExpiryInterval: 60, receiveMaximum: 5 },
    });
    await rawSubscribe(first.client, 5, 1, [{ topic, qos: 2 }]);
    await publisher.client.publishAsync(topic, 'x', { qos: 2 });
    await publisher.client.publishAsync(topic, 'y', { qos: 2 });
    const x = await first.client.next('publish');
    const y = await first.client.next('publish');
    first.client.send({ cmd: 'pubrec', messageId: x.messageId }, 5);
    await first.client.next('pubrel');
    first.client.end();
    await disconnected(broker, id);
    const second = await rawConnect(broker.port, id, 5, {
      clean: false,
      properties: { sessionExpiryInterval: 60, receiveMaximum: 1 },
    });
    second.client.send({ cmd: 'pingreq' }, 5);
    await second.client.next('pingresp');
    expect(second.client.packets.map((p) => [p.cmd, 'messageId' in p ? p.messageId : undefined])).toEqual([
      ['pubrel', x.messageId],
    ]);
    second.client.packets.length = 0;
    second.client.send({ cmd: 'pubcomp', messageId: x.messageId }, 5);
    const again = await second.client.next('publish');
    expect([again.messageId, again.dup, again.payload.toString()]).toEqual([y.messageId, true, 'y']);
    second.client.end();
  });

  it('a raw persistent subscriber that reconnects gets queued messages with fresh packet ids and DUP=0', async () => {
    const id = 'sess-raw-queue';
    const first = await rawConnect(broker.port, id, 4, { clean: false });
    await rawSubscribe(first.client, 4, 1, [{ topic: 'sess/rawq', qos: 1 }]);
    first.client.end();
    await disconnected(broker, id);
    await publisher.client.publishAsync('sess/rawq', 'queued', { qos: 1 });
    const second = await rawConnect(broker.port, id, 4, { clean: false });
    expect(second.connack.sessionPresent).toBe(true);
    const publish = await second.client.next('publish');
    expect(publish.payload.toString()).toBe('queued');
    expect(publish.dup).toBe(false);
    second.client.end();
  });
});

describe('sessions: queue overflow policy drop-oldest', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker({
      config: { limits: { max_queued_messages: QUEUE_LIMIT, queue_overflow: 'drop-oldest' } },
    });
  });
  afterAll(async () => broker.stop());

  it('drop-oldest: a full offline queue keeps the newest messages, counts each drop and logs the first', async () => {
    const id = 'sess-overflow-oldest';
    const options = { clientId: id, protocolVersion: 4 as const, clean: false };
    const first = await connectClient(broker.url, options);
    await first.client.subscribeAsync('sess/overflow-oldest', { qos: 2 });
    await first.client.endAsync();
    await disconnected(broker, id);
    const publisher = await connectClient(broker.url, { clientId: 'oldest-pub', protocolVersion: 4 });
    const droppedBefore = broker.server.broker.stats.messagesDropped;
    for (let i = 1; i <= QUEUE_LIMIT + 2; i++)
      await publisher.client.publishAsync('sess/overflow-oldest', `o${i}`, { qos: 2 });
    const drops = broker.logs.filter((l) => l.msg === 'session queue full: message dropped' && l.clientId === id);
    expect(drops).toHaveLength(1);
    expect(drops[0]).toMatchObject({ policy: 'drop-oldest', dropped: 1 });
    expect(broker.server.broker.stats.messagesDropped - droppedBefore).toBe(2);
    const second = await connectClient(broker.url, options);
    const messages = await second.received.waitFor(QUEUE_LIMIT);
    expect(messages.map((m) => m.payload)).toEqual(['o3', 'o4', 'o5']);
    await endAll(second.client, publisher.client);
  });
});

describe('sessions: an expiry interval longer than the longest Node timer', () => {
  const DAY_MS = 24 * 3600 * 1000;
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker();
  });
  afterAll(async () => {
    vi.useRealTimers();
    await broker.stop();
  });

  it('v5: a 30-day session expiry lasts 30 days, not the 24.8 days (2^31 ms) a single timer can wait', async () => {
    const id = 'sess-thirty-days';
    const { client } = await rawConnect(broker.port, id, 5, {
      clean: false,
      properties: { sessionExpiryInterval: 30 * 24 * 3600 },
    });
    // The broker's clock from the disconnect on, so the days pass at once; its sockets do not need timers.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      client.end();
      const closed = (): boolean => broker.logs.some((l) => l.msg === 'client disconnected' && l.clientId === id);
      while (!closed()) await new Promise((resolve) => setImmediate(resolve));
      const sessions = broker.server.broker.sessions;
      vi.advanceTimersByTime(29 * DAY_MS);
      expect(sessions.has(id)).toBe(true);
      vi.advanceTimersByTime(DAY_MS + 1000);
      expect(sessions.has(id)).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });
});
