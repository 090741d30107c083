import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';
import { PacketLog, publishNoWait } from '../../helpers/packet-log.js';
import { startPolicyBroker, type PolicyBroker } from '../../helpers/policy-broker.js';

const POLICY = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about topic rules; every client may connect.

  - name: plant-open
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['plant/#']

  - name: no-retained-commands
    deny: publish
    subjects: all
    topics: ['plant/+/commands/#']
    when: { retain: true }
    why: A retained command would run again on every device that reconnects.

  - name: telemetry-at-most-once-or-once
    deny: publish
    subjects: all
    topics: ['plant/+/telemetry/#']
    when: { qos: 2 }

  - name: locked
    deny: publish
    subjects: all
    topics: ['plant/locked/#']
`;

describe('conditions and what a denied publish leaves behind', () => {
  let pb: PolicyBroker;
  let pub: Connected;
  let log: PacketLog;
  const extra: Connected[] = [];
  beforeEach(async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    pub = await connectClient(pb.broker.url, { clientId: 'cond-pub', protocolVersion: 5 });
    log = new PacketLog(pub.client);
  });
  afterEach(async () => {
    await endAll(pub?.client, ...extra.splice(0).map((c) => c.client));
    await pb?.stop();
  });

  async function code(topic: string, qos: 1 | 2, retain = false, payload = 'x'): Promise<number> {
    const id = await publishNoWait(pub.client, topic, payload, { qos, retain });
    return (await log.ack(qos === 1 ? 'puback' : 'pubrec', id!)).reasonCode ?? 0;
  }

  it('denies a retained command but allows the same command unretained (retain condition)', async () => {
    expect(await code('plant/line-1/commands/stop', 1, true)).toBe(0x87);
    expect(await code('plant/line-1/commands/stop', 1, false)).toBe(0);
    const audit = await pb.broker.waitForAudit('authz.publish_denied');
    expect(audit.authz?.rule).toBe(pb.rule('no-retained-commands'));
    // The condition that decided is visible in the record: the retain flag and the QoS asked for.
    expect(audit.mqtt).toMatchObject({ topic: 'plant/line-1/commands/stop', qos: 1, retain: true });
    expect(pb.broker.server.broker.retained.size).toBe(0);
  });

  it('denies QoS 2 telemetry but allows QoS 1 (qos condition)', async () => {
    expect(await code('plant/line-1/telemetry/temp', 2)).toBe(0x87);
    expect(await code('plant/line-1/telemetry/temp', 1)).toBe(0);
    const audit = await pb.broker.waitForAudit('authz.publish_denied');
    expect(audit.authz?.rule).toBe(pb.rule('telemetry-at-most-once-or-once'));
    expect(audit.mqtt).toMatchObject({ topic: 'plant/line-1/telemetry/temp', qos: 2, retain: false });
  });

  it.each([
    ['a retained will (retain condition)', 'plant/line-1/commands/last', 1, true, 'no-retained-commands'],
    ['a QoS 2 will (qos condition)', 'plant/line-1/telemetry/last', 2, false, 'telemetry-at-most-once-or-once'],
  ] as const)('refuses %s and records its real QoS and retain flag', async (_what, topic, qos, retain, rule) => {
    const attempt = await connectClient(pb.broker.url, {
      clientId: `cond-will-${qos}`,
      protocolVersion: 5,
      will: { topic, payload: Buffer.from('bye'), qos, retain },
    }).then(
      () => undefined,
      (e: unknown) => e as { code?: number },
    );
    expect(attempt?.code).toBe(0x87);
    const audit = await pb.broker.waitForAudit('authz.will_denied', (e) => e.mqtt?.topic === topic);
    expect(audit.authz?.rule).toBe(pb.rule(rule));
    expect(audit.mqtt).toMatchObject({ client_id: `cond-will-${qos}`, qos, retain });
  });

  it('neither stores nor clears a retained message when the retained publish is denied', async () => {
    // A value retained before the locked rule existed (put in the store directly, as a restart would restore it).
    pb.broker.server.broker.retained.set({
      topic: 'plant/locked/setpoint',
      payload: Buffer.from('42'),
      qos: 1,
      retain: true,
      properties: undefined,
      expiresAt: undefined,
      publisherId: 'installer',
    });
    expect(await code('plant/locked/setpoint', 1, true, '')).toBe(0x87);
    expect(await code('plant/locked/other', 1, true, '99')).toBe(0x87);
    const reader = await connectClient(pb.broker.url, { clientId: 'cond-reader', protocolVersion: 5 });
    extra.push(reader);
    await reader.client.subscribeAsync('plant/locked/#', { qos: 1 });
    const kept = await reader.received.waitForTopic('plant/locked/setpoint');
    expect(kept.payload).toBe('42');
    expect(reader.received.on('plant/locked/other')).toEqual([]);
    expect(pb.broker.server.broker.retained.size).toBe(1);
  });

  it('checks the topic a topic alias stands for, not the empty topic on the wire', async () => {
    expect(await code('plant/locked/door', 1)).toBe(0x87);
    // mqtt.js sends an alias-only PUBLISH (empty topic) once the alias is set.
    const sent = new Promise<number>((resolve) => {
      pub.client.on('packetsend', (p) => {
        if (p.cmd === 'publish' && p.topic === '' && p.messageId !== undefined) resolve(p.messageId);
      });
    });
    pub.client.publish('plant/locked/door', 'set alias', { qos: 1, properties: { topicAlias: 3 } }, () => undefined);
    pub.client.publish('', 'via alias', { qos: 1, properties: { topicAlias: 3 } }, () => undefined);
    const aliasId = await sent;
    expect((await log.ack('puback', aliasId)).reasonCode).toBe(0x87);
    const denied = pb.broker.audit.events.filter((e) => e.event.action === 'authz.publish_denied');
    expect(denied.map((e) => e.mqtt?.topic)).toEqual(['plant/locked/door', 'plant/locked/door', 'plant/locked/door']);
  });
});
