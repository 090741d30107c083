import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';
import { PacketLog, publishNoWait } from '../../helpers/packet-log.js';
import { startPolicyBroker, type PolicyBroker } from '../../helpers/policy-broker.js';
import { BASE, WITH_BETA, WITHOUT_NEWS_READERS } from './reload-policies.js';

describe('policy reload on file change', () => {
  let pb: PolicyBroker | undefined;
  const clients: Connected[] = [];
  afterEach(async () => {
    await endAll(...clients.splice(0).map((c) => c.client));
    await pb?.stop();
    pb = undefined;
  });

  async function start(): Promise<PolicyBroker> {
    pb = await startPolicyBroker({ policy: BASE, authorization: { watch: true, reload_debounce_ms: 20 } });
    return pb;
  }

  async function connect(clientId: string): Promise<Connected> {
    const c = await connectClient(pb!.broker.url, { clientId, protocolVersion: 5 });
    clients.push(c);
    return c;
  }

  /** The QoS 1 reason code the broker answers for a publish to `topic`. */
  async function publishCode(c: Connected, log: PacketLog, topic: string): Promise<number> {
    const id = await publishNoWait(c.client, topic, 'x', { qos: 1 });
    return (await log.ack('puback', id!)).reasonCode ?? 0;
  }

  function reloads(action: 'policy.reloaded' | 'policy.reload_failed'): AuditEvent[] {
    return pb!.broker.audit.events.filter((e) => e.event.action === action);
  }

  it('applies a new rule once the file changes, recording old and new hashes', async () => {
    await start();
    const c = await connect('beta-tester');
    const log = new PacketLog(c.client);
    expect(await publishCode(c, log, 'beta/x')).toBe(0x87);
    const startup = reloads('policy.reloaded');
    pb!.rewrite(WITH_BETA);
    const reloaded = await pb!.broker.waitForAudit('policy.reloaded', (e) => e.labels?.trigger === 'watch');
    expect(reloaded.policy?.old_hash).toBe(startup[0]?.policy?.new_hash);
    expect(reloaded.policy?.new_hash).not.toBe(reloaded.policy?.old_hash);
    expect(await publishCode(c, log, 'beta/x')).toBe(0);
  });

  it('keeps the running policy when the new file has a YAML syntax error, naming file:line:column', async () => {
    await start();
    const c = await connect('syntax');
    const log = new PacketLog(c.client);
    // Line 8 opens a flow sequence that never closes.
    const broken = WITH_BETA.replace("topics: ['open/#']", "topics: ['open/#'");
    pb!.rewrite(broken);
    const failed = await pb!.broker.waitForAudit('policy.reload_failed');
    expect(failed.policy?.error).toMatch(new RegExp(`^${escape(pb!.policyFile)}:\\d+:\\d+: error: `));
    expect(failed.labels?.trigger).toBe('watch');
    const log2 = await pb!.broker.waitForLog((l) => l.event === 'policy.reload_failed');
    expect(String((log2.errors as string[])[0])).toMatch(new RegExp(`^${escape(pb!.policyFile)}:\\d+:\\d+:`));
    // Old policy: beta still closed, open still open.
    expect(await publishCode(c, log, 'beta/x')).toBe(0x87);
    expect(await publishCode(c, log, 'open/x')).toBe(0);
    expect(reloads('policy.reloaded').map((e) => e.labels?.trigger)).toEqual(['startup']);
  });

  it('keeps the running policy when a rule has an unknown key, pointing at that key', async () => {
    await start();
    const c = await connect('typo');
    const log = new PacketLog(c.client);
    const typo = WITH_BETA.replace(
      "    subjects: all\n    topics: ['beta/#']",
      "    subject: all\n    topics: ['beta/#']",
    );
    pb!.rewrite(typo);
    const line = typo.split('\n').findIndex((l) => l.startsWith('    subject: all')) + 1;
    const failed = await pb!.broker.waitForAudit('policy.reload_failed');
    expect(failed.policy?.error).toMatch(new RegExp(`^${escape(pb!.policyFile)}:${line}:5: error: .*subject`));
    expect(await publishCode(c, log, 'beta/x')).toBe(0x87);
  });

  it("keeps the running policy when one of the file's own cases fails, naming the case", async () => {
    await start();
    const c = await connect('cases');
    const log = new PacketLog(c.client);
    const withFailingCase = `${WITH_BETA}
cases:
  - name: the desk may not write to beta (but the new rule lets it)
    identity: { client: desk }
    publish: beta/anything
    expect: deny
`;
    pb!.rewrite(withFailingCase);
    const line = withFailingCase.split('\n').findIndex((l) => l.includes('- name: the desk may not')) + 1;
    const failed = await pb!.broker.waitForAudit('policy.reload_failed');
    expect(failed.policy?.error).toMatch(new RegExp(`^${escape(pb!.policyFile)}:${line}:\\d+: `));
    expect(await publishCode(c, log, 'beta/x')).toBe(0x87);
  });

  it('stops a live subscription the new policy no longer allows and records its revocation', async () => {
    await start();
    const reader = await connect('reader');
    await reader.client.subscribeAsync(['news/#', 'open/#'], { qos: 1 });
    const desk = await connect('desk');
    await desk.client.publishAsync('news/before', 'b', { qos: 1 });
    await reader.received.waitForTopic('news/before');

    pb!.rewrite(WITHOUT_NEWS_READERS);
    const revoked = await pb!.broker.waitForAudit('authz.subscription_revoked');
    expect(revoked.mqtt?.client_id).toBe('reader');
    expect(revoked.mqtt?.topic).toBe('news/#');
    const session = pb!.broker.server.broker.sessions.get('reader')!;
    expect([...session.subscriptions.keys()]).toEqual(['open/#']);

    await desk.client.publishAsync('news/after', 'a', { qos: 1 });
    await desk.client.publishAsync('open/marker', 'm', { qos: 1 });
    await reader.received.waitForTopic('open/marker');
    expect(reader.received.on('news/after')).toEqual([]);
    // And it cannot simply subscribe again.
    const [again] = await reader.client.subscribeAsync('news/#', { qos: 1 }).catch(() => [{ qos: 0x87 }]);
    expect(again!.qos).toBe(0x87);
  });

  it('revokes the subscription of a session that was offline during the swap, before it receives anything', async () => {
    await start();
    const options = {
      clientId: 'offline-reader',
      protocolVersion: 5 as const,
      clean: false,
      properties: { sessionExpiryInterval: 300 },
    };
    const first = await connectClient(pb!.broker.url, options);
    await first.client.subscribeAsync('news/#', { qos: 1 });
    await first.client.endAsync();
    pb!.rewrite(WITHOUT_NEWS_READERS);
    await pb!.broker.waitForAudit('policy.reloaded', (e) => e.labels?.trigger === 'watch');
    const desk = await connect('desk');
    await desk.client.publishAsync('news/while-away', 'w', { qos: 1 });
    const again = await connectClient(pb!.broker.url, options);
    clients.push(again);
    expect(again.connack.sessionPresent).toBe(true);
    await desk.client.publishAsync('news/after-return', 'r', { qos: 1 });
    // A later message the reader may get: once it arrives, the news messages would have arrived too.
    await again.client.subscribeAsync('open/#', { qos: 1 });
    await desk.client.publishAsync('open/marker', 'm2', { qos: 1 });
    await again.received.waitForTopic('open/marker');
    expect(again.received.messages.filter((m) => m.topic.startsWith('news/')).map((m) => m.topic)).toEqual([]);
    const session = pb!.broker.server.broker.sessions.get('offline-reader')!;
    expect([...session.subscriptions.keys()]).toEqual(['open/#']);
  });

  it('does not publish a will whose topic the policy stopped allowing after CONNECT', async () => {
    await start();
    const reader = await connect('reader');
    await reader.client.subscribeAsync(['news/#', 'open/#'], { qos: 1 });
    const desk = await connectClient(pb!.broker.url, {
      clientId: 'desk',
      protocolVersion: 5,
      will: { topic: 'news/desk-offline', payload: Buffer.from('desk gone'), qos: 1, retain: false },
    });
    clients.push(desk);
    pb!.rewrite(BASE.replace(/ {2}- name: news-desk[\s\S]*$/, ''));
    await pb!.broker.waitForAudit('policy.reloaded', (e) => e.labels?.trigger === 'watch');
    desk.client.stream.destroy();
    await pb!.broker.waitForAudit('client.disconnected', (e) => e.mqtt?.client_id === 'desk');
    const other = await connect('other');
    await other.client.publishAsync('open/marker', 'm', { qos: 1 });
    await reader.received.waitForTopic('open/marker');
    expect(reader.received.on('news/desk-offline')).toEqual([]);
  });

  it('records policy.reload_failed with trigger sighup when the broker is asked to reload a broken file', async () => {
    await start();
    // Watching is on; write and reload explicitly, as SIGHUP does (the watcher may fire too: both are rejected).
    pb!.rewrite('rules: [');
    await pb!.broker.server.reloadPolicy('sighup');
    const failed = await pb!.broker.waitForAudit('policy.reload_failed', (e) => e.labels?.trigger === 'sighup');
    expect(failed.policy?.error).toMatch(new RegExp(`^${escape(pb!.policyFile)}:1:\\d+: error: `));
    expect(failed.policy?.old_hash).toBe(reloads('policy.reloaded')[0]?.policy?.new_hash);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
