import { afterEach, describe, expect, it } from 'vitest';
import type { AccessRequest } from '../../../authz/types.js';
import {
  connectClient,
  endAll,
  rawConnect,
  rawPublish,
  rawSubscribe,
  type Connected,
} from '../../helpers/mqtt-clients.js';
import type { RawClient } from '../../helpers/raw-client.js';
import { startPolicyBroker, type PolicyBroker } from '../../helpers/policy-broker.js';

const POLICY = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about receive rules; every client may connect.

  - name: write-and-subscribe-in-r-and-m
    allow: [publish, subscribe]
    subjects: all
    topics: ['r/#', 'm/#']

  - name: read-r-and-m
    allow: receive
    subjects: all
    topics: ['r/#', 'm/#']

  - name: secrets-not-readable
    deny: receive
    subjects: { clients: ['reader-*'] }
    topics: ['r/secret/#']
`;

/** The same policy, tightened: keepers may no longer read secrets either. */
const KEEPERS_LOSE_SECRETS = POLICY.replace("clients: ['reader-*']", "clients: ['reader-*', 'keeper-*']");

/** The same policy without the right to subscribe to r/#: subscriptions to it are revoked. */
const NO_SUBSCRIBE_IN_R = POLICY.replace(
  "topics: ['r/#', 'm/#']\n\n  - name: read",
  "topics: ['m/#']\n\n  - name: read",
);

describe('receive rules on live deliveries (check_receive_on_delivery, on by default)', () => {
  let pb: PolicyBroker | undefined;
  const clients: Connected[] = [];
  const raws: RawClient[] = [];
  afterEach(async () => {
    await endAll(...clients.splice(0).map((c) => c.client), ...raws.splice(0));
    await pb?.stop();
    pb = undefined;
  });

  async function connect(clientId: string): Promise<Connected> {
    const c = await connectClient(pb!.broker.url, { clientId, protocolVersion: 5 });
    clients.push(c);
    return c;
  }

  async function raw(clientId: string, receiveMaximum?: number): Promise<RawClient> {
    const extra = receiveMaximum === undefined ? {} : { properties: { receiveMaximum } };
    const { client, connack } = await rawConnect(pb!.broker.port, clientId, 5, extra);
    expect(connack.reasonCode).toBe(0);
    raws.push(client);
    return client;
  }

  function receiveDenials(clientId: string): string[] {
    return pb!.broker.audit.events
      .filter((e) => e.event.action === 'authz.receive_denied' && e.mqtt?.client_id === clientId)
      .map((e) => String(e.mqtt?.topic));
  }

  /** Counts the broker's `receive` checks per client id, from here on. */
  function countReceiveChecks(): Map<string, number> {
    const counts = new Map<string, number>();
    const authorizer = pb!.broker.server.broker.authorizer;
    const check = authorizer.check.bind(authorizer);
    authorizer.check = (request: AccessRequest) => {
      if (request.action === 'receive') {
        const id = request.identity.clientId;
        counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      return check(request);
    };
    return counts;
  }

  it('withholds a live delivery the policy does not let the subscriber receive, and audits it (default)', async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    const reader = await connect('reader-live');
    await reader.client.subscribeAsync('r/#', { qos: 1 });
    const writer = await connect('writer');
    await writer.client.publishAsync('r/secret/live', 'live secret', { qos: 1 });
    await writer.client.publishAsync('r/public/live', 'live public', { qos: 1 });
    await reader.received.waitForTopic('r/public/live');
    expect(reader.received.on('r/secret/live')).toEqual([]);
    const audit = await pb.broker.waitForAudit('authz.receive_denied');
    expect(audit.mqtt?.topic).toBe('r/secret/live');
    expect(audit.mqtt?.client_id).toBe('reader-live');
    expect(audit.authz?.rule).toBe(pb.rule('secrets-not-readable'));
    // The question asked (receive, of a live, unretained delivery); the client was told nothing.
    expect(audit.authz?.action).toBe('receive');
    expect(audit.mqtt?.retain).toBe(false);
    expect(audit.mqtt?.reason_code).toBeUndefined();
  });

  it('checks each delivery only where the policy does not allow the whole filter', async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    // keeper-1 may receive everything under r/#: its deliveries need no check of their own.
    const keeper = await connect('keeper-1');
    await keeper.client.subscribeAsync('r/#', { qos: 1 });
    // reader-1 may not receive r/secret/#: each of its deliveries under r/# is checked.
    const reader = await connect('reader-1');
    await reader.client.subscribeAsync('r/#', { qos: 1 });
    const checks = countReceiveChecks();
    const writer = await connect('writer');
    for (let i = 0; i < 5; i++) await writer.client.publishAsync(`r/public/${i}`, 'x', { qos: 1 });
    await writer.client.publishAsync('r/secret/s', 'x', { qos: 1 });
    await keeper.received.waitForTopic('r/secret/s');
    await reader.received.waitForTopic('r/public/4');
    await pb.broker.waitForAudit('authz.receive_denied');
    expect(keeper.received.messages.length).toBe(6);
    expect(checks.get('keeper-1') ?? 0).toBe(0);
    expect(checks.get('reader-1')).toBe(6);
    expect(reader.received.on('r/secret/s')).toEqual([]);
  });

  it('holds back what is already queued for a connected client when a reload tightens receive', async () => {
    pb = await startPolicyBroker({ policy: POLICY, authorization: { watch: true, reload_debounce_ms: 20 } });
    // A window of one: the first message waits for its PUBACK, the rest wait in the session's queue.
    const keeper = await raw('keeper-q', 1);
    expect(
      (
        await rawSubscribe(keeper, 5, 1, [
          { topic: 'r/#', qos: 1 },
          { topic: 'm/#', qos: 1 },
        ])
      ).granted,
    ).toEqual([1, 1]);
    const writer = await connect('writer');
    for (let i = 1; i <= 4; i++) await writer.client.publishAsync(`r/secret/${i}`, 'x', { qos: 1 });
    const first = await keeper.next('publish');
    expect(first.topic).toBe('r/secret/1');
    pb.rewrite(KEEPERS_LOSE_SECRETS);
    await pb.broker.waitForAudit('policy.reloaded', (e) => e.labels?.trigger === 'watch');
    await writer.client.publishAsync('m/marker', 'x', { qos: 1 });
    keeper.send({ cmd: 'puback', messageId: first.messageId }, 5);
    // The queue is first in, first out: anything still queued for r/secret would come before the marker.
    const next = await keeper.next('publish');
    expect(next.topic).toBe('m/marker');
    expect(receiveDenials('keeper-q').sort()).toEqual(['r/secret/2', 'r/secret/3', 'r/secret/4']);
    const denial = pb.broker.audit.events.find((e) => e.event.action === 'authz.receive_denied');
    expect(denial?.authz?.rule).toBe(pb.rule('secrets-not-readable'));
  });

  it('drops what only a revoked subscription brought when a reload takes the subscription away', async () => {
    pb = await startPolicyBroker({ policy: POLICY, authorization: { watch: true, reload_debounce_ms: 20 } });
    const keeper = await raw('keeper-r', 1);
    await rawSubscribe(keeper, 5, 1, [
      { topic: 'r/#', qos: 1 },
      { topic: 'm/#', qos: 1 },
    ]);
    const writer = await connect('writer');
    for (let i = 1; i <= 4; i++) await writer.client.publishAsync(`r/public/${i}`, 'x', { qos: 1 });
    const first = await keeper.next('publish');
    pb.rewrite(NO_SUBSCRIBE_IN_R);
    const revoked = await pb.broker.waitForAudit('authz.subscription_revoked');
    expect(revoked.mqtt?.topic).toBe('r/#');
    await writer.client.publishAsync('m/marker', 'x', { qos: 1 });
    keeper.send({ cmd: 'puback', messageId: first.messageId }, 5);
    expect((await keeper.next('publish')).topic).toBe('m/marker');
  });

  it('checks a shared-subscription message handed to another member when the first one leaves', async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    // The keeper takes both secrets and never acknowledges them.
    const keeper = await raw('keeper-sh');
    await rawSubscribe(keeper, 5, 1, [{ topic: '$share/g/r/#', qos: 1 }]);
    const writer = await connect('writer');
    writer.client.publish('r/secret/1', 'x', { qos: 1 });
    writer.client.publish('r/secret/2', 'x', { qos: 1 });
    await keeper.next('publish');
    await keeper.next('publish');
    const reader = await connect('reader-sh');
    await reader.client.subscribeAsync('$share/g/r/#', { qos: 1 });
    keeper.end();
    await pb.broker.waitForAudit('authz.receive_denied', (e) => e.mqtt?.topic === 'r/secret/2');
    expect(receiveDenials('reader-sh').sort()).toEqual(['r/secret/1', 'r/secret/2']);
    await writer.client.publishAsync('r/public/after', 'x', { qos: 1 });
    await reader.received.waitForTopic('r/public/after');
    expect(reader.received.messages.map((m) => m.topic)).toEqual(['r/public/after']);
  });

  it('a raw QoS 0 publish reaches a keeper without a check and is withheld from a reader', async () => {
    pb = await startPolicyBroker({ policy: POLICY });
    const keeper = await connect('keeper-0');
    await keeper.client.subscribeAsync('r/secret/#', { qos: 0 });
    const reader = await connect('reader-0');
    await reader.client.subscribeAsync('r/#', { qos: 0 });
    const checks = countReceiveChecks();
    const writer = await raw('writer-raw');
    writer.send(rawPublish('r/secret/q0', 'x', 0), 5);
    writer.send(rawPublish('r/public/q0', 'x', 0), 5);
    await keeper.received.waitForTopic('r/secret/q0');
    await reader.received.waitForTopic('r/public/q0');
    expect(reader.received.on('r/secret/q0')).toEqual([]);
    expect(checks.get('keeper-0') ?? 0).toBe(0);
  });
});
