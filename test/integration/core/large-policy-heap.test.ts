import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';

function policyWith(rules: number): string {
  const list: Record<string, unknown>[] = [{ name: 'anyone-connects', allow: 'connect', subjects: 'all' }];
  for (let i = 0; list.length < rules - 1; i++)
    list.push({
      name: `tenant-${i}`,
      allow: ['publish', 'subscribe'],
      subjects: { users: [`u${i}`] },
      topics: [`t/${i}/#`],
    });
  list.push({ name: 'open', allow: ['publish', 'subscribe', 'receive'], subjects: 'all', topics: ['open/#'] });
  const file = join(mkdtempSync(join(tmpdir(), 'bulwark-large-policy-')), 'policy.yaml');
  writeFileSync(file, stringify({ version: 1, rules: list }));
  return file;
}

/** A large policy is followed by one full collection (src/compact-heap.ts); a small one is not. */
describe('heap compaction after a large policy is loaded', () => {
  let broker: TestBroker | undefined;
  afterEach(async () => {
    await broker?.stop();
    broker = undefined;
  });

  const compactions = (b: TestBroker): Record<string, unknown>[] =>
    b.logs.filter((l) => l['msg'] === 'heap compacted after loading a large policy');

  it('compacts once after a 1,000-rule policy is loaded, and the policy is in force', async () => {
    broker = await startBroker({ config: { authorization: { policy_files: [policyWith(1_000)] } } });
    expect(compactions(broker)).toEqual([expect.objectContaining({ rules: 1_000, ms: expect.any(Number) })]);
    const client = await mqtt.connectAsync(broker.url, { clientId: 'large-policy', protocolVersion: 5 });
    expect((await client.subscribeAsync('open/a', { qos: 0 }))[0]!.qos).toBe(0);
    await expect(client.subscribeAsync('closed/a', { qos: 0 })).rejects.toThrow(/Not authorized/);
    await client.endAsync();
  });

  it('does not run a full collection for a small policy', async () => {
    broker = await startBroker({ config: { authorization: { policy_files: [policyWith(10)] } } });
    expect(compactions(broker)).toEqual([]);
  });
});
