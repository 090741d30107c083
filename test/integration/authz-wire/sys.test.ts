import { afterEach, describe, expect, it } from 'vitest';
import { shippedPolicyPath } from '../../../authz/create.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import type { AuditEvent } from '../../../audit/events.js';
import { connectClient, endAll, runMosquitto, waitClientClosed, type Connected } from '../../helpers/mqtt-clients.js';
import { PacketLog, publishNoWait, subscribeCodes } from '../../helpers/packet-log.js';
import { ruleAt, startPolicyBroker, type PolicyBroker } from '../../helpers/policy-broker.js';
import { until } from '../../helpers/until.js';

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

/** A superuser policy and a policy author who explicitly grants publishing to `$SYS`: neither may lift the guard. */
const GRANTS_SYS_POLICY = `version: 1
superusers: true
rules:
  - name: everyone-connects
    allow: connect
    subjects: all

  - name: monitors-read-sys
    allow: [subscribe, receive]
    subjects: all
    topics: ['$SYS/#']

  - name: ordinary-topics
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['#']

  - name: tool-writes-sys
    allow: publish
    subjects: { clients: ['tool-*'] }
    topics: ['$SYS/#']
    why: Mistaken, and refused by the broker all the same.
`;

const BROKER_RULE = 'sys-topics-are-read-only';

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
    expect(audit.authz?.rule).toBe(BROKER_RULE);
    await forger.client.publishAsync('ordinary/marker', 'm', { qos: 1 });
    expect(monitor.received.on('$SYS/broker/forged')).toEqual([]);
  });

  /** The broker-rule record every refused `$SYS` publish carries. */
  function expectBrokerRule(audit: AuditEvent, topic: string): void {
    expect(audit.mqtt?.topic).toBe(topic);
    expect(audit.event.code).toBe('notAuthorized');
    expect(audit.event.reason).toMatch(/only the broker publishes to \$SYS/);
    expect(audit.authz).toMatchObject({ rule: BROKER_RULE, rule_name: BROKER_RULE, source: 'broker' });
  }

  it('refuses a superuser a retained publish to $SYS/broker/version: PUBACK 0x87, audited, nothing kept', async () => {
    pb = await startPolicyBroker({
      policy: GRANTS_SYS_POLICY,
      config: SYS_ONCE,
      users: { admin: { password: 'pw', superuser: true }, watcher: { password: 'pw' } },
    });
    const watcher = await connectClient(pb.broker.url, {
      clientId: 'watcher',
      protocolVersion: 5,
      username: 'watcher',
      password: 'pw',
    });
    clients.push(watcher);
    await watcher.client.subscribeAsync(['$SYS/broker/version', 'ordinary/#'], { qos: 1 });
    const real = await watcher.received.waitForTopic('$SYS/broker/version');
    const admin = await connectClient(pb.broker.url, {
      clientId: 'admin-forger',
      protocolVersion: 5,
      username: 'admin',
      password: 'pw',
    });
    clients.push(admin);
    const log = new PacketLog(admin.client);
    const id = await publishNoWait(admin.client, '$SYS/broker/version', 'FORGED', { qos: 1, retain: true });
    expect((await log.ack('puback', id!)).reasonCode).toBe(0x87);
    const audit = await pb.broker.waitForAudit('authz.publish_denied');
    expectBrokerRule(audit, '$SYS/broker/version');
    expect(audit.user?.name).toBe('admin');
    // The superuser may still publish elsewhere: the guard is about $SYS, not about the client.
    await admin.client.publishAsync('ordinary/marker', 'm', { qos: 1 });
    await watcher.received.waitForTopic('ordinary/marker');
    expect(watcher.received.on('$SYS/broker/version').map((m) => m.payload)).toEqual([real.payload]);
    expect(pb.broker.server.broker.retained.get('$SYS/broker/version')?.payload.toString()).toBe(real.payload);
    expect(admin.client.connected).toBe(true);
  });

  it('refuses a publish to $SYS that an explicit allow rule grants, at every QoS, on MQTT 5', async () => {
    pb = await startPolicyBroker({ policy: GRANTS_SYS_POLICY, config: SYS_ONCE });
    const monitor = await connect(pb.broker.url, 'monitor-5');
    await monitor.client.subscribeAsync(['$SYS/#', 'ordinary/#'], { qos: 2 });
    const tool = await connect(pb.broker.url, 'tool-5');
    const log = new PacketLog(tool.client);
    const q2 = await publishNoWait(tool.client, '$SYS/broker/alarm', 'q2', { qos: 2 });
    expect((await log.ack('pubrec', q2!)).reasonCode).toBe(0x87);
    await tool.client.publishAsync('$SYS/broker/alarm', 'q0', { qos: 0 });
    const denied = await until(() => {
      const found = pb!.broker.audit.events.filter((e) => e.event.action === 'authz.publish_denied');
      return found.length >= 2 && found;
    }, 'two refused $SYS publishes');
    expect(denied.map((e) => e.mqtt?.qos)).toEqual([2, 0]);
    for (const e of denied) expectBrokerRule(e, '$SYS/broker/alarm');
    await tool.client.publishAsync('ordinary/marker', 'm', { qos: 1 });
    await monitor.received.waitForTopic('ordinary/marker');
    expect(monitor.received.on('$SYS/broker/alarm')).toEqual([]);
    expect(tool.client.connected).toBe(true);
    // `$SYS` alone is the broker's too; `$SYSTEM/...` is another topic the policy decides (here: no rule).
    await tool.client.publishAsync('$SYS', 'bare', { qos: 0 });
    await pb.broker.waitForAudit('authz.publish_denied', (e) => e.mqtt?.topic === '$SYS');
    await tool.client.publishAsync('$SYSTEM/x', 'other', { qos: 0 });
    const other = await pb.broker.waitForAudit('authz.publish_denied', (e) => e.mqtt?.topic === '$SYSTEM/x');
    expect(other.authz?.rule).toBe('default-deny');
  });

  it('answers a 3.1.1 publish to $SYS as any refused 3.1.1 publish: disconnect by default, acknowledge with drop', async () => {
    pb = await startPolicyBroker({ policy: GRANTS_SYS_POLICY, config: SYS_ONCE });
    const closing = await connect(pb.broker.url, 'tool-v3-close', 4);
    const closed = waitClientClosed(closing.client);
    void publishNoWait(closing.client, '$SYS/broker/version', 'FORGED', { qos: 1, retain: true });
    await closed;
    expectBrokerRule(await pb.broker.waitForAudit('authz.publish_denied'), '$SYS/broker/version');
    await pb.stop();

    pb = await startPolicyBroker({
      policy: GRANTS_SYS_POLICY,
      config: SYS_ONCE,
      listener: { v3_publish_denied: 'drop' },
    });
    const dropping = await connect(pb.broker.url, 'tool-v3-drop', 4);
    const log = new PacketLog(dropping.client);
    const id = await publishNoWait(dropping.client, '$SYS/broker/version', 'FORGED', { qos: 1, retain: true });
    expect((await log.ack('puback', id!)).cmd).toBe('puback');
    expectBrokerRule(await pb.broker.waitForAudit('authz.publish_denied'), '$SYS/broker/version');
    expect(pb.broker.server.broker.retained.get('$SYS/broker/version')?.payload.toString()).not.toBe('FORGED');
    expect(dropping.client.connected).toBe(true);
  });

  it.each([5, 4] as const)(
    'refuses a protocol %i CONNECT whose will is on $SYS, even for a client an allow rule covers',
    async (protocolVersion) => {
      pb = await startPolicyBroker({ policy: GRANTS_SYS_POLICY, config: SYS_ONCE });
      const clientId = `tool-will-${protocolVersion}`;
      const error = (await connectClient(pb.broker.url, {
        clientId,
        protocolVersion,
        will: { topic: '$SYS/broker/version', payload: Buffer.from('FORGED'), qos: 1, retain: true },
      }).then(
        () => undefined,
        (e: unknown) => e,
      )) as { code?: number } | undefined;
      expect(error?.code).toBe(protocolVersion === 5 ? 0x87 : 5);
      const audit = await pb.broker.waitForAudit('authz.will_denied');
      expectBrokerRule(audit, '$SYS/broker/version');
      expect(pb.broker.server.broker.sessions.has(clientId)).toBe(false);
    },
  );

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
    // The broker's own rule decides before the shipped policy's deny rule is asked.
    expect(audit.authz?.rule).toBe(BROKER_RULE);
    expect(audit.authz?.rule).not.toBe(ruleAt(shipped, 'no-client-writes-to-sys'));
    expect(reader.received.on('$SYS/broker/version').map((m) => m.payload)).not.toContain('forged');
  });
});
