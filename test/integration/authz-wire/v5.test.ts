import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';
import { PacketLog, publishNoWait, subscribeCodes } from '../../helpers/packet-log.js';
import { startPolicyBroker, type PolicyBroker } from '../../helpers/policy-broker.js';

const POLICY = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about topic rules; every client may connect.

  - name: open-area
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['open/#']

  - name: no-writes-to-locked
    deny: publish
    subjects: all
    topics: ['open/locked/#']
    why: Only the broker's own tools write here.

  - name: read-only-feed
    allow: [subscribe, receive]
    subjects: all
    topics: ['feed/#']

  - name: vault-closed
    deny: [subscribe, receive]
    subjects: all
    topics: ['vault/#']
`;

describe('MQTT 5 clients against the policy', () => {
  let pb: PolicyBroker;
  let subscriber: Connected;
  let publisher: Connected;
  let log: PacketLog;
  beforeEach(async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    subscriber = await connectClient(pb.broker.url, { clientId: 'v5-sub', protocolVersion: 5 });
    await subscriber.client.subscribeAsync(['open/#', 'feed/#'], { qos: 2 });
    publisher = await connectClient(pb.broker.url, { clientId: 'v5-pub', protocolVersion: 5 });
    log = new PacketLog(publisher.client);
  });
  afterEach(async () => {
    await endAll(subscriber?.client, publisher?.client);
    await pb?.stop();
  });

  /** A later allowed message from the same publisher: once it arrives, an earlier one would have arrived too. */
  async function marker(qos: 0 | 1 | 2): Promise<void> {
    await publisher.client.publishAsync('open/marker', `after ${qos}`, { qos });
    await subscriber.received.waitForTopic('open/marker');
  }

  it('answers a denied QoS 1 publish with PUBACK 0x87, records the deny rule and delivers nothing', async () => {
    const id = await publishNoWait(publisher.client, 'open/locked/door', 'open sesame', { qos: 1 });
    const puback = await log.ack('puback', id!);
    expect(puback.reasonCode).toBe(0x87);
    const audit = await pb.broker.waitForAudit('authz.publish_denied');
    expect(audit.event.code).toBe('notAuthorized');
    expect(audit.mqtt?.topic).toBe('open/locked/door');
    expect(audit.mqtt?.client_id).toBe('v5-pub');
    expect(audit.authz?.rule).toBe(pb.rule('no-writes-to-locked'));
    expect(audit.authz?.rule_name).toBe('no-writes-to-locked');
    // What was asked and what the client was told: the PUBACK's reason code.
    expect(audit.authz?.action).toBe('publish');
    expect(audit.mqtt?.reason_code).toBe(0x87);
    await marker(1);
    expect(subscriber.received.on('open/locked/door')).toEqual([]);
    expect(publisher.client.connected).toBe(true);
  });

  it('answers a denied QoS 2 publish with PUBREC 0x87 and delivers nothing', async () => {
    const id = await publishNoWait(publisher.client, 'open/locked/door', 'qos2', { qos: 2 });
    const pubrec = await log.ack('pubrec', id!);
    expect(pubrec.reasonCode).toBe(0x87);
    const audit = await pb.broker.waitForAudit('authz.publish_denied');
    expect(audit.authz?.rule).toBe(pb.rule('no-writes-to-locked'));
    expect(audit.mqtt?.qos).toBe(2);
    await marker(2);
    expect(subscriber.received.on('open/locked/door')).toEqual([]);
  });

  it('denies by default a publish no rule allows, naming no rule', async () => {
    const id = await publishNoWait(publisher.client, 'feed/news', 'publishing to a read-only feed', { qos: 1 });
    expect((await log.ack('puback', id!)).reasonCode).toBe(0x87);
    const audit = await pb.broker.waitForAudit('authz.publish_denied');
    expect(audit.mqtt?.topic).toBe('feed/news');
    expect(audit.authz?.rule).toBe('default-deny');
    await marker(1);
    expect(subscriber.received.on('feed/news')).toEqual([]);
  });

  it('drops a denied QoS 0 publish silently, keeps the client connected and records it', async () => {
    await publisher.client.publishAsync('open/locked/door', 'qos0', { qos: 0 });
    const audit = await pb.broker.waitForAudit('authz.publish_denied');
    expect(audit.mqtt?.qos).toBe(0);
    expect(audit.authz?.rule).toBe(pb.rule('no-writes-to-locked'));
    expect(audit.authz?.action).toBe('publish');
    // QoS 0 has no acknowledgement: no reason code went to the client, so none is recorded.
    expect(audit.mqtt?.reason_code).toBeUndefined();
    await marker(0);
    expect(subscriber.received.on('open/locked/door')).toEqual([]);
    expect(publisher.client.connected).toBe(true);
  });

  it('answers SUBACK 0x87 for each denied filter while granting the allowed ones in the same SUBSCRIBE', async () => {
    const codes = await subscribeCodes(publisher.client, log, {
      'open/a': { qos: 1 },
      'vault/gold': { qos: 1 },
      'feed/+/x': { qos: 2 },
      'elsewhere/#': { qos: 0 },
    });
    expect(codes).toEqual([1, 0x87, 2, 0x87]);
    const denied = pb.broker.audit.events.filter((e) => e.event.action === 'authz.subscribe_denied');
    expect(denied.map((e) => [e.mqtt?.topic, e.authz?.rule, e.authz?.action, e.mqtt?.reason_code])).toEqual([
      ['vault/gold', pb.rule('vault-closed'), 'subscribe', 0x87],
      ['elsewhere/#', 'default-deny', 'subscribe', 0x87],
    ]);
    // The granted filters really route, the refused ones are not in the session.
    const session = pb.broker.server.broker.sessions.get('v5-pub')!;
    expect([...session.subscriptions.keys()].sort()).toEqual(['feed/+/x', 'open/a']);
  });

  it('refuses a wildcard subscription that a deny rule overlaps', async () => {
    // `+/gold` overlaps `vault/#` (it could match vault/gold): refused whole rather than silently filtered.
    expect(await subscribeCodes(publisher.client, log, { '+/gold': { qos: 0 } })).toEqual([0x87]);
    const audit = await pb.broker.waitForAudit('authz.subscribe_denied');
    expect(audit.authz?.rule).toBe(pb.rule('vault-closed'));
  });

  it('refuses CONNECT with 0x87 when the will topic is denied, and records the rule', async () => {
    const attempt = connectClient(pb.broker.url, {
      clientId: 'v5-will',
      protocolVersion: 5,
      will: { topic: 'open/locked/last-words', payload: Buffer.from('bye'), qos: 1, retain: false },
    });
    const error = (await attempt.then(
      () => undefined,
      (e: unknown) => e,
    )) as { code?: number } | undefined;
    expect(error?.code).toBe(0x87);
    const audit = await pb.broker.waitForAudit('authz.will_denied');
    expect(audit.mqtt?.topic).toBe('open/locked/last-words');
    // A will is asked as a publish; the CONNACK said 0x87.
    expect(audit.authz?.action).toBe('publish');
    expect(audit.mqtt?.reason_code).toBe(0x87);
    expect(pb.broker.server.broker.sessions.has('v5-will')).toBe(false);
    // The deciding rule belongs in the record like every other authz decision (see report).
    expect(audit.authz?.rule).toBe(pb.rule('no-writes-to-locked'));
  });

  it('accepts CONNECT with an allowed will and publishes it when the client vanishes', async () => {
    const willer = await connectClient(pb.broker.url, {
      clientId: 'v5-will-ok',
      protocolVersion: 5,
      will: { topic: 'open/wills/v5', payload: Buffer.from('gone'), qos: 1, retain: false },
    });
    expect(willer.connack.reasonCode ?? 0).toBe(0);
    willer.client.stream.destroy();
    const will = await subscriber.received.waitForTopic('open/wills/v5');
    expect(will.payload).toBe('gone');
    await endAll(willer.client);
  });
});
