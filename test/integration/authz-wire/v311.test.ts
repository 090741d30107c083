import { afterEach, describe, expect, it } from 'vitest';
import { connectClient, endAll, runMosquitto, waitClientClosed, type Connected } from '../../helpers/mqtt-clients.js';
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

  - name: vault-closed
    deny: [subscribe, receive]
    subjects: all
    topics: ['vault/#']
`;

describe('MQTT 3.1.1 clients against the policy', () => {
  let pb: PolicyBroker | undefined;
  const clients: Connected[] = [];
  afterEach(async () => {
    await endAll(...clients.splice(0).map((c) => c.client));
    await pb?.stop();
    pb = undefined;
  });

  async function connect(clientId: string): Promise<Connected> {
    const c = await connectClient(pb!.broker.url, { clientId, protocolVersion: 4 });
    clients.push(c);
    return c;
  }

  async function subscriberOnOpen(): Promise<Connected> {
    const sub = await connect('v3-sub');
    await sub.client.subscribeAsync('open/#', { qos: 1 });
    return sub;
  }

  it('answers SUBACK 0x80 for a denied filter and grants the others in the same SUBSCRIBE', async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    const c = await connect('v3-subscriber');
    const codes = await subscribeCodes(c.client, new PacketLog(c.client), {
      'open/a': { qos: 1 },
      'vault/gold': { qos: 2 },
      'nowhere/#': { qos: 0 },
    });
    expect(codes).toEqual([1, 0x80, 0x80]);
    const denied = pb.broker.audit.events.filter((e) => e.event.action === 'authz.subscribe_denied');
    // mqtt.reason_code is the SUBACK return code 3.1.1 sent (0x80), not the MQTT 5 code.
    expect(denied.map((e) => [e.mqtt?.topic, e.mqtt?.protocol_version, e.authz?.rule, e.mqtt?.reason_code])).toEqual([
      ['vault/gold', 4, pb.rule('vault-closed'), 0x80],
      ['nowhere/#', 4, 'default-deny', 0x80],
    ]);
  });

  it.each([0, 1, 2] as const)(
    'closes the connection of a client whose QoS %i publish is denied (default v3_publish_denied: disconnect)',
    async (qos) => {
      pb = await startPolicyBroker({ policy: POLICY });
      const sub = await subscriberOnOpen();
      const pub = await connect(`v3-pub-${qos}`);
      const closed = waitClientClosed(pub.client);
      void publishNoWait(pub.client, 'open/locked/door', 'knock', { qos });
      await closed;
      const audit = await pb.broker.waitForAudit('authz.publish_denied');
      expect(audit.authz?.rule).toBe(pb.rule('no-writes-to-locked'));
      expect(audit.mqtt?.protocol_version).toBe(4);
      const gone = await pb.broker.waitForAudit('client.disconnected', (e) => e.mqtt?.client_id === `v3-pub-${qos}`);
      expect(gone.event.reason).toContain('open/locked/door');
      // Nothing reached the subscriber: a later message from another client arrives alone.
      const other = await connect('v3-marker');
      await other.client.publishAsync('open/marker', 'm', { qos: 1 });
      await sub.received.waitForTopic('open/marker');
      expect(sub.received.on('open/locked/door')).toEqual([]);
    },
  );

  it('keeps a client connected with v3_publish_denied: drop, acknowledges, and delivers nothing', async () => {
    pb = await startPolicyBroker({ policy: POLICY, listener: { v3_publish_denied: 'drop' } });
    const sub = await subscriberOnOpen();
    const pub = await connect('v3-dropper');
    const log = new PacketLog(pub.client);
    const id = await publishNoWait(pub.client, 'open/locked/door', 'knock', { qos: 1 });
    const puback = await log.ack('puback', id!);
    expect(puback.cmd).toBe('puback');
    const audit = await pb.broker.waitForAudit('authz.publish_denied');
    expect(audit.authz?.rule).toBe(pb.rule('no-writes-to-locked'));
    // A 3.1.1 PUBACK carries no code: the client was not told, so no reason code is recorded.
    expect(audit.mqtt?.reason_code).toBeUndefined();
    // Still connected: its next (allowed) message goes through, and the denied one never did.
    await pub.client.publishAsync('open/marker', 'still here', { qos: 1 });
    await sub.received.waitForTopic('open/marker');
    expect(sub.received.on('open/locked/door')).toEqual([]);
    expect(pub.client.connected).toBe(true);
    expect(pb.broker.audit.events.some((e) => e.event.action === 'client.disconnected')).toBe(false);
  });

  it('refuses a 3.1.1 CONNECT whose will topic is denied with return code 5', async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    const error = (await connectClient(pb.broker.url, {
      clientId: 'v3-will',
      protocolVersion: 4,
      will: { topic: 'open/locked/will', payload: Buffer.from('x'), qos: 0, retain: false },
    }).then(
      () => undefined,
      (e: unknown) => e,
    )) as { code?: number } | undefined;
    expect(error?.code).toBe(5);
    const audit = await pb.broker.waitForAudit('authz.will_denied');
    expect(audit.mqtt?.topic).toBe('open/locked/will');
    expect(audit.authz?.action).toBe('publish');
    expect(audit.mqtt?.reason_code).toBe(5);
  });

  it('mosquitto_pub over 3.1.1 fails on a denied QoS 1 publish and succeeds on an allowed one', async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    const sub = await subscriberOnOpen();
    const base = ['-h', '127.0.0.1', '-p', String(pb.broker.port), '-V', 'mqttv311', '-q', '1'];
    const denied = await runMosquitto('mosquitto_pub', [
      ...base,
      '-i',
      'mosq-denied',
      '-t',
      'open/locked/x',
      '-m',
      'no',
    ]);
    expect(denied.code).not.toBe(0);
    const audit = await pb.broker.waitForAudit('authz.publish_denied');
    expect(audit.mqtt?.client_id).toBe('mosq-denied');
    const allowed = await runMosquitto('mosquitto_pub', [...base, '-i', 'mosq-ok', '-t', 'open/x', '-m', 'yes']);
    expect(allowed.code, allowed.stderr).toBe(0);
    await sub.received.waitForTopic('open/x');
    expect(sub.received.on('open/locked/x')).toEqual([]);
  });

  it('mosquitto_sub over 3.1.1 is told its only subscription was refused', async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    const run = await runMosquitto('mosquitto_sub', [
      ...['-h', '127.0.0.1', '-p', String(pb.broker.port), '-V', 'mqttv311', '-i', 'mosq-sub-denied'],
      ...['-t', 'vault/#', '-d', '-W', '2'],
    ]);
    expect(run.stdout).toMatch(/received SUBACK/);
    expect(run.stdout + run.stderr).toMatch(/denied|128/i);
    const audit = await pb.broker.waitForAudit('authz.subscribe_denied');
    expect(audit.mqtt?.topic).toBe('vault/#');
  });
});
