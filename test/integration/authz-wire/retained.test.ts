import { afterEach, describe, expect, it } from 'vitest';
import { connectClient, endAll, spawnMosquittoSub, type Connected } from '../../helpers/mqtt-clients.js';
import { startPolicyBroker, type PolicyBroker } from '../../helpers/policy-broker.js';

const POLICY = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about topic rules; every client may connect.

  - name: write-anywhere-in-r
    allow: [publish, subscribe]
    subjects: all
    topics: ['r/#']

  - name: read-public
    allow: receive
    subjects: all
    topics: ['r/public/#']

  - name: secrets-not-readable
    deny: receive
    subjects: { clients: ['reader-*'] }
    topics: ['r/secret/#']
`;

describe('receive rules on retained and live deliveries', () => {
  let pb: PolicyBroker | undefined;
  const clients: Connected[] = [];
  afterEach(async () => {
    await endAll(...clients.splice(0).map((c) => c.client));
    await pb?.stop();
    pb = undefined;
  });

  async function connect(clientId: string, protocolVersion: 4 | 5 = 5): Promise<Connected> {
    const c = await connectClient(pb!.broker.url, { clientId, protocolVersion });
    clients.push(c);
    return c;
  }

  async function seedRetained(): Promise<Connected> {
    const writer = await connect('writer');
    await writer.client.publishAsync('r/public/a', 'public', { qos: 1, retain: true });
    await writer.client.publishAsync('r/secret/b', 'secret', { qos: 1, retain: true });
    expect(pb!.broker.server.broker.retained.size).toBe(2);
    return writer;
  }

  it.each([5, 4] as const)(
    'sends on subscribe only the retained messages that receive allows (MQTT %i)',
    async (version) => {
      pb = await startPolicyBroker({ policy: POLICY });
      const writer = await seedRetained();
      const reader = await connect(`reader-${version}`, version);
      await reader.client.subscribeAsync('r/#', { qos: 1 });
      // A withheld delivery is a receive denial, retained or not: one query finds them all.
      const audit = await pb.broker.waitForAudit('authz.receive_denied');
      expect(audit.mqtt?.topic).toBe('r/secret/b');
      expect(audit.mqtt?.client_id).toBe(`reader-${version}`);
      expect(audit.mqtt?.retain).toBe(true);
      expect(audit.authz?.action).toBe('receive');
      expect(audit.authz?.rule).toBe(pb.rule('secrets-not-readable'));
      expect(pb.broker.audit.events.map((e) => e.event.action)).not.toContain('authz.retained_denied');
      await reader.received.waitForTopic('r/public/a');
      await writer.client.publishAsync('r/public/marker', 'm', { qos: 1 });
      await reader.received.waitForTopic('r/public/marker');
      expect(reader.received.on('r/public/a').map((m) => m.packet.retain)).toEqual([true]);
      expect(reader.received.on('r/secret/b')).toEqual([]);
    },
  );

  it('mosquitto_sub receives only the readable retained message', async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    const writer = await seedRetained();
    const sub = spawnMosquittoSub([
      ...['-h', '127.0.0.1', '-p', String(pb.broker.port), '-V', 'mqttv311', '-i', 'reader-mosq'],
      ...['-t', 'r/#', '-q', '1'],
    ]);
    try {
      await sub.subscribed;
      await writer.client.publishAsync('r/public/marker', 'm', { qos: 1 });
      const lines = await sub.waitForLines(2);
      expect(lines).toEqual(['r/public/a public', 'r/public/marker m']);
    } finally {
      sub.kill('SIGKILL');
    }
  });

  it('messages queued for an offline session are checked before they are sent', async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    const options = { clientId: 'reader-offline', protocolVersion: 5 as const, clean: false };
    const first = await connectClient(pb.broker.url, { ...options, properties: { sessionExpiryInterval: 300 } });
    await first.client.subscribeAsync('r/#', { qos: 1 });
    await first.client.endAsync();
    const writer = await connect('writer');
    await writer.client.publishAsync('r/secret/queued', 'queued secret', { qos: 1 });
    await writer.client.publishAsync('r/public/queued', 'queued public', { qos: 1 });
    const again = await connectClient(pb.broker.url, { ...options, properties: { sessionExpiryInterval: 300 } });
    clients.push(again);
    expect(again.connack.sessionPresent).toBe(true);
    await again.received.waitForTopic('r/public/queued');
    expect(again.received.on('r/secret/queued')).toEqual([]);
  });

  it('with check_receive_on_delivery: false, live deliveries follow the subscription alone (an opt-out)', async () => {
    pb = await startPolicyBroker({ policy: POLICY, config: { check_receive_on_delivery: false } });
    const reader = await connect('reader-default');
    await reader.client.subscribeAsync('r/#', { qos: 1 });
    const writer = await connect('writer');
    await writer.client.publishAsync('r/secret/live', 'live secret', { qos: 1 });
    await reader.received.waitForTopic('r/secret/live');
    expect(pb.broker.audit.events.some((e) => e.event.action === 'authz.receive_denied')).toBe(false);
  });
});
