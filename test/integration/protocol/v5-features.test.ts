import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Authorizer } from '../../../authz/types.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectPacket, RawClient } from '../../helpers/raw-client.js';
import {
  connectClient,
  endAll,
  rawConnect,
  rawPublish,
  rawSubscribe,
  type Connected,
} from '../../helpers/mqtt-clients.js';

const TOPIC_ALIAS_MAXIMUM = 4;
const RECEIVE_MAXIMUM = 3;
const MAX_PACKET_SIZE = 2048;

/** Denies publishing under `denied/`, allows everything else. */
const denyDenied: Authorizer = {
  check: (request) =>
    request.action === 'publish' && request.topic.startsWith('denied/')
      ? { allowed: false, reason: 'denied/# is closed', rule: { source: 'test', name: 'deny-denied' } }
      : { allowed: true, reason: 'test allows' },
  onChange: () => undefined,
  invalidate: () => undefined,
};

describe('MQTT 5 features', () => {
  let broker: TestBroker;
  let publisher: Connected;
  beforeAll(async () => {
    broker = await startBroker({
      config: {
        limits: {
          topic_alias_maximum: TOPIC_ALIAS_MAXIMUM,
          receive_maximum: RECEIVE_MAXIMUM,
          max_packet_size: MAX_PACKET_SIZE,
        },
      },
      authorizer: denyDenied,
    });
    publisher = await connectClient(broker.url, { clientId: 'v5-publisher', protocolVersion: 5 });
  });
  afterAll(async () => {
    await endAll(publisher.client);
    await broker.stop();
  });

  /** An MQTT 5 client that announced a Maximum Packet Size, and the size of every chunk it receives from here on. */
  async function withMaximumPacketSize(clientId: string, maximumPacketSize: number) {
    const { client } = await rawConnect(broker.port, clientId, 5, { properties: { maximumPacketSize } });
    const sizes: number[] = [];
    client.socket.on('data', (d: Buffer) => sizes.push(d.length));
    return { client, sizes };
  }

  /** A persistent MQTT 5 session subscribed to `topic` at QoS 1 whose client has left: its options, to come back. */
  async function subscribedAndGone(clientId: string, topic: string) {
    const options = { clientId, protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 60 } };
    const first = await connectClient(broker.url, options);
    await first.client.subscribeAsync(topic, { qos: 1 });
    await first.client.endAsync();
    await broker.waitForLog((l) => l.msg === 'client disconnected' && l.clientId === clientId);
    return options;
  }

  function violation(clientId: string): Promise<Record<string, unknown>> {
    return broker.waitForLog((l) => l.msg === 'closing connection: protocol violation' && l.clientId === clientId);
  }

  it('CONNACK announces the configured topic alias maximum, receive maximum and maximum packet size', async () => {
    const { client, connack } = await rawConnect(broker.port, 'v5-connack', 5);
    expect(connack.reasonCode).toBe(0);
    expect(connack.properties?.topicAliasMaximum).toBe(TOPIC_ALIAS_MAXIMUM);
    expect(connack.properties?.receiveMaximum).toBe(RECEIVE_MAXIMUM);
    expect(connack.properties?.maximumPacketSize).toBe(MAX_PACKET_SIZE);
    client.end();
  });

  it('inbound topic alias: set with a topic, then used with an empty topic', async () => {
    const sub = await connectClient(broker.url, { clientId: 'alias-in-sub', protocolVersion: 4 });
    await sub.client.subscribeAsync('alias/in/#', { qos: 1 });
    const { client } = await rawConnect(broker.port, 'alias-in', 5);
    client.send(rawPublish('alias/in/a', 'first', 1, 1, { properties: { topicAlias: 2 } }), 5);
    await client.next('puback');
    client.send(rawPublish('', 'second', 1, 2, { properties: { topicAlias: 2 } }), 5);
    await client.next('puback');
    const messages = await sub.received.waitFor(2);
    expect(messages.map((m) => [m.topic, m.payload])).toEqual([
      ['alias/in/a', 'first'],
      ['alias/in/a', 'second'],
    ]);
    client.end();
    await endAll(sub.client);
  });

  it.each([
    { alias: 0, name: 'zero' },
    { alias: TOPIC_ALIAS_MAXIMUM + 1, name: 'above-max' },
  ])('inbound topic alias $alias is refused with DISCONNECT 0x94; others carry on', async ({ alias, name }) => {
    const id = `alias-bad-${name}`;
    const bystander = await connectClient(broker.url, { clientId: `${id}-bystander`, protocolVersion: 5 });
    await bystander.client.subscribeAsync(`alias/bad/${name}`, { qos: 1 });
    const { client } = await rawConnect(broker.port, id, 5);
    client.send(rawPublish(`alias/bad/${name}`, 'x', 1, 1, { properties: { topicAlias: alias } }), 5);
    const disconnect = await client.next('disconnect');
    expect(disconnect.reasonCode).toBe(0x94);
    await client.waitClosed();
    expect((await violation(id)).reason).toBe('topicAliasInvalid');
    await publisher.client.publishAsync(`alias/bad/${name}`, 'after', { qos: 1 });
    expect((await bystander.received.waitFor(1)).map((m) => m.payload)).toEqual(['after']);
    await endAll(bystander.client);
  });

  it('an empty topic with an alias that was never set is a protocol error (0x82)', async () => {
    const { client } = await rawConnect(broker.port, 'alias-unset', 5);
    client.send(rawPublish('', 'x', 0, undefined, { properties: { topicAlias: 3 } }), 5);
    expect((await client.next('disconnect')).reasonCode).toBe(0x82);
    await client.waitClosed();
  });

  it('outbound topic alias: a client allowing aliases gets the topic once, then an empty topic with the alias', async () => {
    const { client } = await rawConnect(broker.port, 'alias-out-raw', 5, { properties: { topicAliasMaximum: 2 } });
    await rawSubscribe(client, 5, 1, [{ topic: 'alias/out/raw', qos: 0 }]);
    await publisher.client.publishAsync('alias/out/raw', 'one', { qos: 1 });
    await publisher.client.publishAsync('alias/out/raw', 'two', { qos: 1 });
    const first = await client.next('publish');
    const second = await client.next('publish');
    expect(first.topic).toBe('alias/out/raw');
    const alias = first.properties?.topicAlias;
    expect(alias).toBeGreaterThanOrEqual(1);
    expect(alias).toBeLessThanOrEqual(2);
    expect(second.topic).toBe('');
    expect(second.properties?.topicAlias).toBe(alias);
    expect(second.payload.toString()).toBe('two');
    client.end();
  });

  it('outbound topic aliases never exceed the client’s Topic Alias Maximum', async () => {
    const { client } = await rawConnect(broker.port, 'alias-out-max', 5, { properties: { topicAliasMaximum: 1 } });
    await rawSubscribe(client, 5, 1, [{ topic: 'alias/max/+', qos: 0 }]);
    for (const t of ['a', 'b', 'c', 'b']) await publisher.client.publishAsync(`alias/max/${t}`, t, { qos: 1 });
    const packets = [];
    for (let i = 0; i < 4; i++) packets.push(await client.next('publish'));
    for (const p of packets) if (p.properties?.topicAlias !== undefined) expect(p.properties.topicAlias).toBe(1);
    // Every packet can be resolved by the client: the topic is present unless the alias maps to it.
    expect(packets.map((p) => p.topic || 'alias/max/a')).toEqual([
      'alias/max/a',
      'alias/max/b',
      'alias/max/c',
      'alias/max/b',
    ]);
    client.end();
  });

  it('mqtt.js resolves outbound aliases the broker assigns', async () => {
    const sub = await connectClient(broker.url, {
      clientId: 'alias-out-mqttjs',
      protocolVersion: 5,
      properties: { topicAliasMaximum: 3 },
    });
    await sub.client.subscribeAsync('alias/out/js', { qos: 1 });
    await publisher.client.publishAsync('alias/out/js', 'one', { qos: 1 });
    await publisher.client.publishAsync('alias/out/js', 'two', { qos: 1 });
    const messages = await sub.received.waitFor(2);
    expect(messages.map((m) => [m.topic, m.payload])).toEqual([
      ['alias/out/js', 'one'],
      ['alias/out/js', 'two'],
    ]);
    expect(messages[1]!.packet.properties?.topicAlias).toBe(messages[0]!.packet.properties?.topicAlias);
    await endAll(sub.client);
  });

  it('a subscription identifier is sent with each message the subscription matches, and not otherwise', async () => {
    const sub = await connectClient(broker.url, { clientId: 'subid', protocolVersion: 5 });
    await sub.client.subscribeAsync('subid/with', { qos: 1, properties: { subscriptionIdentifier: 4242 } });
    await sub.client.subscribeAsync('subid/without', { qos: 1 });
    await publisher.client.publishAsync('subid/with', 'a', { qos: 1 });
    await publisher.client.publishAsync('subid/without', 'b', { qos: 1 });
    const [withId, withoutId] = await sub.received.waitFor(2);
    expect(withId!.packet.properties?.subscriptionIdentifier).toBe(4242);
    expect(withoutId!.packet.properties?.subscriptionIdentifier).toBeUndefined();
    await endAll(sub.client);
  });

  it('a retained message sent on subscribe carries that subscription’s identifier', async () => {
    await publisher.client.publishAsync('subid/retained', 'kept', { qos: 1, retain: true });
    const sub = await connectClient(broker.url, { clientId: 'subid-retained', protocolVersion: 5 });
    await sub.client.subscribeAsync('subid/retained', { qos: 1, properties: { subscriptionIdentifier: 77 } });
    const [message] = await sub.received.waitFor(1);
    expect(message!.packet.retain).toBe(true);
    expect(message!.packet.properties?.subscriptionIdentifier).toBe(77);
    await publisher.client.publishAsync('subid/retained', '', { qos: 1, retain: true });
    await endAll(sub.client);
  });

  it('a CONNECT with Receive Maximum 0 is refused with CONNACK 0x82', async () => {
    const { client, connack } = await rawConnect(broker.port, 'recvmax-zero', 5, { properties: { receiveMaximum: 0 } });
    expect(connack.reasonCode).toBe(0x82);
    await client.waitClosed();
  });

  it('a Subscription Identifier of 0 in SUBSCRIBE is a protocol error (DISCONNECT 0x82)', async () => {
    const { client } = await rawConnect(broker.port, 'subid-zero', 5);
    client.send(
      {
        cmd: 'subscribe',
        messageId: 1,
        subscriptions: [{ topic: 'subid/zero', qos: 0 }],
        properties: { subscriptionIdentifier: 0 },
      },
      5,
    );
    expect((await client.next('disconnect')).reasonCode).toBe(0x82);
    await client.waitClosed();
  });

  it('a PUBLISH from a client carrying a Subscription Identifier is a protocol error [MQTT-3.3.4-6]', async () => {
    const sub = await connectClient(broker.url, { clientId: 'subid-in-publish-sub', protocolVersion: 5 });
    await sub.client.subscribeAsync('subid/in-publish', { qos: 1 });
    const { client } = await rawConnect(broker.port, 'subid-in-publish', 5);
    client.send(rawPublish('subid/in-publish', 'x', 1, 1, { properties: { subscriptionIdentifier: 5 } }), 5);
    expect((await client.next('disconnect', 2000)).reasonCode).toBe(0x82);
    await client.waitClosed();
    await publisher.client.publishAsync('subid/in-publish', 'after', { qos: 1 });
    expect((await sub.received.waitFor(1)).map((m) => m.payload)).toEqual(['after']);
    await endAll(sub.client);
  });

  it('message expiry is forwarded as the remaining interval, never more than the publisher set', async () => {
    const sub = await connectClient(broker.url, { clientId: 'expiry-live', protocolVersion: 5 });
    await sub.client.subscribeAsync('expiry/live', { qos: 1 });
    await publisher.client.publishAsync('expiry/live', 'x', { qos: 1, properties: { messageExpiryInterval: 45 } });
    const [message] = await sub.received.waitFor(1);
    const remaining = message!.packet.properties?.messageExpiryInterval;
    expect(remaining).toBeGreaterThanOrEqual(1);
    expect(remaining).toBeLessThanOrEqual(45);
    await endAll(sub.client);
  });

  it('a Message Expiry Interval of 0 is forwarded as 0 to a subscriber reached at once, and the message is not queued [MQTT-3.3.2-6]', async () => {
    const live = await connectClient(broker.url, { clientId: 'expiry-zero-live', protocolVersion: 5 });
    await live.client.subscribeAsync('expiry/zero', { qos: 1 });
    const away = await subscribedAndGone('expiry-zero-away', 'expiry/zero');
    await publisher.client.publishAsync('expiry/zero', 'now', { qos: 1, properties: { messageExpiryInterval: 0 } });
    await publisher.client.publishAsync('expiry/zero', 'kept', { qos: 1 });
    const [now, kept] = await live.received.waitFor(2);
    expect(now!.payload).toBe('now');
    // The received value minus the time it waited, which was none: not rounded up to a second it never had.
    expect(now!.packet.properties?.messageExpiryInterval).toBe(0);
    expect(kept!.packet.properties?.messageExpiryInterval).toBeUndefined();
    const back = await connectClient(broker.url, away);
    await back.received.waitFor(1);
    expect(back.received.messages.map((m) => m.payload)).toEqual(['kept']);
    await endAll(live.client, back.client);
  });

  it('a queued message whose expiry passes while its subscriber is offline is not delivered', async () => {
    const options = await subscribedAndGone('expiry-queued', 'expiry/queued');
    await publisher.client.publishAsync('expiry/queued', 'stale', { qos: 1, properties: { messageExpiryInterval: 1 } });
    await publisher.client.publishAsync('expiry/queued', 'fresh', { qos: 1 });
    await new Promise((r) => setTimeout(r, 1200));
    const second = await connectClient(broker.url, options);
    const [first1] = await second.received.waitFor(1);
    expect(first1!.payload).toBe('fresh');
    expect(second.received.messages.map((m) => m.payload)).toEqual(['fresh']);
    await endAll(second.client);
  });

  it('more unacknowledged QoS 2 PUBLISH than the Receive Maximum gets DISCONNECT 0x93; others carry on', async () => {
    const id = 'recvmax-exceeded';
    const bystander = await connectClient(broker.url, { clientId: `${id}-bystander`, protocolVersion: 5 });
    await bystander.client.subscribeAsync('recvmax/#', { qos: 1 });
    const { client, connack } = await rawConnect(broker.port, id, 5);
    const receiveMaximum = connack.properties!.receiveMaximum!;
    for (let i = 1; i <= receiveMaximum; i++) {
      client.send(rawPublish(`recvmax/${i}`, 'x', 2, i), 5);
      expect((await client.next('pubrec')).messageId).toBe(i);
    }
    client.send(rawPublish('recvmax/over', 'x', 2, receiveMaximum + 1), 5);
    const disconnect = await client.next('disconnect');
    expect(disconnect.reasonCode).toBe(0x93);
    await client.waitClosed();
    expect((await violation(id)).reason).toBe('receiveMaximumExceeded');
    const delivered = await bystander.received.waitFor(receiveMaximum);
    await publisher.client.publishAsync('recvmax/after', 'after', { qos: 1 });
    await bystander.received.waitForTopic('recvmax/after');
    expect(delivered.map((m) => m.topic)).not.toContain('recvmax/over');
    await endAll(bystander.client);
  });

  it('completing QoS 2 exchanges frees the Receive Maximum window', async () => {
    const { client } = await rawConnect(broker.port, 'recvmax-window', 5);
    for (let i = 1; i <= RECEIVE_MAXIMUM * 3; i++) {
      client.send(rawPublish('recvmax-window/x', 'x', 2, i), 5);
      await client.next('pubrec');
      client.send({ cmd: 'pubrel', messageId: i }, 5);
      await client.next('pubcomp');
    }
    expect(client.closed).toBe(false);
    client.end();
  });

  it('the broker never has more unacknowledged messages in flight than the client’s Receive Maximum', async () => {
    const { client } = await rawConnect(broker.port, 'recvmax-out', 5, { properties: { receiveMaximum: 2 } });
    await rawSubscribe(client, 5, 1, [{ topic: 'recvmax-out/x', qos: 1 }]);
    for (const p of ['a', 'b', 'c']) await publisher.client.publishAsync('recvmax-out/x', p, { qos: 1 });
    const a = await client.next('publish');
    const b = await client.next('publish');
    // A ping round trip: anything the broker wrote before answering it has arrived.
    client.send({ cmd: 'pingreq' }, 5);
    await client.next('pingresp');
    expect(client.packets.filter((p) => p.cmd === 'publish')).toEqual([]);
    client.send({ cmd: 'puback', messageId: a.messageId }, 5);
    const c = await client.next('publish');
    expect([a, b, c].map((p) => p.payload.toString())).toEqual(['a', 'b', 'c']);
    client.end();
  });

  it('a packet larger than limits.max_packet_size gets DISCONNECT 0x95 and a log line', async () => {
    const id = 'too-big-in';
    const { client } = await rawConnect(broker.port, id, 5);
    client.send(rawPublish('big/in', Buffer.alloc(MAX_PACKET_SIZE + 100, 0x61), 0), 5);
    expect((await client.next('disconnect')).reasonCode).toBe(0x95);
    await client.waitClosed();
    expect((await violation(id)).reason).toBe('packetTooLarge');
  });

  it('a client with a small Maximum Packet Size never receives a larger packet; smaller messages still arrive', async () => {
    const { client, sizes } = await withMaximumPacketSize('too-big-out', 200);
    await rawSubscribe(client, 5, 1, [{ topic: 'big/out', qos: 1 }]);
    const stats = broker.server.broker.stats;
    const discardedBefore = stats.messagesDiscarded;
    await publisher.client.publishAsync('big/out', Buffer.alloc(500, 0x62), { qos: 1 });
    await publisher.client.publishAsync('big/out', 'small', { qos: 1 });
    const next = await client.next('publish');
    expect(next.payload.toString()).toBe('small');
    client.send({ cmd: 'puback', messageId: next.messageId }, 5);
    // Each discarded message counts once in $SYS/broker/messages/discarded, at QoS 1 as at QoS 0 (was twice at QoS 1).
    expect(stats.messagesDiscarded).toBe(discardedBefore + 1);
    await publisher.client.publishAsync('big/out', Buffer.alloc(500, 0x62), { qos: 0 });
    await publisher.client.publishAsync('big/out', 'small again', { qos: 0 });
    expect((await client.next('publish')).payload.toString()).toBe('small again');
    expect(stats.messagesDiscarded).toBe(discardedBefore + 2);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(200);
    client.end();
  });

  it('a reason string that would exceed the client’s Maximum Packet Size is left out, the reason code kept [MQTT-3.4.2-2] [MQTT-3.14.2-3]', async () => {
    // Enough for the CONNACK and a bare PUBACK or DISCONNECT, not for either with its reason string.
    const small = 24;
    const id = 'reason-too-big';
    const { client, sizes } = await withMaximumPacketSize(id, small);
    client.send(rawPublish('denied/reason-too-big', 'no', 1, 1), 5);
    const puback = await client.next('puback');
    expect(puback.reasonCode).toBe(0x87);
    expect(puback.properties?.reasonString).toBeUndefined();
    const takeover = await rawConnect(broker.port, id, 5);
    const disconnect = await client.next('disconnect');
    expect(disconnect.reasonCode).toBe(0x8e);
    expect(disconnect.properties?.reasonString).toBeUndefined();
    await client.waitClosed();
    expect(Math.max(...sizes)).toBeLessThanOrEqual(small);
    // The new connection, with no Maximum Packet Size, gets the reason string.
    takeover.client.send(rawPublish('denied/reason-too-big', 'no', 1, 1), 5);
    expect((await takeover.client.next('puback')).properties?.reasonString).toBe('denied/# is closed');
    takeover.client.end();
  });

  it('a packet still larger than the client’s Maximum Packet Size without its reason string is not sent, and logged [MQTT-3.1.2-24]', async () => {
    const small = 24;
    const id = 'suback-too-big';
    const { client, sizes } = await withMaximumPacketSize(id, small);
    // 30 filters: the SUBACK carries 30 reason codes, 35 bytes with nothing to leave out.
    const subscriptions = Array.from({ length: 30 }, (_, i) => ({ topic: `many/${i}`, qos: 0 as const }));
    const line = broker.waitForLog((l) => l.msg === "packet not sent: larger than the client's Maximum Packet Size");
    client.send({ cmd: 'subscribe', messageId: 7, subscriptions }, 5);
    expect(await line).toMatchObject({ clientId: id, packet: 'SUBACK', size: 35, maximum: small });
    // The connection goes on, and the subscriptions were made: only the acknowledgement could not be sent.
    client.send({ cmd: 'pingreq' }, 5);
    await client.next('pingresp');
    await publisher.client.publishAsync('many/29', 'fits', { qos: 0 });
    expect((await client.next('publish')).payload.toString()).toBe('fits');
    // A second one is dropped too, without a second line (PINGRESP comes after the SUBACK would have).
    client.send({ cmd: 'subscribe', messageId: 8, subscriptions }, 5);
    client.send({ cmd: 'pingreq' }, 5);
    await client.next('pingresp');
    expect(client.packets.filter((p) => p.cmd === 'suback')).toEqual([]);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(small);
    const dropped = broker.logs.filter(
      (l) => l.msg === "packet not sent: larger than the client's Maximum Packet Size",
    );
    expect(dropped.filter((l) => l.clientId === id)).toHaveLength(1);
    client.end();
  });

  it.each([
    ['a Receive Maximum of 0', { receiveMaximum: 0 }],
    ['Authentication Data without a method', { authenticationData: Buffer.from('x') }],
  ])(
    'a CONNECT refused for %s gets its 0x82 CONNACK within the Maximum Packet Size it announced [MQTT-3.2.2-19]',
    async (_why, refused) => {
      // A bare refusal (5 bytes) fits, not one with its reason string.
      const small = 16;
      const client = await RawClient.connect(broker.port, 5);
      const sizes: number[] = [];
      client.socket.on('data', (d: Buffer) => sizes.push(d.length));
      client.send(
        connectPacket('refused-reason-too-big', {
          protocolVersion: 5,
          properties: { maximumPacketSize: small, ...refused },
        }),
        5,
      );
      const connack = await client.next('connack');
      expect(connack.reasonCode).toBe(0x82);
      expect(connack.properties?.reasonString).toBeUndefined();
      await client.waitClosed();
      expect(Math.max(...sizes)).toBeLessThanOrEqual(small);
    },
  );

  it('response topic, correlation data, user properties, payload format indicator and content type are forwarded', async () => {
    const sub = await connectClient(broker.url, { clientId: 'props-sub', protocolVersion: 5 });
    await sub.client.subscribeAsync('props/req', { qos: 1 });
    await publisher.client.publishAsync('props/req', '{"q":1}', {
      qos: 1,
      properties: {
        responseTopic: 'props/resp',
        correlationData: Buffer.from('corr-1'),
        userProperties: { a: '1', b: ['x', 'y'] },
        payloadFormatIndicator: true,
        contentType: 'application/json',
      },
    });
    const [message] = await sub.received.waitFor(1);
    const properties = message!.packet.properties!;
    expect(properties.responseTopic).toBe('props/resp');
    expect(Buffer.from(properties.correlationData!).toString()).toBe('corr-1');
    expect(properties.userProperties).toEqual({ a: '1', b: ['x', 'y'] });
    expect(properties.payloadFormatIndicator).toBe(true);
    expect(properties.contentType).toBe('application/json');
    await endAll(sub.client);
  });

  it('a PUBLISH no subscription matches is acknowledged 0x00, not 0x10: a publisher does not learn who subscribes', async () => {
    const { client } = await rawConnect(broker.port, 'no-subscribers', 5);
    client.send(rawPublish('nobody/listens', 'x', 1, 1), 5);
    client.send(rawPublish('nobody/listens', 'x', 2, 2), 5);
    expect((await client.next('puback')).reasonCode).toBe(0x00);
    expect((await client.next('pubrec')).reasonCode).toBe(0x00);
    // The same answer once someone does subscribe: the reason code carries nothing about subscribers.
    const sub = await connectClient(broker.url, { clientId: 'no-subscribers-sub', protocolVersion: 5 });
    await sub.client.subscribeAsync('nobody/listens', { qos: 1 });
    client.send(rawPublish('nobody/listens', 'y', 1, 3), 5);
    expect((await client.next('puback')).reasonCode).toBe(0x00);
    expect((await sub.received.waitFor(1)).map((m) => m.payload)).toEqual(['y']);
    client.end();
    await endAll(sub.client);
  });

  it('a QoS 0 PUBLISH with DUP=1 and a payload declared UTF-8 that is not are both delivered, as Mosquitto does', async () => {
    const sub = await connectClient(broker.url, { clientId: 'lenient-sub', protocolVersion: 5 });
    await sub.client.subscribeAsync('lenient/#', { qos: 1 });
    const { client } = await rawConnect(broker.port, 'lenient-pub', 5);
    client.send({ ...rawPublish('lenient/dup', 'dup', 0), dup: true }, 5);
    const notUtf8 = Buffer.from([0xff, 0xfe]);
    client.send(rawPublish('lenient/format', notUtf8, 1, 1, { properties: { payloadFormatIndicator: true } }), 5);
    expect((await client.next('puback')).reasonCode).toBe(0x00);
    const [dup, format] = await sub.received.waitFor(2);
    expect([dup?.topic, dup?.packet.qos, dup?.packet.dup]).toEqual(['lenient/dup', 0, false]);
    expect([format?.topic, Buffer.from(format!.packet.payload).equals(notUtf8)]).toEqual(['lenient/format', true]);
    expect(format?.packet.properties?.payloadFormatIndicator).toBe(true);
    client.end();
    await endAll(sub.client);
  });

  it('a denied PUBLISH gets PUBACK 0x87 with a reason string, and none when problem information is not requested', async () => {
    const sub = await connectClient(broker.url, { clientId: 'denied-sub', protocolVersion: 5 });
    await sub.client.subscribeAsync('denied/#', { qos: 1 });
    const verbose = await rawConnect(broker.port, 'denied-verbose', 5);
    const quiet = await rawConnect(broker.port, 'denied-quiet', 5, {
      properties: { requestProblemInformation: false },
    });
    verbose.client.send(rawPublish('denied/x', 'no', 1, 1), 5);
    quiet.client.send(rawPublish('denied/y', 'no', 1, 1), 5);
    const loud = await verbose.client.next('puback');
    const silent = await quiet.client.next('puback');
    expect(loud.reasonCode).toBe(0x87);
    expect(loud.properties?.reasonString).toBeTruthy();
    expect(silent.reasonCode).toBe(0x87);
    expect(silent.properties?.reasonString).toBeUndefined();
    const event = await broker.waitForAudit('authz.publish_denied', (e) => e.mqtt?.client_id === 'denied-quiet');
    expect(event.mqtt?.topic).toBe('denied/y');
    // Nothing reached the subscriber, and both publishers are still connected.
    await publisher.client.publishAsync('denied-marker', 'm', { qos: 1 });
    await sub.client.subscribeAsync('denied-marker', { qos: 1 });
    await publisher.client.publishAsync('denied-marker', 'm', { qos: 1 });
    await sub.received.waitForTopic('denied-marker');
    expect(sub.received.messages.filter((m) => m.topic.startsWith('denied/'))).toEqual([]);
    expect(verbose.client.closed || quiet.client.closed).toBe(false);
    verbose.client.end();
    quiet.client.end();
    await endAll(sub.client);
  });
});
