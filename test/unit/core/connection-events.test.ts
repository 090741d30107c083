import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../audit/canonical.js';
import type { AuthzDecision } from '../../../authz/types.js';
import { connectionEvent, topicDecisionEvent, type ConnectionFacts } from '../../../src/connection-events.js';

/** A connection whose CONNECT sent `username`, verified as `identity` (by default: as that username). */
const connection = (
  username: string | undefined,
  identity: ConnectionFacts['identity'] = username === undefined ? undefined : { username },
): ConnectionFacts => ({
  peer: { address: '192.0.2.7', port: 50123 },
  username,
  identity,
  clientId: 'sensor-1',
  listener: { name: 'tcp' },
  protocolVersion: 5,
});

const allowed: AuthzDecision = {
  allowed: true,
  reason: 'rule matched',
  rule: { name: 'sensors-publish', location: 'policies/a.yaml:12', source: 'policies/a.yaml' },
};
const denied: AuthzDecision = { allowed: false, reason: 'no rule matched (default deny)' };

describe('connection audit events', () => {
  it('name the peer, user, client id, listener and protocol, and the topic, QoS and deciding rule', () => {
    const e = topicDecisionEvent(
      connection('alice'),
      'authz.publish_allowed',
      'publish',
      'site/1/temp',
      1,
      false,
      allowed,
    );
    expect(e).toEqual({
      event: { action: 'authz.publish_allowed', outcome: 'success', reason: 'rule matched' },
      client: { ip: '192.0.2.7', port: 50123 },
      user: { name: 'alice' },
      mqtt: {
        client_id: 'sensor-1',
        listener: 'tcp',
        protocol_version: 5,
        qos: 1,
        retain: false,
        topic: 'site/1/temp',
        username: 'alice',
      },
      authz: {
        action: 'publish',
        rule: 'policies/a.yaml:12',
        rule_name: 'sensors-publish',
        source: 'policies/a.yaml',
      },
    });
    // An allowed decision was not answered with a code of its own: none is recorded.
    expect(e.mqtt.reason_code).toBeUndefined();
    expect(
      topicDecisionEvent(connection(undefined), 'authz.publish_denied', 'publish', 't', 1, true, denied, 0x87),
    ).toMatchObject({
      event: { code: 'notAuthorized', outcome: 'failure' },
      mqtt: { qos: 1, reason_code: 0x87, retain: true, topic: 't' },
      authz: { action: 'publish', rule: 'default-deny' },
    });
  });

  it.each([
    ['an anonymous client that sent a username', connection('admin', { username: undefined })],
    ['a client refused before it was verified', { ...connection('admin'), identity: undefined }],
  ])('never name the unverified username of %s as user.name, only as mqtt.username', (_what, facts) => {
    for (const e of [
      connectionEvent(facts, { action: 'client.disconnected', outcome: 'success' }),
      connectionEvent(facts, { action: 'authz.connect_denied', outcome: 'failure' }, 0x87),
      topicDecisionEvent(facts, 'authz.publish_denied', 'publish', 'a/x', 1, false, denied, 0x87),
      topicDecisionEvent(facts, 'authz.subscribe_denied', 'subscribe', 'a/#', 0, undefined, denied, 0x87),
    ]) {
      expect(e.user).toBeUndefined();
      expect(e.mqtt.username).toBe('admin');
    }
  });

  it('name the identity a certificate or token verified, and keep the CONNECT username apart', () => {
    const facts = connection('spoofed', { username: 'device-7' });
    for (const e of [
      connectionEvent(facts, { action: 'client.disconnected', outcome: 'success' }),
      topicDecisionEvent(facts, 'authz.receive_denied', 'receive', 'a/x', 1, true, denied),
    ]) {
      expect(e.user).toEqual({ name: 'device-7' });
      expect(e.mqtt.username).toBe('spoofed');
    }
    // No CONNECT username at all: no mqtt.username member either.
    expect(
      connectionEvent(connection(undefined, { username: 'device-7' }), {
        action: 'client.disconnected',
        outcome: 'success',
      }).mqtt,
    ).toEqual({
      client_id: 'sensor-1',
      listener: 'tcp',
      protocol_version: 5,
    });
  });

  it('are built in canonical member order, so the audit writer serialises each member with one JSON.stringify', () => {
    const events = [
      connectionEvent(connection('alice'), { action: 'client.disconnected', outcome: 'success', reason: 'x' }),
      connectionEvent(connection(undefined), { action: 'client.disconnected', outcome: 'success' }),
      topicDecisionEvent(connection('alice'), 'authz.publish_allowed', 'publish', 'site/1/temp', 1, false, allowed),
      topicDecisionEvent(
        connection('bob'),
        'authz.subscribe_denied',
        'subscribe',
        'site/#',
        2,
        undefined,
        denied,
        0x87,
      ),
      topicDecisionEvent(connection('bob'), 'authz.publish_denied', 'publish', 'site/1', 1, true, denied, 0x87),
      topicDecisionEvent(
        connection('admin', { username: undefined }),
        'authz.publish_denied',
        'publish',
        't',
        0,
        false,
        denied,
      ),
      connectionEvent(connection('eve'), { action: 'authz.connect_denied', outcome: 'failure' }, 0x87),
    ];
    for (const e of events) {
      for (const member of Object.values(e)) {
        if (member !== undefined) expect(JSON.stringify(member)).toBe(canonicalJson(member));
      }
    }
  });
});
