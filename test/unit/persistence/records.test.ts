import { describe, expect, it } from 'vitest';
import type { Identity } from '../../../authn/types.js';
import { willFromRecord, willRecord, type WillRecord } from '../../../src/persistence/records.js';
import type { PendingWill } from '../../../src/session/session.js';

const identity: Identity = {
  clientId: 'gw-7',
  username: 'gw-7',
  groups: ['gateways', 'plant-7'],
  attributes: { 'cert.cn': 'gw-7', 'cert.ou': 'plant-7' },
  superuser: false,
  anonymous: false,
  authenticator: 'x509',
  expiresAt: 1_900_000_000_000,
  aclRules: [{ name: 'from-the-token', allow: 'publish', topics: ['gw/#'] }],
};

const will: PendingWill = {
  message: {
    topic: 'gw/7/status',
    payload: Buffer.from('offline'),
    qos: 1,
    retain: true,
    properties: undefined,
    expiresAt: undefined,
    publisherId: 'gw-7',
  },
  delaySeconds: 30,
  expirySeconds: 60,
  timer: undefined,
  authorizedFor: { identity, listener: 'mqtts-devices', peerAddress: '10.1.2.3', claimedUsername: 'gw-7-user' },
};

describe('will records', () => {
  it('keep every identity field a policy matches on, the listener and the peer address', () => {
    const back = willFromRecord(JSON.parse(JSON.stringify(willRecord(will))) as WillRecord);
    const { expiresAt: _expiresAt, aclRules: _aclRules, ...matchable } = identity;
    expect(back.authorizedFor).toEqual({
      identity: matchable,
      listener: 'mqtts-devices',
      peerAddress: '10.1.2.3',
      claimedUsername: 'gw-7-user',
    });
    expect(back.delaySeconds).toBe(30);
    expect(back.expirySeconds).toBe(60);
    expect(back.message.topic).toBe('gw/7/status');
  });

  it('keep neither the credential expiry nor an ACL claim carried by the token', () => {
    const text = JSON.stringify(willRecord(will));
    expect(text).not.toContain('from-the-token');
    expect(text).not.toContain('1900000000000');
  });

  it('keep an anonymous identity without a username', () => {
    const anonymous: PendingWill = {
      ...will,
      authorizedFor: {
        identity: { ...identity, username: undefined, anonymous: true, groups: [], attributes: {} },
        listener: 'local',
        peerAddress: '127.0.0.1',
        claimedUsername: undefined,
      },
    };
    const back = willFromRecord(JSON.parse(JSON.stringify(willRecord(anonymous))) as WillRecord);
    expect(back.authorizedFor?.identity.username).toBeUndefined();
    expect(back.authorizedFor?.identity.anonymous).toBe(true);
    expect(back.authorizedFor?.identity.groups).toEqual([]);
  });

  it('read a record written before identities were kept as a will with no identity to check', () => {
    const old: WillRecord = {
      m: { t: 'gw/7/status', p: Buffer.from('offline').toString('base64'), q: 1, r: true },
      d: 5,
    };
    const back = willFromRecord(old);
    expect(back.authorizedFor).toBeUndefined();
    expect(back.message.payload.toString()).toBe('offline');
  });
});
