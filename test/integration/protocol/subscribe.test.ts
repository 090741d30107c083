import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Authorizer } from '../../../authz/types.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import {
  connectClient,
  endAll,
  rawConnect,
  rawPublish,
  rawSubscribe,
  type Connected,
} from '../../helpers/mqtt-clients.js';

const MAX_SUBSCRIPTIONS = 5;

/** Lets clients publish to `$app/...` so live routing of `$` topics can be observed; `$SYS` stays the broker's. */
const allowAllButSys: Authorizer = {
  check: (request) =>
    request.action === 'publish' && request.topic.startsWith('$SYS')
      ? { allowed: false, reason: "$SYS is the broker's" }
      : { allowed: true, reason: 'test allows' },
  onChange: () => undefined,
  invalidate: () => undefined,
};

describe('SUBSCRIBE and UNSUBSCRIBE', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker({
      // $SYS published once at start (retained), so the retained path for $-topics is exercised too.
      config: { sys_interval_seconds: 3600, limits: { max_subscriptions: MAX_SUBSCRIPTIONS } },
      authorizer: allowAllButSys,
    });
  });
  afterAll(async () => broker.stop());

  /**
   * Publishes `topics` then a marker from the same client; once the subscriber has the marker, anything that
   * was going to be delivered before it has been.
   */
  async function publishThenMarker(pub: Connected, sub: Connected, topics: string[], marker: string): Promise<void> {
    for (const topic of topics) await pub.client.publishAsync(topic, topic, { qos: 1 });
    await pub.client.publishAsync(marker, 'marker', { qos: 1 });
    await sub.received.waitForTopic(marker);
  }

  it('+ matches exactly one level', async () => {
    const sub = await connectClient(broker.url, { clientId: 'plus-sub', protocolVersion: 4 });
    const pub = await connectClient(broker.url, { clientId: 'plus-pub', protocolVersion: 4 });
    await sub.client.subscribeAsync(['plus/+/x', 'plus/marker'], { qos: 1 });
    await publishThenMarker(pub, sub, ['plus/a/x', 'plus/a/b/x', 'plus/x', 'plus//x'], 'plus/marker');
    expect(sub.received.messages.map((m) => m.topic)).toEqual(['plus/a/x', 'plus//x', 'plus/marker']);
    await endAll(sub.client, pub.client);
  });

  it('# matches the parent level and every level below', async () => {
    const sub = await connectClient(broker.url, { clientId: 'hash-sub', protocolVersion: 5 });
    const pub = await connectClient(broker.url, { clientId: 'hash-pub', protocolVersion: 5 });
    await sub.client.subscribeAsync(['hash/#', 'hashmarker'], { qos: 1 });
    await publishThenMarker(pub, sub, ['hash', 'hash/a', 'hash/a/b', 'hashx/a', 'other/hash'], 'hashmarker');
    expect(sub.received.messages.map((m) => m.topic)).toEqual(['hash', 'hash/a', 'hash/a/b', 'hashmarker']);
    await endAll(sub.client, pub.client);
  });

  it.each([
    { version: 5 as const, refused: 0x8f },
    { version: 4 as const, refused: 0x80 },
  ])(
    'invalid filters are refused one by one (v$version: $refused) while valid ones in the same SUBSCRIBE are granted',
    async ({ version, refused }) => {
      const { client } = await rawConnect(broker.port, `badfilter-${version}`, version);
      const suback = await rawSubscribe(client, version, 3, [
        { topic: 'bad/#/x', qos: 1 },
        { topic: `good/${version}/+`, qos: 1 },
        { topic: 'bad/x+', qos: 0 },
      ]);
      expect(suback.messageId).toBe(3);
      expect(suback.granted).toEqual([refused, 1, refused]);
      const line = await broker.waitForLog(
        (l) => l.msg === 'subscription refused' && l.clientId === `badfilter-${version}` && l.filter === 'bad/#/x',
      );
      expect(line.reason).toBe('topicFilterInvalid');
      // The valid filter is live and the connection is kept.
      const pub = await connectClient(broker.url, { clientId: `badfilter-pub-${version}`, protocolVersion: 4 });
      await pub.client.publishAsync(`good/${version}/a`, 'kept', { qos: 1 });
      const publish = await client.next('publish');
      expect(publish.topic).toBe(`good/${version}/a`);
      expect(client.closed).toBe(false);
      client.end();
      await endAll(pub.client);
    },
  );

  it('$-topics are not matched by # or +/... but by a filter naming the $ level', async () => {
    const wild = await connectClient(broker.url, { clientId: 'dollar-wild', protocolVersion: 5 });
    const named = await connectClient(broker.url, { clientId: 'dollar-named', protocolVersion: 5 });
    const pub = await connectClient(broker.url, { clientId: 'dollar-pub', protocolVersion: 5 });
    await wild.client.subscribeAsync(['#', '+/status'], { qos: 1 });
    await named.client.subscribeAsync('$app/#', { qos: 1 });
    await pub.client.publishAsync('$app/status', 'dollar', { qos: 1 });
    await named.received.waitForTopic('$app/status');
    await pub.client.publishAsync('dollar/status', 'plain', { qos: 1 });
    await wild.received.waitForTopic('dollar/status');
    expect(wild.received.messages.map((m) => m.topic)).not.toContain('$app/status');
    expect(wild.received.messages.some((m) => m.topic.startsWith('$'))).toBe(false);
    await endAll(wild.client, named.client, pub.client);
  });

  it('retained $SYS topics are sent to a $SYS/... subscriber but not to # or +/broker/#', async () => {
    const wild = await connectClient(broker.url, { clientId: 'sys-wild', protocolVersion: 4 });
    const sys = await connectClient(broker.url, { clientId: 'sys-named', protocolVersion: 4 });
    await sys.client.subscribeAsync('$SYS/broker/version', { qos: 0 });
    const version = await sys.received.waitForTopic('$SYS/broker/version');
    expect(version.packet.retain).toBe(true);
    await wild.client.subscribeAsync(['#', '+/broker/#'], { qos: 0 });
    const pub = await connectClient(broker.url, { clientId: 'sys-pub', protocolVersion: 4 });
    await pub.client.publishAsync('sysmarker', 'marker', { qos: 1 });
    await wild.received.waitForTopic('sysmarker');
    expect(wild.received.messages.filter((m) => m.topic.startsWith('$'))).toEqual([]);
    await endAll(wild.client, sys.client, pub.client);
  });

  it('overlapping subscriptions deliver one copy at the highest granted QoS (3.1.1)', async () => {
    const sub = await connectClient(broker.url, { clientId: 'overlap4-sub', protocolVersion: 4 });
    const pub = await connectClient(broker.url, { clientId: 'overlap4-pub', protocolVersion: 4 });
    await sub.client.subscribeAsync({ 'ov4/#': { qos: 0 }, 'ov4/+': { qos: 2 }, 'ov4/a': { qos: 1 } });
    await pub.client.publishAsync('ov4/a', 'one', { qos: 2 });
    await pub.client.publishAsync('ov4/marker/x', 'marker', { qos: 1 });
    await sub.received.waitForTopic('ov4/marker/x');
    const copies = sub.received.on('ov4/a');
    expect(copies).toHaveLength(1);
    expect(copies[0]!.packet.qos).toBe(2);
    await endAll(sub.client, pub.client);
  });

  it('overlapping subscriptions deliver one copy carrying every matching subscription identifier (v5)', async () => {
    const sub = await connectClient(broker.url, { clientId: 'overlap5-sub', protocolVersion: 5 });
    const pub = await connectClient(broker.url, { clientId: 'overlap5-pub', protocolVersion: 5 });
    await sub.client.subscribeAsync('ov5/#', { qos: 1, properties: { subscriptionIdentifier: 11 } });
    await sub.client.subscribeAsync('ov5/+', { qos: 0, properties: { subscriptionIdentifier: 22 } });
    await sub.client.subscribeAsync('ov5/only/#', { qos: 1, properties: { subscriptionIdentifier: 33 } });
    await pub.client.publishAsync('ov5/a', 'one', { qos: 1 });
    await pub.client.publishAsync('ov5/only/x', 'marker', { qos: 1 });
    await sub.received.waitForTopic('ov5/only/x');
    const copies = sub.received.on('ov5/a');
    expect(copies).toHaveLength(1);
    expect(copies[0]!.packet.qos).toBe(1);
    const ids = copies[0]!.packet.properties?.subscriptionIdentifier;
    expect([ids].flat().sort()).toEqual([11, 22]);
    const marker = sub.received.on('ov5/only/x')[0]!;
    expect([marker.packet.properties?.subscriptionIdentifier].flat().sort()).toEqual([11, 33]);
    await endAll(sub.client, pub.client);
  });

  it('no local: a subscriber does not get its own messages but others do', async () => {
    const self = await connectClient(broker.url, { clientId: 'nolocal-self', protocolVersion: 5 });
    const other = await connectClient(broker.url, { clientId: 'nolocal-other', protocolVersion: 5 });
    await self.client.subscribeAsync('nl/t', { qos: 1, nl: true });
    await other.client.subscribeAsync('nl/t', { qos: 1 });
    await self.client.publishAsync('nl/t', 'from-self', { qos: 1 });
    await other.received.waitForTopic('nl/t');
    await other.client.publishAsync('nl/t', 'from-other', { qos: 1 });
    await self.received.waitFor(1);
    expect(self.received.messages.map((m) => m.payload)).toEqual(['from-other']);
    await endAll(self.client, other.client);
  });

  it('retain as published keeps RETAIN=1 on live delivery; without it RETAIN is cleared', async () => {
    const rap = await connectClient(broker.url, { clientId: 'rap-on', protocolVersion: 5 });
    const plain = await connectClient(broker.url, { clientId: 'rap-off', protocolVersion: 5 });
    const pub = await connectClient(broker.url, { clientId: 'rap-pub', protocolVersion: 5 });
    await rap.client.subscribeAsync('rap/t', { qos: 1, rap: true });
    await plain.client.subscribeAsync('rap/t', { qos: 1, rap: false });
    await pub.client.publishAsync('rap/t', 'live', { qos: 1, retain: true });
    const [withRap] = await rap.received.waitFor(1);
    const [withoutRap] = await plain.received.waitFor(1);
    expect(withRap!.packet.retain).toBe(true);
    expect(withoutRap!.packet.retain).toBe(false);
    await pub.client.publishAsync('rap/t', '', { qos: 1, retain: true });
    await endAll(rap.client, plain.client, pub.client);
  });

  it.each([
    { rh: 0 as const, first: 1, again: 1 },
    { rh: 1 as const, first: 1, again: 0 },
    { rh: 2 as const, first: 0, again: 0 },
  ])(
    'retain handling $rh sends the retained message $first time(s) on a new subscription and $again on a repeat',
    async ({ rh, first, again }) => {
      const topic = `rh/${rh}/t`;
      const pub = await connectClient(broker.url, { clientId: `rh-pub-${rh}`, protocolVersion: 5 });
      await pub.client.publishAsync(topic, 'kept', { qos: 1, retain: true });
      const sub = await connectClient(broker.url, { clientId: `rh-sub-${rh}`, protocolVersion: 5 });
      await sub.client.subscribeAsync(`rh/${rh}/marker`, { qos: 1 });
      let markers = 0;
      const roundTrip = async (): Promise<void> => {
        markers++;
        await pub.client.publishAsync(`rh/${rh}/marker`, `m${markers}`, { qos: 1 });
        await sub.received.until(() => sub.received.on(`rh/${rh}/marker`).length >= markers, 'marker');
      };
      await sub.client.subscribeAsync(topic, { qos: 1, rh });
      await roundTrip();
      expect(sub.received.on(topic)).toHaveLength(first);
      if (first) expect(sub.received.on(topic)[0]!.packet.retain).toBe(true);
      await sub.client.subscribeAsync(topic, { qos: 1, rh });
      await roundTrip();
      expect(sub.received.on(topic)).toHaveLength(first + again);
      await pub.client.publishAsync(topic, '', { qos: 1, retain: true });
      await endAll(sub.client, pub.client);
    },
  );

  it('UNSUBSCRIBE answers 0x8F for a filter that is not a valid one, as SUBACK does, and removes the others (v5)', async () => {
    const { client } = await rawConnect(broker.port, 'unsub-invalid', 5);
    await rawSubscribe(client, 5, 1, [{ topic: 'unsub/valid/#', qos: 1 }]);
    // Empty, `#` not last, `+` not alone, a share without its filter: no subscription can have any of them.
    const filters = ['', 'a/#/b', 'a+/b', '$share/g/', 'unsub/valid/#'];
    client.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: filters }, 5);
    const unsuback = await client.next('unsuback');
    expect(unsuback.granted).toEqual([0x8f, 0x8f, 0x8f, 0x8f, 0x00]);
    client.end();
  });

  it('UNSUBSCRIBE answers 0x00 for a removed subscription and 0x11 for none, and delivery stops (v5)', async () => {
    const { client } = await rawConnect(broker.port, 'unsub-raw', 5);
    await rawSubscribe(client, 5, 1, [
      { topic: 'unsub/a', qos: 1 },
      { topic: 'unsub/marker', qos: 0 },
    ]);
    client.send({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['unsub/a', 'unsub/never'] }, 5);
    const unsuback = await client.next('unsuback');
    expect(unsuback.messageId).toBe(2);
    expect(unsuback.granted).toEqual([0x00, 0x11]);
    const pub = await connectClient(broker.url, { clientId: 'unsub-pub', protocolVersion: 5 });
    await pub.client.publishAsync('unsub/a', 'gone', { qos: 1 });
    await pub.client.publishAsync('unsub/marker', 'marker', { qos: 0 });
    const first = await client.next('publish');
    expect(first.topic).toBe('unsub/marker');
    client.end();
    await endAll(pub.client);
  });

  it('UNSUBSCRIBE in 3.1.1 is answered with a plain UNSUBACK', async () => {
    const { client } = await rawConnect(broker.port, 'unsub-raw4', 4);
    await rawSubscribe(client, 4, 1, [{ topic: 'unsub4/a', qos: 1 }]);
    client.send({ cmd: 'unsubscribe', messageId: 5, unsubscriptions: ['unsub4/a'] });
    expect((await client.next('unsuback')).messageId).toBe(5);
    client.end();
  });

  it('a subscription beyond limits.max_subscriptions is refused with 0x97; replacing an existing one is not', async () => {
    const { client } = await rawConnect(broker.port, 'maxsubs-5', 5);
    for (let i = 0; i < MAX_SUBSCRIPTIONS; i++) {
      const suback = await rawSubscribe(client, 5, i + 1, [{ topic: `max/${i}`, qos: 1 }]);
      expect(suback.granted).toEqual([1]);
    }
    const over = await rawSubscribe(client, 5, 10, [
      { topic: 'max/over', qos: 1 },
      { topic: 'max/0', qos: 0 },
    ]);
    expect(over.granted).toEqual([0x97, 0]);
    const line = await broker.waitForLog(
      (l) => l.msg === 'subscription refused' && l.clientId === 'maxsubs-5' && l.filter === 'max/over',
    );
    expect(line.reason).toBe('quotaExceeded');
    // The existing subscriptions still deliver.
    const pub = await connectClient(broker.url, { clientId: 'maxsubs-pub', protocolVersion: 5 });
    await pub.client.publishAsync('max/4', 'still', { qos: 1 });
    expect((await client.next('publish')).topic).toBe('max/4');
    client.end();
    await endAll(pub.client);
  });

  it('the subscription limit also holds within a single SUBSCRIBE carrying more filters than allowed', async () => {
    const { client } = await rawConnect(broker.port, 'maxsubs-one-packet', 5);
    const filters = Array.from({ length: MAX_SUBSCRIPTIONS + 2 }, (_, i) => ({
      topic: `maxone/${i}`,
      qos: 0 as const,
    }));
    const suback = await rawSubscribe(client, 5, 1, filters);
    expect(suback.granted).toEqual([...Array<number>(MAX_SUBSCRIPTIONS).fill(0), 0x97, 0x97]);
    client.end();
  });

  it('3.1.1 gets 0x80 for a subscription beyond the limit', async () => {
    const { client } = await rawConnect(broker.port, 'maxsubs-4', 4);
    for (let i = 0; i < MAX_SUBSCRIPTIONS; i++) await rawSubscribe(client, 4, i + 1, [{ topic: `max4/${i}`, qos: 0 }]);
    const over = await rawSubscribe(client, 4, 9, [{ topic: 'max4/over', qos: 0 }]);
    expect(over.granted).toEqual([0x80]);
    client.end();
  });

  it('a topic containing U+FFFD (valid UTF-8) is a legal topic and is delivered', async () => {
    const sub = await connectClient(broker.url, { clientId: 'fffd-sub', protocolVersion: 5 });
    await sub.client.subscribeAsync('fffd/#', { qos: 1 });
    const { client } = await rawConnect(broker.port, 'fffd-pub', 5);
    client.send(rawPublish('fffd/\ufffd', 'replacement character', 1, 1), 5);
    await vi.waitFor(() => expect(client.packets.some((p) => p.cmd === 'puback' || p.cmd === 'disconnect')).toBe(true));
    expect(client.packets.map((p) => p.cmd)).toEqual(['puback']);
    expect((await sub.received.waitFor(1))[0]!.topic).toBe('fffd/\ufffd');
    client.end();
    await endAll(sub.client);
  });

  it('a PUBLISH whose topic is not valid UTF-8 closes the publisher; nothing is delivered', async () => {
    const sub = await connectClient(broker.url, { clientId: 'badutf8-sub', protocolVersion: 4 });
    await sub.client.subscribeAsync('#', { qos: 0 });
    const { client } = await rawConnect(broker.port, 'badutf8-pub', 4);
    // PUBLISH QoS 0, topic "a" 0xC3 0x28 (an invalid two-byte sequence), payload "x".
    client.sendBytes([0x30, 0x06, 0x00, 0x03, 0x61, 0xc3, 0x28, 0x78]);
    await client.waitClosed();
    const pub = await connectClient(broker.url, { clientId: 'badutf8-pub2', protocolVersion: 4 });
    await pub.client.publishAsync('badutf8/marker', 'm', { qos: 1 });
    await sub.received.waitForTopic('badutf8/marker');
    expect(sub.received.messages.map((m) => m.topic).filter((t) => t.startsWith('a'))).toEqual([]);
    await endAll(sub.client, pub.client);
  });

  it('a wildcard in a PUBLISH topic closes the publisher and no subscriber receives it', async () => {
    const sub = await connectClient(broker.url, { clientId: 'wildpub-sub', protocolVersion: 5 });
    await sub.client.subscribeAsync('wildpub/#', { qos: 0 });
    const { client } = await rawConnect(broker.port, 'wildpub-raw', 5);
    client.send(rawPublish('wildpub/+', 'x', 0), 5);
    const disconnect = await client.next('disconnect');
    expect(disconnect.reasonCode).toBe(0x90);
    await client.waitClosed();
    const line = await broker.waitForLog(
      (l) => l.msg === 'closing connection: protocol violation' && l.clientId === 'wildpub-raw',
    );
    expect(line.reason).toBe('topicNameInvalid');
    const pub = await connectClient(broker.url, { clientId: 'wildpub-pub', protocolVersion: 5 });
    await pub.client.publishAsync('wildpub/ok', 'ok', { qos: 1 });
    const [first] = await sub.received.waitFor(1);
    expect(first!.topic).toBe('wildpub/ok');
    await endAll(sub.client, pub.client);
  });
});
