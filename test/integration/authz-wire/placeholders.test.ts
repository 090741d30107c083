import { afterEach, describe, expect, it } from 'vitest';
import { connectClient, endAll, runMosquitto, type Connected } from '../../helpers/mqtt-clients.js';
import { PacketLog, publishNoWait, subscribeCodes } from '../../helpers/packet-log.js';
import { startPolicyBroker, type PolicyBroker } from '../../helpers/policy-broker.js';

const DEVICES = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about topic rules; every client may connect.

  - name: device-own-prefix
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['devices/\${clientid}/#']
`;

const TENANTS = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about topic rules; every client may connect.

  - name: tenant-own-prefix
    allow: [publish, subscribe, receive]
    subjects: { anonymous: false }
    topics: ['tenants/\${username}/#']

  - name: operators-room
    allow: [publish, subscribe, receive]
    subjects: { groups: [operators] }
    topics: ['ops/#']
`;

describe('placeholders over the wire', () => {
  let pb: PolicyBroker | undefined;
  const clients: Connected[] = [];
  afterEach(async () => {
    await endAll(...clients.splice(0).map((c) => c.client));
    await pb?.stop();
    pb = undefined;
  });

  async function connect(clientId: string, extra: { username?: string; password?: string } = {}): Promise<Connected> {
    const c = await connectClient(pb!.broker.url, { clientId, protocolVersion: 5, ...extra });
    clients.push(c);
    return c;
  }

  async function publishCode(c: Connected, log: PacketLog, topic: string): Promise<number> {
    const id = await publishNoWait(c.client, topic, 'x', { qos: 1 });
    return (await log.ack('puback', id!)).reasonCode ?? 0;
  }

  it('lets a client use only the devices/${clientid}/ prefix of its own client id', async () => {
    pb = await startPolicyBroker({ policy: DEVICES });
    const dev = await connect('dev-1');
    const log = new PacketLog(dev.client);
    expect(await publishCode(dev, log, 'devices/dev-1/temp')).toBe(0);
    expect(await publishCode(dev, log, 'devices/dev-2/temp')).toBe(0x87);
    expect(
      await subscribeCodes(dev.client, log, {
        'devices/dev-1/#': { qos: 1 },
        'devices/dev-2/#': { qos: 1 },
        'devices/+/temp': { qos: 1 },
      }),
    ).toEqual([1, 0x87, 0x87]);
    const denied = pb.broker.audit.events.filter((e) => e.event.action.startsWith('authz.'));
    expect(denied.map((e) => [e.event.action, e.mqtt?.topic])).toEqual([
      ['authz.publish_denied', 'devices/dev-2/temp'],
      ['authz.subscribe_denied', 'devices/dev-2/#'],
      ['authz.subscribe_denied', 'devices/+/temp'],
    ]);
  });

  it('never fills a placeholder with a client id containing "/" or "+"', async () => {
    pb = await startPolicyBroker({ policy: DEVICES });
    const slash = await connect('dev-9/evil');
    const log = new PacketLog(slash.client);
    // Without the check, devices/${clientid}/# would become devices/dev-9/evil/# and match this topic.
    expect(await publishCode(slash, log, 'devices/dev-9/evil/x')).toBe(0x87);
    const plus = await connect('+');
    expect(await subscribeCodes(plus.client, new PacketLog(plus.client), { 'devices/+/#': { qos: 0 } })).toEqual([
      0x87,
    ]);
  });

  it('applies ${clientid} to a 3.1.1 mosquitto_pub: own prefix delivered, another prefix disconnects', async () => {
    pb = await startPolicyBroker({ policy: DEVICES });
    const watcher = await connect('dev-3');
    await watcher.client.subscribeAsync('devices/dev-3/#', { qos: 1 });
    const base = ['-h', '127.0.0.1', '-p', String(pb.broker.port), '-V', 'mqttv311', '-q', '1', '-i', 'dev-4'];
    const own = await runMosquitto('mosquitto_pub', [...base, '-t', 'devices/dev-4/x', '-m', '1']);
    expect(own.code, own.stderr).toBe(0);
    const other = await runMosquitto('mosquitto_pub', [...base, '-t', 'devices/dev-3/x', '-m', '2']);
    expect(other.code).not.toBe(0);
    const audit = await pb.broker.waitForAudit('authz.publish_denied');
    expect(audit.mqtt?.client_id).toBe('dev-4');
    expect(audit.mqtt?.topic).toBe('devices/dev-3/x');
    expect(watcher.received.on('devices/dev-3/x')).toEqual([]);
  });

  describe('with named users from a password file (authentication: in the broker configuration)', () => {
    const users = {
      acme: { password: 'acme-password-1' },
      globex: { password: 'globex-password-1', groups: ['operators'] },
    };

    it('lets a user publish and subscribe under tenants/${username}/ only', async () => {
      pb = await startPolicyBroker({ policy: TENANTS, users });
      const acme = await connect('acme-gw', { username: 'acme', password: 'acme-password-1' });
      const log = new PacketLog(acme.client);
      expect(await publishCode(acme, log, 'tenants/acme/telemetry')).toBe(0);
      expect(await publishCode(acme, log, 'tenants/globex/telemetry')).toBe(0x87);
      expect(
        await subscribeCodes(acme.client, log, { 'tenants/acme/#': { qos: 1 }, 'tenants/+/telemetry': { qos: 1 } }),
      ).toEqual([1, 0x87]);
      const audit = await pb.broker.waitForAudit('authz.publish_denied');
      expect(audit.user?.name).toBe('acme');
      expect(audit.mqtt?.topic).toBe('tenants/globex/telemetry');
    });

    it('grants group rules to members only', async () => {
      pb = await startPolicyBroker({ policy: TENANTS, users });
      const globex = await connect('globex-1', { username: 'globex', password: 'globex-password-1' });
      const acme = await connect('acme-1', { username: 'acme', password: 'acme-password-1' });
      expect(await subscribeCodes(globex.client, new PacketLog(globex.client), { 'ops/#': { qos: 0 } })).toEqual([0]);
      expect(await subscribeCodes(acme.client, new PacketLog(acme.client), { 'ops/#': { qos: 0 } })).toEqual([0x87]);
    });

    it('refuses anonymous clients when the chain is not anonymous', async () => {
      pb = await startPolicyBroker({ policy: TENANTS, users });
      const error = (await connectClient(pb.broker.url, { clientId: 'nobody', protocolVersion: 5 }).then(
        () => undefined,
        (e: unknown) => e,
      )) as { code?: number } | undefined;
      expect(error?.code).toBe(0x87);
    });
  });
});
