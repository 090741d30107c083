import { afterEach, describe, expect, it } from 'vitest';
import { shippedPolicyPath } from '../../../authz/create.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectClient, endAll, runMosquitto, type Connected } from '../../helpers/mqtt-clients.js';
import { PacketLog, publishNoWait, subscribeCodes } from '../../helpers/packet-log.js';
import { ruleAt, startPolicyBroker, type PolicyBroker } from '../../helpers/policy-broker.js';

/** Everything ordinary is open to everyone; nothing names `$SYS`. */
const OPEN_POLICY = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about topic rules; every client may connect.

  - name: everything-ordinary
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['#']
`;

const SYS_READER_POLICY = `${OPEN_POLICY}
  - name: monitor-reads-sys
    allow: [subscribe, receive]
    subjects: { clients: ['monitor-*'] }
    topics: ['$SYS/#']
`;

// $SYS values are published once at start (retained), so a subscriber gets them without waiting for a tick.
const SYS_ONCE = { sys_interval_seconds: 3600 };

describe('$SYS and other broker topics', () => {
  let pb: PolicyBroker | undefined;
  let plain: TestBroker | undefined;
  const clients: Connected[] = [];
  afterEach(async () => {
    await endAll(...clients.splice(0).map((c) => c.client));
    await pb?.stop();
    await plain?.stop();
    pb = undefined;
    plain = undefined;
  });

  async function connect(url: string, clientId: string, protocolVersion: 4 | 5 = 5): Promise<Connected> {
    const c = await connectClient(url, { clientId, protocolVersion });
    clients.push(c);
    return c;
  }

  it('refuses a client publish to $SYS even when the policy grants "#" to everyone', async () => {
    pb = await startPolicyBroker({ policy: SYS_READER_POLICY, config: SYS_ONCE });
    const monitor = await connect(pb.broker.url, 'monitor-1');
    await monitor.client.subscribeAsync('$SYS/broker/forged', { qos: 1 });
    const forger = await connect(pb.broker.url, 'forger');
    const log = new PacketLog(forger.client);
    const id = await publishNoWait(forger.client, '$SYS/broker/forged', '0', { qos: 1 });
    expect((await log.ack('puback', id!)).reasonCode).toBe(0x87);
    const audit = await pb.broker.waitForAudit('authz.publish_denied');
    expect(audit.mqtt?.topic).toBe('$SYS/broker/forged');
    expect(audit.authz?.rule).toBe('default-deny');
    await forger.client.publishAsync('ordinary/marker', 'm', { qos: 1 });
    expect(monitor.received.on('$SYS/broker/forged')).toEqual([]);
  });

  it('refuses SUBSCRIBE $SYS/# without a rule naming it, and grants it with one', async () => {
    pb = await startPolicyBroker({ policy: SYS_READER_POLICY, config: SYS_ONCE });
    const outsider = await connect(pb.broker.url, 'outsider');
    expect(await subscribeCodes(outsider.client, new PacketLog(outsider.client), { '$SYS/#': { qos: 0 } })).toEqual([
      0x87,
    ]);
    const v3 = await connect(pb.broker.url, 'outsider-v3', 4);
    expect(await subscribeCodes(v3.client, new PacketLog(v3.client), { '$SYS/#': { qos: 0 } })).toEqual([0x80]);
    const monitor = await connect(pb.broker.url, 'monitor-2');
    const [grant] = await monitor.client.subscribeAsync('$SYS/#', { qos: 0 });
    expect(grant!.qos).toBe(0);
    const uptime = await monitor.received.waitForTopic('$SYS/broker/version');
    expect(uptime.packet.retain).toBe(true);
  });

  it('never delivers $SYS topics to "#" or "+/..." subscriptions', async () => {
    pb = await startPolicyBroker({ policy: SYS_READER_POLICY, config: SYS_ONCE });
    const everything = await connect(pb.broker.url, 'monitor-everything');
    // The same client may read $SYS: only the wildcard rule [MQTT-4.7.2-1] keeps $SYS out of "#".
    await everything.client.subscribeAsync(['#', '+/broker/#'], { qos: 0 });
    const monitor = await connect(pb.broker.url, 'monitor-3');
    await monitor.client.subscribeAsync('$SYS/#', { qos: 0 });
    await monitor.received.waitForTopic('$SYS/broker/version');
    pb.broker.server.sys.publishAll();
    await monitor.received.until(() => monitor.received.on('$SYS/broker/version').length >= 2, 'a live $SYS update');
    await monitor.client.publishAsync('ordinary/marker', 'm', { qos: 1 });
    await everything.received.waitForTopic('ordinary/marker');
    expect(everything.received.messages.filter((m) => m.topic.startsWith('$'))).toEqual([]);
  });

  it('with no policy_files, the shipped default policy lets local clients read but never write $SYS', async () => {
    plain = await startBroker({ config: SYS_ONCE });
    const shipped = shippedPolicyPath();
    const reader = await connect(plain.url, 'local-reader');
    await reader.client.subscribeAsync('$SYS/#', { qos: 0 });
    await reader.received.waitForTopic('$SYS/broker/version');
    const pub = await runMosquitto('mosquitto_pub', [
      ...['-h', '127.0.0.1', '-p', String(plain.port), '-V', '5', '-q', '1', '-i', 'local-forger', '-d'],
      ...['-t', '$SYS/broker/version', '-m', 'forged'],
    ]);
    // mosquitto_pub 2.0 exits 0 after a refused PUBACK; its debug output shows the reason code.
    expect(pub.stdout).toMatch(/received PUBACK \(Mid: \d+, RC:135\)/);
    const audit = await plain.waitForAudit('authz.publish_denied');
    expect(audit.authz?.rule).toBe(ruleAt(shipped, 'no-client-writes-to-sys'));
    expect(reader.received.on('$SYS/broker/version').map((m) => m.payload)).not.toContain('forged');
  });
});
