import { afterEach, describe, expect, it } from 'vitest';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';
import { PacketLog, subscribeCodes } from '../../helpers/packet-log.js';
import { startPolicyBroker, type PolicyBroker } from '../../helpers/policy-broker.js';

const POLICY = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about topic rules; every client may connect.

  - name: producers-write-jobs
    allow: publish
    subjects: { clients: ['producer-*'] }
    topics: ['jobs/#']

  - name: workers-share-jobs
    allow: [subscribe, receive]
    subjects: { clients: ['worker-*'] }
    topics: ['jobs/#']
    when: { shared: true }
    why: Each job goes to one worker; a plain subscription would make every worker run it.

  - name: no-unshared-job-feeds
    deny: subscribe
    subjects: { clients: ['worker-*'] }
    topics: ['jobs/#']
    when: { shared: false }

  - name: workers-receive-jobs
    allow: receive
    subjects: { clients: ['worker-*'] }
    topics: ['jobs/#']
`;

describe('shared subscriptions with a `shared` condition', () => {
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

  it.each([
    [5, 0x87],
    [4, 0x80],
  ] as const)(
    'grants $share/group/jobs/# and refuses plain jobs/# in one SUBSCRIBE (MQTT %i)',
    async (version, refused) => {
      pb = await startPolicyBroker({ policy: POLICY });
      const worker = await connect(`worker-v${version}`, version);
      const codes = await subscribeCodes(worker.client, new PacketLog(worker.client), {
        '$share/workers/jobs/#': { qos: 1 },
        'jobs/#': { qos: 1 },
      });
      expect(codes).toEqual([1, refused]);
      const audit = await pb.broker.waitForAudit('authz.subscribe_denied');
      expect(audit.mqtt?.topic).toBe('jobs/#');
      expect(audit.authz?.rule).toBe(pb.rule('no-unshared-job-feeds'));
      const session = pb.broker.server.broker.sessions.get(`worker-v${version}`)!;
      expect([...session.subscriptions.keys()]).toEqual(['$share/workers/jobs/#']);
    },
  );

  it('delivers each job to exactly one worker of the group', async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    const workers = [await connect('worker-a'), await connect('worker-b', 4)];
    for (const w of workers) await w.client.subscribeAsync('$share/workers/jobs/#', { qos: 1 });
    const producer = await connect('producer-1');
    const jobs = ['jobs/1', 'jobs/2', 'jobs/3', 'jobs/4', 'jobs/5', 'jobs/6'];
    for (const topic of jobs) await producer.client.publishAsync(topic, topic, { qos: 1 });
    const total = (): number => workers.reduce((n, w) => n + w.received.messages.length, 0);
    await Promise.race(workers.map((w) => w.received.until(() => total() >= jobs.length, 'all jobs')));
    const seen = workers.flatMap((w) => w.received.messages.map((m) => m.topic)).sort();
    expect(seen).toEqual(jobs);
  });

  it('refuses a shared subscription to clients the rule does not name', async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    const stranger = await connect('stranger');
    expect(
      await subscribeCodes(stranger.client, new PacketLog(stranger.client), { '$share/workers/jobs/#': { qos: 1 } }),
    ).toEqual([0x87]);
    const audit = await pb.broker.waitForAudit('authz.subscribe_denied');
    expect(audit.mqtt?.topic).toBe('$share/workers/jobs/#');
    expect(audit.authz?.rule).toBe('default-deny');
  });
});
