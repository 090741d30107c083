import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Connection } from '../../../src/connection/connection.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';

/** What an idle connection keeps: no secret, and no collection it has not used yet. */
describe('an established connection', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker();
  });
  afterAll(async () => broker.stop());

  const connectionOf = (clientId: string): Connection => {
    const found = [...broker.server.broker.connections].find((c) => c.clientId === clientId);
    if (!found) throw new Error(`no connection for ${clientId}`);
    return found;
  };

  it('no longer holds the CONNECT password once connected', async () => {
    const client = await mqtt.connectAsync(broker.url, {
      clientId: 'pw-holder',
      username: 'someone',
      password: 'do-not-keep-me',
      protocolVersion: 4,
    });
    const connection = connectionOf('pw-holder');
    expect(connection.attempt?.username).toBe('someone');
    expect(connection.attempt?.password).toBeUndefined();
    await client.endAsync();
  });

  it('still works as a full session after its lazily created collections come into use', async () => {
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'lazy-sub', protocolVersion: 5 });
    const session = connectionOf('lazy-sub').session!;
    await sub.subscribeAsync('lazy/+', { qos: 2 });
    expect([...session.subscriptions.keys()]).toEqual(['lazy/+']);
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'lazy-pub', protocolVersion: 5 });
    const got = new Promise<string>((resolve) => sub.on('message', (_t, p) => resolve(p.toString())));
    await pub.publishAsync('lazy/a', 'exactly once', { qos: 2 });
    expect(await got).toBe('exactly once');
    await pub.endAsync();
    await sub.endAsync();
  });
});
