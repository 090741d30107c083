import { afterEach, describe, expect, it } from 'vitest';
import { configSchema } from '../../../src/config/schema.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { freePort } from '../../helpers/free-port.js';
import { scrape, sample, type Scrape } from '../../helpers/metrics-scrape.js';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';
import { startPolicyBroker, type PolicyBroker } from '../../helpers/policy-broker.js';
import { adminSocketPath, callAdmin } from '../../../src/admin/client.js';

const POLICY = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: The metrics tests count topic decisions of connected clients.

  - name: open-area
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['open/#']

  - name: locked-area
    deny: publish
    subjects: all
    topics: ['locked/#']

  - name: open-secrets-withheld
    deny: receive
    subjects: all
    topics: ['open/secret/#']

  - name: no-entry
    deny: connect
    subjects: { clients: ['zq-no-entry-*'] }
`;

/** Client ids, user names and topics a scrape must never carry (cardinality, and what they say about clients). */
const PUBLISHER_ID = 'zq-publisher-7f3a91';
const DENIED_ID = 'zq-refused-client-91b2c';
const USER = 'zq-operator-5d1e';
const PASSWORD = 'correct horse battery staple';

function metricsAddress(broker: TestBroker): { host: string; port: number } {
  const address = broker.server.metricsAddress;
  if (address === undefined) throw new Error('metrics endpoint not started');
  return address;
}

/** Counter movement between two scrapes of the same series. */
function moved(before: Scrape, after: Scrape, name: string, labels: Record<string, string> = {}): number {
  return (sample(after, name, labels) ?? 0) - (sample(before, name, labels) ?? 0);
}

describe('metrics endpoint', () => {
  let pb: PolicyBroker | undefined;
  let broker: TestBroker | undefined;
  const clients: Connected[] = [];
  afterEach(async () => {
    await endAll(...clients.splice(0).map((c) => c.client));
    await pb?.stop();
    pb = undefined;
    await broker?.stop();
    broker = undefined;
  });

  it('is off by default: nothing listens on the metrics port unless metrics.enabled is true', async () => {
    expect(configSchema.parse({ listeners: [{ port: 1883 }] }).metrics).toEqual({
      enabled: false,
      host: '127.0.0.1',
      port: 9464,
      path: '/metrics',
    });
    const port = await freePort();
    broker = await startBroker({ config: { metrics: { port } } });
    expect(broker.server.metricsAddress).toBeUndefined();
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
  });

  it('counts real MQTT traffic: connects allowed and denied by reason and step, a denied publish, messages', async () => {
    pb = await startPolicyBroker({
      policy: POLICY,
      users: { [USER]: { password: PASSWORD } },
      config: { metrics: { enabled: true, port: 0 } },
    });
    const address = metricsAddress(pb.broker);
    const before = await scrape(address);
    expect(before.status).toBe(200);

    const sub = await connectClient(pb.broker.url, {
      clientId: 'zq-subscriber',
      username: USER,
      password: PASSWORD,
      protocolVersion: 5,
    });
    clients.push(sub);
    await sub.client.subscribeAsync('open/#', { qos: 1 });
    const pub = await connectClient(pb.broker.url, {
      clientId: PUBLISHER_ID,
      username: USER,
      password: PASSWORD,
      protocolVersion: 5,
    });
    clients.push(pub);
    for (let i = 0; i < 3; i++) await pub.client.publishAsync('open/a', `m${i}`, { qos: 1 });
    await sub.received.waitFor(3);
    // Allowed to publish, but the subscriber may not receive it: withheld, one receive denial.
    await pub.client.publishAsync('open/secret/plan', 'hidden', { qos: 1 });
    await pb.broker.waitForAudit('authz.receive_denied');
    // SUBACK 0x87, which mqtt.js reports as an error.
    await expect(sub.client.subscribeAsync('nowhere/#', { qos: 0 })).rejects.toThrow('Not authorized');
    // MQTT 5: the denied QoS 1 PUBLISH is answered PUBACK 0x87 and the client stays connected.
    await pub.client.publishAsync('locked/door', 'knock', { qos: 1 }).catch(() => undefined);
    await pb.broker.waitForAudit('authz.publish_denied');
    await expect(
      connectClient(pb.broker.url, { clientId: DENIED_ID, username: USER, password: 'wrong', protocolVersion: 5 }),
    ).rejects.toThrow();
    await pb.broker.waitForAudit('authn.denied');

    const after = await scrape(address);
    expect(after.status).toBe(200);
    expect(moved(before, after, 'bulwark_connects_allowed_total', { authenticator: 'password-file' })).toBe(2);
    expect(
      moved(before, after, 'bulwark_connects_denied_total', {
        reason: 'badUserNameOrPassword',
        authenticator: 'password-file',
      }),
    ).toBe(1);
    expect(moved(before, after, 'bulwark_connects_refused_total')).toBe(1);
    expect(moved(before, after, 'bulwark_authorization_denials_total', { action: 'publish' })).toBe(1);
    expect(moved(before, after, 'bulwark_authorization_denials_total', { action: 'subscribe' })).toBe(1);
    expect(moved(before, after, 'bulwark_authorization_denials_total', { action: 'receive' })).toBe(1);
    expect(moved(before, after, 'bulwark_authorization_denials_total', { action: 'connect' })).toBe(0);
    // Four allowed and one denied PUBLISH received; three delivered to the one subscriber, one withheld.
    expect(moved(before, after, 'bulwark_messages_received_total')).toBe(5);
    expect(moved(before, after, 'bulwark_messages_sent_total')).toBe(3);
    expect(moved(before, after, 'bulwark_connections_total')).toBe(3);
    expect(sample(after, 'bulwark_clients_connected')).toBe(2);
    expect(sample(after, 'bulwark_subscriptions')).toBe(1);
    expect(sample(after, 'bulwark_build_info', { version: '0.1.0', node_version: process.version })).toBe(1);
    expect(sample(after, 'bulwark_process_resident_memory_bytes')).toBeGreaterThan(0);
    // Bounded labels only: nothing a client chose is a label or a value.
    for (const chosen of [PUBLISHER_ID, DENIED_ID, 'zq-subscriber', USER, 'open/a', 'open/secret', 'locked/door'])
      expect(after.text).not.toContain(chosen);
  });

  it('counts CONNECTs the policy refuses, for the identity and for its will, by action and reason', async () => {
    pb = await startPolicyBroker({ policy: POLICY, config: { metrics: { enabled: true, port: 0 } } });
    const address = metricsAddress(pb.broker);
    const before = await scrape(address);
    await expect(connectClient(pb.broker.url, { clientId: 'zq-no-entry-1', protocolVersion: 5 })).rejects.toThrow();
    await expect(
      connectClient(pb.broker.url, {
        clientId: 'zq-will-client',
        protocolVersion: 4,
        will: { topic: 'locked/last-words', payload: Buffer.from('bye'), qos: 0, retain: false },
      }),
    ).rejects.toThrow();
    await pb.broker.waitForAudit('authz.will_denied');
    const after = await scrape(address);
    expect(moved(before, after, 'bulwark_authorization_denials_total', { action: 'connect' })).toBe(1);
    expect(moved(before, after, 'bulwark_authorization_denials_total', { action: 'will' })).toBe(1);
    // The chain let both in (anonymous); a broker step refused them, so no authenticator is named.
    expect(moved(before, after, 'bulwark_connects_denied_total', { reason: 'notAuthorized', authenticator: '' })).toBe(
      2,
    );
    expect(moved(before, after, 'bulwark_connects_allowed_total', { authenticator: 'anonymous' })).toBe(0);
    expect(after.text).not.toContain('zq-no-entry-1');
    expect(after.text).not.toContain('locked/last-words');
  });

  it('counts guard refusals and the block list, with the refusal reason on the CONNECT outcome', async () => {
    broker = await startBroker({ config: { metrics: { enabled: true, port: 0 } } });
    const address = metricsAddress(broker);
    const before = await scrape(address);
    expect(sample(before, 'bulwark_guard_blocklist_entries')).toBe(0);
    const added = await callAdmin(adminSocketPath(broker.server.options.config.data_dir), 'ban.add', {
      kind: 'client_id',
      value: DENIED_ID,
      duration_ms: 60_000,
    });
    expect(added).toMatchObject({ kind: 'ok' });
    await expect(connectClient(broker.url, { clientId: DENIED_ID, protocolVersion: 5 })).rejects.toThrow();
    await broker.waitForAudit('guard.blocked');
    const after = await scrape(address);
    expect(sample(after, 'bulwark_guard_blocklist_entries')).toBe(1);
    expect(moved(before, after, 'bulwark_guard_refusals_total', { kind: 'blocked' })).toBe(1);
    expect(moved(before, after, 'bulwark_connects_denied_total', { reason: 'banned', authenticator: '' })).toBe(1);
    expect(after.text).not.toContain(DENIED_ID);
  });

  it('counts throttle lockouts, flapping bans and the refusals they cause, and refusals counted into summaries', async () => {
    const victim = 'zq-victim-user';
    pb = await startPolicyBroker({
      policy: POLICY,
      users: { [USER]: { password: PASSWORD }, [victim]: { password: PASSWORD } },
      config: {
        metrics: { enabled: true, port: 0 },
        // Loopback counted like any address (the test broker exempts it), with thresholds a test reaches at once.
        guard: {
          exempt_networks: [],
          throttle: { username: { max_failures: 2 }, address: { enabled: false } },
          flapping: {
            client_id: { max_attempts: 2 },
            username: { enabled: false },
            address: { enabled: false },
            network: { enabled: false },
          },
        },
        audit: { refusals: { burst: 1 } },
      },
    });
    const address = metricsAddress(pb.broker);
    const before = await scrape(address);
    const attempt = (clientId: string, username: string, password: string): Promise<Connected> =>
      connectClient(pb!.broker.url, { clientId, username, password, protocolVersion: 5 });

    // Two failures lock the user out; the third attempt is refused before its password is checked.
    for (let i = 0; i < 3; i++) await expect(attempt(`zq-guess-${i}`, victim, 'wrong')).rejects.toThrow();
    // A client id that logs in a third time within the window is banned on that attempt, and refused after it.
    for (let i = 0; i < 2; i++) (await attempt(PUBLISHER_ID, USER, PASSWORD)).client.end(true);
    await expect(attempt(PUBLISHER_ID, USER, PASSWORD)).rejects.toThrow();
    await expect(attempt(PUBLISHER_ID, USER, PASSWORD)).rejects.toThrow();
    await expect(attempt(PUBLISHER_ID, USER, PASSWORD)).rejects.toThrow();
    await pb.broker.waitForAudit('guard.blocked', (e) => e.event.outcome === 'failure');

    const after = await scrape(address);
    expect(moved(before, after, 'bulwark_guard_throttle_lockouts_total')).toBe(1);
    expect(moved(before, after, 'bulwark_guard_refusals_total', { kind: 'throttled' })).toBe(1);
    expect(moved(before, after, 'bulwark_guard_flapping_bans_total')).toBe(1);
    expect(moved(before, after, 'bulwark_guard_refusals_total', { kind: 'flapping' })).toBe(1);
    expect(moved(before, after, 'bulwark_guard_refusals_total', { kind: 'blocked' })).toBe(2);
    expect(sample(after, 'bulwark_guard_blocklist_entries')).toBe(1);
    expect(
      moved(before, after, 'bulwark_connects_denied_total', { reason: 'connectionRateExceeded', authenticator: '' }),
    ).toBe(1);
    expect(moved(before, after, 'bulwark_connects_denied_total', { reason: 'banned', authenticator: '' })).toBe(3);
    // audit.refusals burst 1: the second block-list refusal from this address went into a summary.
    expect(moved(before, after, 'bulwark_audit_refusals_suppressed_total')).toBe(1);
    for (const chosen of [PUBLISHER_ID, USER, victim]) expect(after.text).not.toContain(chosen);
  });

  it('answers GET and HEAD on the configured path only', async () => {
    broker = await startBroker({ config: { metrics: { enabled: true, port: 0, path: '/internal/prom' } } });
    const { host, port } = metricsAddress(broker);
    const base = `http://${host}:${port}`;
    expect((await scrape({ host, port }, { path: '/internal/prom' })).status).toBe(200);
    expect((await fetch(`${base}/metrics`)).status).toBe(404);
    expect((await fetch(`${base}/internal/prom/x`)).status).toBe(404);
    const post = await fetch(`${base}/internal/prom`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    const head = await fetch(`${base}/internal/prom`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toContain('text/plain');
    expect(await head.text()).toBe('');
  });

  it('stops with the broker', async () => {
    broker = await startBroker({ config: { metrics: { enabled: true, port: 0 } } });
    const address = metricsAddress(broker);
    expect((await scrape(address)).status).toBe(200);
    await broker.stop();
    broker = undefined;
    await expect(scrape(address)).rejects.toThrow();
  });
});
