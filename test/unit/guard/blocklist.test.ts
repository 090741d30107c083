import { describe, expect, it } from 'vitest';
import { Blocklist, matchesClient, type BanKind, type GuardClient } from '../../../src/guard/blocklist.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const FINGERPRINT = 'ab'.repeat(32);

function list(limits: Partial<ConstructorParameters<typeof Blocklist>[0]> = {}): Blocklist {
  return new Blocklist({ maxEntries: 1000, maxRegexEntries: 8, maxRegexLength: 256, ...limits });
}

function ban(bl: Blocklist, kind: BanKind, value: string, until: number | null = null, by = 'cli:0@unix-socket') {
  const result = bl.add({ kind, value, by, reason: 'test', until }, T0);
  if (result.kind !== 'added') throw new Error(`not added: ${result.reason}`);
  return result.entry;
}

const base: GuardClient = { clientId: 'sensor-1', username: 'alice', address: '198.51.100.20' };

describe('block list matching', () => {
  it.each<[BanKind, string, GuardClient, GuardClient]>([
    ['client_id', 'sensor-1', base, { ...base, clientId: 'sensor-2' }],
    ['username', 'alice', base, { ...base, username: 'bob' }],
    ['address', '198.51.100.20', base, { ...base, address: '198.51.100.21' }],
    [
      'address',
      '198.51.100.20',
      { ...base, address: '::ffff:198.51.100.20' },
      { ...base, address: '::ffff:198.51.100.21' },
    ],
    ['address', '2001:DB8::0:1', { ...base, address: '2001:db8::1' }, { ...base, address: '2001:db8::2' }],
    ['cidr', '198.51.100.0/24', { ...base, address: '198.51.100.250' }, { ...base, address: '198.51.101.1' }],
    [
      'cidr',
      '2001:db8:ab00::/40',
      { ...base, address: '2001:db8:abff:1::7' },
      { ...base, address: '2001:db8:ac00::1' },
    ],
    ['cidr', '0.0.0.0/0', { ...base, address: '::ffff:203.0.113.5' }, { ...base, address: '2001:db8::1' }],
    ['client_id_regex', '^scanner-\\d+$', { ...base, clientId: 'scanner-42' }, { ...base, clientId: 'my-scanner-42' }],
    ['username_regex', '^guest', { ...base, username: 'guest17' }, { ...base, username: undefined }],
    [
      'fingerprint',
      FINGERPRINT,
      { ...base, certFingerprint: FINGERPRINT.toUpperCase().match(/../g)?.join(':') },
      { ...base, certFingerprint: 'cd'.repeat(32) },
    ],
    ['jwt_sub', 'user|42', { ...base, jwtSubject: 'user|42' }, { ...base, jwtSubject: 'user|43' }],
  ])('a %s entry %s matches its client and not a neighbour', (kind, value, hit, miss) => {
    const bl = list();
    const entry = ban(bl, kind, value);
    expect(bl.check(hit, T0)?.kind).toBe(kind);
    expect(bl.check(miss, T0)).toBeUndefined();
    expect(matchesClient(entry, hit, T0)).toBe(true);
    expect(matchesClient(entry, miss, T0)).toBe(false);
  });

  it('normalises values so the same ban written differently is one entry', () => {
    const bl = list();
    ban(bl, 'address', '::ffff:192.0.2.1');
    ban(bl, 'address', '192.0.2.1');
    ban(bl, 'cidr', '10.9.9.9/8');
    ban(bl, 'fingerprint', FINGERPRINT);
    ban(bl, 'fingerprint', FINGERPRINT.toUpperCase().match(/../g)?.join(':') ?? '');
    expect(bl.list().map((e) => `${e.kind}=${e.value}`)).toEqual([
      'address=192.0.2.1',
      'cidr=10.0.0.0/8',
      `fingerprint=${FINGERPRINT.toUpperCase().match(/../g)?.join(':')}`,
    ]);
  });

  it('ignores an expired entry before the purge removes it', () => {
    const bl = list();
    ban(bl, 'client_id', 'sensor-1', T0 + 60_000);
    expect(bl.check(base, T0 + 59_999)).toBeDefined();
    expect(bl.check(base, T0 + 60_000)).toBeUndefined();
    expect(bl.size).toBe(1);
  });

  it('purges exactly the expired entries and removes them from every index', () => {
    const bl = list();
    ban(bl, 'cidr', '198.51.100.0/24', T0 + 1000);
    ban(bl, 'client_id_regex', '^sensor', T0 + 1000);
    ban(bl, 'username', 'alice', null);
    const purged = bl.purgeExpired(T0 + 1000);
    expect(purged.map((e) => e.kind).sort()).toEqual(['cidr', 'client_id_regex']);
    expect(bl.list().map((e) => e.kind)).toEqual(['username']);
    expect(bl.regexCount).toBe(0);
    expect(bl.check({ ...base, username: 'carol' }, T0)).toBeUndefined();
  });

  it('refuses invalid values, backtracking-prone patterns and bans already over', () => {
    const bl = list();
    const reasons = [
      bl.add({ kind: 'address', value: 'not-an-ip', by: 'x', reason: '', until: null }, T0),
      bl.add({ kind: 'cidr', value: '10.0.0.0/40', by: 'x', reason: '', until: null }, T0),
      bl.add({ kind: 'client_id_regex', value: '(a+)+$', by: 'x', reason: '', until: null }, T0),
      bl.add({ kind: 'fingerprint', value: 'abcd', by: 'x', reason: '', until: null }, T0),
      bl.add({ kind: 'username', value: 'bob', by: 'x', reason: '', until: T0 }, T0),
    ];
    expect(reasons.every((r) => r.kind === 'rejected')).toBe(true);
    expect(bl.size).toBe(0);
  });

  it('bounds the number of regular expressions', () => {
    const bl = list({ maxRegexEntries: 2 });
    ban(bl, 'client_id_regex', '^a');
    ban(bl, 'username_regex', '^b');
    const third = bl.add({ kind: 'client_id_regex', value: '^c', by: 'x', reason: '', until: null }, T0);
    expect(third.kind).toBe('rejected');
    // Replacing an existing pattern does not count as a new one.
    expect(bl.add({ kind: 'client_id_regex', value: '^a', by: 'y', reason: 'again', until: null }, T0).kind).toBe(
      'added',
    );
  });

  it('when full, evicts the automatic ban ending soonest and never an operator ban', () => {
    const bl = list({ maxEntries: 3 });
    ban(bl, 'username', 'manual', null);
    ban(bl, 'client_id', 'auto-late', T0 + 10_000, 'guard:flapping');
    ban(bl, 'client_id', 'auto-soon', T0 + 5_000, 'guard:flapping');
    const added = bl.add({ kind: 'address', value: '192.0.2.9', by: 'cli:0@unix-socket', reason: '', until: null }, T0);
    expect(added.kind === 'added' && added.evicted?.value).toBe('auto-soon');
    ban(bl, 'client_id', 'auto-new', T0 + 1_000, 'guard:flapping');
    expect(
      bl
        .list()
        .map((e) => e.value)
        .sort(),
    ).toEqual(['192.0.2.9', 'auto-new', 'manual']);
    const full = list({ maxEntries: 1 });
    ban(full, 'username', 'manual', null);
    expect(
      full.add({ kind: 'username', value: 'other', by: 'guard:flapping', reason: '', until: T0 + 1 }, T0).kind,
    ).toBe('rejected');
  });

  it('removes by the same normalised value it stored', () => {
    const bl = list();
    ban(bl, 'cidr', '2001:db8::/32');
    expect(bl.remove('cidr', '2001:0DB8:0000::/32')?.value).toBe('2001:db8::/32');
    expect(bl.check({ ...base, address: '2001:db8::1' }, T0)).toBeUndefined();
    expect(bl.remove('cidr', '2001:db8::/32')).toBeUndefined();
  });
});
