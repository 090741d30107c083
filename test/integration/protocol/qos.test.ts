import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectClient, endAll, rawConnect, rawPublish, rawSubscribe } from '../../helpers/mqtt-clients.js';

describe('QoS 0, 1 and 2 in both directions', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker();
  });
  afterAll(async () => broker.stop());

  const versions = [4, 5] as const;
  const cases = versions.flatMap((pub) =>
    versions.flatMap((sub) => ([0, 1, 2] as const).map((qos) => ({ pub, sub, qos }))),
  );

  it.each(cases)(
    'a QoS $qos message from an mqtt.js v$pub publisher reaches an mqtt.js v$sub subscriber at QoS $qos',
    async ({ pub, sub, qos }) => {
      const id = `q-${pub}-${sub}-${qos}`;
      const s = await connectClient(broker.url, { clientId: `${id}-sub`, protocolVersion: sub });
      const p = await connectClient(broker.url, { clientId: `${id}-pub`, protocolVersion: pub });
      const granted = await s.client.subscribeAsync(`qos/${id}`, { qos: 2 });
      expect(granted[0]!.qos).toBe(2);
      await p.client.publishAsync(`qos/${id}`, `payload-${qos}`, { qos });
      const [message] = await s.received.waitFor(1);
      expect(message!.topic).toBe(`qos/${id}`);
      expect(message!.payload).toBe(`payload-${qos}`);
      expect(message!.packet.qos).toBe(qos);
      await endAll(s.client, p.client);
    },
  );

  it('a message is downgraded to the QoS of the subscription', async () => {
    const s = await connectClient(broker.url, { clientId: 'down-sub', protocolVersion: 5 });
    const p = await connectClient(broker.url, { clientId: 'down-pub', protocolVersion: 5 });
    await s.client.subscribeAsync('qos/down', { qos: 1 });
    await p.client.publishAsync('qos/down', 'x', { qos: 2 });
    const [message] = await s.received.waitFor(1);
    expect(message!.packet.qos).toBe(1);
    await endAll(s.client, p.client);
  });

  it.each([4, 5] as const)(
    'a QoS 2 PUBLISH re-sent with DUP and the same packet id (v%i) is delivered once',
    async (version) => {
      const s = await connectClient(broker.url, { clientId: `dup2-sub-${version}`, protocolVersion: 5 });
      await s.client.subscribeAsync(`qos/dup2/${version}/#`, { qos: 2 });
      const { client: raw } = await rawConnect(broker.port, `dup2-pub-${version}`, version);
      raw.send(rawPublish(`qos/dup2/${version}/m`, 'once', 2, 7), version);
      expect((await raw.next('pubrec')).messageId).toBe(7);
      raw.send(rawPublish(`qos/dup2/${version}/m`, 'once', 2, 7, { dup: true }), version);
      expect((await raw.next('pubrec')).messageId).toBe(7);
      raw.send({ cmd: 'pubrel', messageId: 7 }, version);
      expect((await raw.next('pubcomp')).messageId).toBe(7);
      // A marker from the same publisher: once it arrives, a second copy would have arrived before it.
      raw.send(rawPublish(`qos/dup2/${version}/marker`, 'end', 1, 8), version);
      await raw.next('puback');
      await s.received.waitForTopic(`qos/dup2/${version}/marker`);
      expect(s.received.on(`qos/dup2/${version}/m`).map((m) => m.payload)).toEqual(['once']);
      raw.end();
      await endAll(s.client);
    },
  );

  it('after PUBREL the same packet id starts a new QoS 2 message that is delivered again', async () => {
    const s = await connectClient(broker.url, { clientId: 'reuse2-sub', protocolVersion: 5 });
    await s.client.subscribeAsync('qos/reuse2', { qos: 2 });
    const { client: raw } = await rawConnect(broker.port, 'reuse2-pub', 5);
    for (const payload of ['first', 'second']) {
      raw.send(rawPublish('qos/reuse2', payload, 2, 9), 5);
      await raw.next('pubrec');
      raw.send({ cmd: 'pubrel', messageId: 9 }, 5);
      await raw.next('pubcomp');
    }
    const messages = await s.received.waitFor(2);
    expect(messages.map((m) => m.payload)).toEqual(['first', 'second']);
    raw.end();
    await endAll(s.client);
  });

  it('the broker completes the QoS 2 exchange towards a raw subscriber: PUBREC answered with PUBREL', async () => {
    const { client: raw } = await rawConnect(broker.port, 'out2-sub', 4);
    await rawSubscribe(raw, 4, 1, [{ topic: 'qos/out2', qos: 2 }]);
    const p = await connectClient(broker.url, { clientId: 'out2-pub', protocolVersion: 4 });
    await p.client.publishAsync('qos/out2', 'exactly-once', { qos: 2 });
    const publish = await raw.next('publish');
    expect(publish.qos).toBe(2);
    expect(publish.dup).toBe(false);
    expect(publish.payload.toString()).toBe('exactly-once');
    raw.send({ cmd: 'pubrec', messageId: publish.messageId });
    expect((await raw.next('pubrel')).messageId).toBe(publish.messageId);
    raw.send({ cmd: 'pubcomp', messageId: publish.messageId });
    // The window is free again: the next message flows.
    await p.client.publishAsync('qos/out2', 'next', { qos: 2 });
    expect((await raw.next('publish')).payload.toString()).toBe('next');
    raw.end();
    await endAll(p.client);
  });

  it.each([
    { name: 'a QoS 2 delivery answered with PUBACK', qos: 2, answers: ['puback'] },
    { name: 'a QoS 2 delivery answered with PUBCOMP before PUBREC', qos: 2, answers: ['pubcomp'] },
    { name: 'a QoS 1 delivery answered with PUBREC', qos: 1, answers: ['pubrec'] },
    { name: 'a QoS 1 delivery answered with PUBCOMP', qos: 1, answers: ['pubcomp'] },
  ] as const)('$name is a protocol error (DISCONNECT 0x82), as Mosquitto has it', async ({ name, qos, answers }) => {
    const id = `mismatch-${name.replace(/\W+/g, '-')}`;
    const { client: raw } = await rawConnect(broker.port, id, 5);
    await rawSubscribe(raw, 5, 1, [{ topic: `qos/${id}`, qos }]);
    const p = await connectClient(broker.url, { clientId: `${id}-pub`, protocolVersion: 5 });
    await p.client.publishAsync(`qos/${id}`, 'x', { qos });
    const publish = await raw.next('publish');
    for (const cmd of answers) raw.send({ cmd, messageId: publish.messageId }, 5);
    expect((await raw.next('disconnect')).reasonCode).toBe(0x82);
    await raw.waitClosed();
    const line = await broker.waitForLog(
      (l) => l.msg === 'closing connection: protocol violation' && l.clientId === id,
    );
    expect(String(line.detail)).toContain(`for packet id ${publish.messageId}, a QoS ${qos} delivery`);
    await endAll(p.client);
  });

  it('packet ids of unacknowledged messages are never reused while they are in flight', async () => {
    const { client: raw } = await rawConnect(broker.port, 'ids-sub', 5);
    await rawSubscribe(raw, 5, 1, [{ topic: 'qos/ids/+', qos: 2 }]);
    const p = await connectClient(broker.url, { clientId: 'ids-pub', protocolVersion: 5 });
    await p.client.publishAsync('qos/ids/a', 'a', { qos: 1 });
    await p.client.publishAsync('qos/ids/b', 'b', { qos: 2 });
    const a = await raw.next('publish');
    const b = await raw.next('publish');
    expect(a.messageId).not.toBe(b.messageId);
    // b is half-way (PUBREC sent, PUBCOMP not): its id stays reserved.
    raw.send({ cmd: 'pubrec', messageId: b.messageId }, 5);
    await raw.next('pubrel');
    raw.send({ cmd: 'puback', messageId: a.messageId }, 5);
    const later: number[] = [];
    for (const topic of ['c', 'd', 'e']) {
      await p.client.publishAsync(`qos/ids/${topic}`, topic, { qos: 1 });
      const next = await raw.next('publish');
      later.push(next.messageId!);
    }
    expect(later).not.toContain(b.messageId);
    expect(new Set(later).size).toBe(3);
    raw.end();
    await endAll(p.client);
  });

  it.each([
    { version: 4 as const, extra: { clean: false } },
    { version: 5 as const, extra: { clean: false, properties: { sessionExpiryInterval: 60 } } },
  ])(
    'an unacknowledged QoS 1 message is redelivered with DUP and the same packet id when the session resumes (v$version)',
    async ({ version, extra }) => {
      const id = `redeliver-${version}`;
      const first = await rawConnect(broker.port, id, version, extra);
      await rawSubscribe(first.client, version, 1, [{ topic: `qos/redeliver/${version}`, qos: 1 }]);
      const p = await connectClient(broker.url, { clientId: `${id}-pub`, protocolVersion: 5 });
      await p.client.publishAsync(`qos/redeliver/${version}`, 'unacked', { qos: 1 });
      const original = await first.client.next('publish');
      expect(original.dup).toBe(false);
      first.client.end();
      await first.client.waitClosed();
      await broker.waitForLog((l) => l.msg === 'client disconnected' && l.clientId === id);

      const second = await rawConnect(broker.port, id, version, extra);
      expect(second.connack.sessionPresent).toBe(true);
      const again = await second.client.next('publish');
      expect(again.dup).toBe(true);
      expect(again.messageId).toBe(original.messageId);
      expect(again.payload.toString()).toBe('unacked');
      second.client.send({ cmd: 'puback', messageId: again.messageId }, version);
      second.client.end();
      await endAll(p.client);
    },
  );

  it('on takeover with clean session 0 the new connection gets the unacknowledged message with DUP', async () => {
    const id = 'takeover-redeliver';
    const first = await rawConnect(broker.port, id, 4, { clean: false });
    await rawSubscribe(first.client, 4, 1, [{ topic: 'qos/takeover', qos: 1 }]);
    const p = await connectClient(broker.url, { clientId: `${id}-pub`, protocolVersion: 4 });
    await p.client.publishAsync('qos/takeover', 'in flight', { qos: 1 });
    const original = await first.client.next('publish');
    const second = await rawConnect(broker.port, id, 4, { clean: false });
    await first.client.waitClosed();
    expect(second.connack.sessionPresent).toBe(true);
    const again = await second.client.next('publish');
    expect(again.dup).toBe(true);
    expect(again.messageId).toBe(original.messageId);
    second.client.send({ cmd: 'puback', messageId: again.messageId });
    second.client.end();
    await endAll(p.client);
  });

  it('PUBREL is resent, not the PUBLISH, when PUBREC was received but PUBCOMP was not', async () => {
    const id = 'pubrel-resend';
    const first = await rawConnect(broker.port, id, 4, { clean: false });
    await rawSubscribe(first.client, 4, 1, [{ topic: 'qos/pubrel', qos: 2 }]);
    const p = await connectClient(broker.url, { clientId: `${id}-pub`, protocolVersion: 4 });
    await p.client.publishAsync('qos/pubrel', 'half', { qos: 2 });
    const publish = await first.client.next('publish');
    first.client.send({ cmd: 'pubrec', messageId: publish.messageId });
    await first.client.next('pubrel');
    first.client.end();
    await broker.waitForLog((l) => l.msg === 'client disconnected' && l.clientId === id);

    const second = await rawConnect(broker.port, id, 4, { clean: false });
    expect(second.connack.sessionPresent).toBe(true);
    expect((await second.client.next('pubrel')).messageId).toBe(publish.messageId);
    second.client.send({ cmd: 'pubcomp', messageId: publish.messageId });
    // The QoS 2 message itself must not come again: a marker published afterwards arrives first.
    await p.client.publishAsync('qos/pubrel', 'marker', { qos: 1 });
    const next = await second.client.next('publish');
    expect(next.payload.toString()).toBe('marker');
    second.client.send({ cmd: 'puback', messageId: next.messageId });
    second.client.end();
    await endAll(p.client);
  });
});
