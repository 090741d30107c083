import { describe, expect, it } from 'vitest';
import { ConnectOutcomes, MAX_CONNECT_OUTCOME_KEYS, OTHER_AUTHENTICATOR } from '../../../src/sys/connect-outcomes.js';

describe('ConnectOutcomes', () => {
  it('counts by authenticator and by reason and deciding step', () => {
    const outcomes = new ConnectOutcomes();
    outcomes.allowed('ldap');
    outcomes.allowed('ldap');
    outcomes.allowed('anonymous');
    outcomes.denied('badUserNameOrPassword', 'ldap');
    outcomes.denied('banned', undefined);
    outcomes.denied('banned', undefined);
    expect([...outcomes.allowedCounts()]).toEqual([
      ['ldap', 2],
      ['anonymous', 1],
    ]);
    expect([...outcomes.deniedCounts()]).toEqual([
      { reason: 'badUserNameOrPassword', authenticator: 'ldap', count: 1 },
      { reason: 'banned', authenticator: '', count: 2 },
    ]);
  });

  it('keeps a bounded number of label pairs: names past the bound share one `other` entry', () => {
    const outcomes = new ConnectOutcomes();
    for (let i = 0; i < MAX_CONNECT_OUTCOME_KEYS + 50; i++) {
      outcomes.allowed(`step-${i}`);
      outcomes.denied('notAuthorized', `step-${i}`);
    }
    expect(outcomes.allowedCounts().size).toBe(MAX_CONNECT_OUTCOME_KEYS + 1);
    expect(outcomes.allowedCounts().get(OTHER_AUTHENTICATOR)).toBe(50);
    const denied = [...outcomes.deniedCounts()];
    expect(denied).toHaveLength(MAX_CONNECT_OUTCOME_KEYS + 1);
    expect(denied.find((d) => d.authenticator === OTHER_AUTHENTICATOR)?.count).toBe(50);
    // A name already counted keeps its own entry.
    outcomes.allowed('step-0');
    expect(outcomes.allowedCounts().get('step-0')).toBe(2);
  });
});
