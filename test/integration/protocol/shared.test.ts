import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectClient, endAll, rawConnect, rawSubscribe, type Connected } from '../../helpers/mqtt-clients.js';

describe('shared subscriptions', () => {
  let broker: TestBroker;
  let publisher: Connected;
  beforeAll(async () => {
    broker = await startBroker();
    publisher = await connectClient(broker.url, { clientId: 'shared-publisher', protocolVersion: 5 });
  });
  afterAll(async () => {
    await endAll(publisher.client);
    await broker.stop();
  });

  it('each message goes to exactly one member of the group, spread among the members', async () => {
    const members = await Promise.all(
      [0, 1, 2].map((i) =>
        connectClient(broker.url, { clientId: `share-member-${i}`, protocolVersion: i === 0 ? 4 : 5 }),
      ),
    );
    for (const m of members) await m.client.subscribeAsync('$share/workers/jobs/+', { qos: 1 });
    const plain = await connectClient(broker.url, { clientId: 'share-plain', protocolVersion: 5 });
    await plain.client.subscribeAsync('jobs/+', { qos: 1 });
    const payloads = Array.from({ length: 9 }, (_, i) => `job-${i}`);
    for (const p of payloads) await publisher.client.publishAsync('jobs/new', p, { qos: 1 });
    // The non-shared subscriber sees all of them.
    await plain.received.waitFor(payloads.length);
    await vi.waitFor(() =>
      expect(members.reduce((n, m) => n + m.received.messages.length, 0)).toBeGreaterThanOrEqual(payloads.length),
    );
    const delivered = members.flatMap((m) => m.received.messages.map((x) => x.payload));
    expect(delivered.sort()).toEqual([...payloads].sort());
    for (const m of members) expect(m.received.messages.length).toBeGreaterThan(0);
    expect(members.flatMap((m) => m.received.messages.map((x) => x.topic))).toEqual(payloads.map(() => 'jobs/new'));
    await endAll(plain.client, ...members.map((m) => m.client));
  });

  it('several groups on the same filter each get every message once', async () => {
    const a = await connectClient(broker.url, { clientId: 'share-group-a', protocolVersion: 5 });
    const b = await connectClient(broker.url, { clientId: 'share-group-b', protocolVersion: 5 });
    await a.client.subscribeAsync('$share/ga/groups/x', { qos: 1 });
    await b.client.subscribeAsync('$share/gb/groups/x', { qos: 1 });
    await publisher.client.publishAsync('groups/x', 'both', { qos: 1 });
    expect((await a.received.waitFor(1))[0]!.payload).toBe('both');
    expect((await b.received.waitFor(1))[0]!.payload).toBe('both');
    await endAll(a.client, b.client);
  });

  it.each([
    { label: 'clean session', extra: {} },
    { label: 'persistent session', extra: { clean: false, properties: { sessionExpiryInterval: 60 } } },
  ])(
    'a member ($label) that leaves with unacknowledged QoS 1 messages has them redelivered to another member',
    async ({ label, extra }) => {
      const group = label.startsWith('clean') ? 'gclean' : 'gpersist';
      const filter = `$share/${group}/redeliver/${group}`;
      const { client: silent } = await rawConnect(broker.port, `share-silent-${group}`, 5, extra);
      await rawSubscribe(silent, 5, 1, [{ topic: filter, qos: 1 }]);
      const other = await connectClient(broker.url, { clientId: `share-other-${group}`, protocolVersion: 5 });
      await other.client.subscribeAsync(filter, { qos: 1 });
      // Round robin: of two messages, the silent member gets one.
      await publisher.client.publishAsync(`redeliver/${group}`, 'm1', { qos: 1 });
      await publisher.client.publishAsync(`redeliver/${group}`, 'm2', { qos: 1 });
      const held = await silent.next('publish');
      silent.end();
      await silent.waitClosed();
      const messages = await other.received.waitFor(2);
      expect(messages.map((m) => m.payload).sort()).toEqual(['m1', 'm2']);
      expect(messages.map((m) => m.payload)).toContain(held.payload.toString());
      await endAll(other.client);
    },
  );

  it.each([
    { version: 5 as const, refused: 0x8f },
    { version: 4 as const, refused: 0x80 },
  ])('invalid share names and empty shared filters are refused (v$version: $refused)', async ({ version, refused }) => {
    const { client } = await rawConnect(broker.port, `share-invalid-${version}`, version);
    const suback = await rawSubscribe(client, version, 1, [
      { topic: '$share/g+/a', qos: 0 },
      { topic: '$share/g#/a', qos: 0 },
      { topic: '$share//a', qos: 0 },
      { topic: '$share/g', qos: 0 },
      { topic: '$share/g/', qos: 0 },
      { topic: '$share/g/a/#', qos: 1 },
    ]);
    expect(suback.granted).toEqual([refused, refused, refused, refused, refused, 1]);
    expect(client.closed).toBe(false);
    client.end();
  });

  it('no local on a shared subscription is a protocol error (DISCONNECT 0x82)', async () => {
    const { client } = await rawConnect(broker.port, 'share-nolocal', 5);
    client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/nl', qos: 0, nl: true }] }, 5);
    expect((await client.next('disconnect')).reasonCode).toBe(0x82);
    await client.waitClosed();
  });

  it('a shared subscription does not receive retained messages when it is made', async () => {
    await publisher.client.publishAsync('share-retained/t', 'kept', { qos: 1, retain: true });
    const member = await connectClient(broker.url, { clientId: 'share-retained', protocolVersion: 5 });
    await member.client.subscribeAsync({
      '$share/gr/share-retained/t': { qos: 1 },
      'share-retained/marker': { qos: 1 },
    });
    await publisher.client.publishAsync('share-retained/marker', 'm', { qos: 1 });
    await member.received.waitForTopic('share-retained/marker');
    expect(member.received.on('share-retained/t')).toEqual([]);
    await publisher.client.publishAsync('share-retained/t', '', { qos: 1, retain: true });
    await endAll(member.client);
  });

  it('unsubscribing a shared subscription stops deliveries to that member', async () => {
    const a = await connectClient(broker.url, { clientId: 'share-unsub-a', protocolVersion: 4 });
    const b = await connectClient(broker.url, { clientId: 'share-unsub-b', protocolVersion: 4 });
    await a.client.subscribeAsync('$share/gu/unsub/x', { qos: 1 });
    await b.client.subscribeAsync('$share/gu/unsub/x', { qos: 1 });
    await a.client.unsubscribeAsync('$share/gu/unsub/x');
    for (const p of ['1', '2', '3']) await publisher.client.publishAsync('unsub/x', p, { qos: 1 });
    expect((await b.received.waitFor(3)).map((m) => m.payload)).toEqual(['1', '2', '3']);
    expect(a.received.messages).toEqual([]);
    await endAll(a.client, b.client);
  });
});
