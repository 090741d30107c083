import { afterAll, describe, expect, it } from 'vitest';
import { caPem, deadline, login, made, make, searchLookup, service, slapd, SLAPD_SEED } from './fixtures.js';

const { alice, bob, carol, dave } = SLAPD_SEED.users;

afterAll(async () => {
  await Promise.all(made.map((a) => a.stop()));
});

describe.skipIf(!slapd)('ldap authenticator against a real slapd', () => {
  it('allows a user binding with the right password via the DN template', async () => {
    const outcome = await make().authenticate(login('alice', alice.password), deadline());
    expect(outcome).toMatchObject({
      kind: 'allow',
      identity: {
        username: 'alice',
        authenticator: 'ldap',
        attributes: { 'ldap.dn': `uid=alice,${SLAPD_SEED.peopleDn}` },
      },
    });
  });

  it('denies a wrong password with badUserNameOrPassword', async () => {
    const outcome = await make().authenticate(login('alice', 'not-her-password'), deadline());
    expect(outcome).toMatchObject({ kind: 'deny', reason: 'badUserNameOrPassword' });
  });

  it('denies a user the directory has locked', async () => {
    const outcome = await make().authenticate(login('dave', dave.password), deadline());
    expect(outcome).toMatchObject({ kind: 'deny', reason: 'badUserNameOrPassword' });
  });

  it('refuses an empty password without contacting the directory', async () => {
    // The URL points at a closed port: reaching the directory would throw instead of denying.
    const a = make({
      connection: {
        url: 'ldap://127.0.0.1:1',
        startTls: false,
        tls: {},
        connectTimeoutMs: 500,
        operationTimeoutMs: 500,
      },
    });
    expect(await a.authenticate(login('alice', ''), deadline())).toMatchObject({
      kind: 'deny',
      reason: 'badUserNameOrPassword',
    });
    await expect(a.authenticate(login('alice', alice.password), deadline())).rejects.toThrow();
  });

  it('ignores a CONNECT without username or password', async () => {
    const a = make();
    expect((await a.authenticate(login(undefined, 'x'), deadline())).kind).toBe('ignore');
    expect((await a.authenticate(login('alice', undefined), deadline())).kind).toBe('ignore');
  });

  it('finds the user with the service account, then binds as them (search-then-bind)', async () => {
    const a = make({ lookup: searchLookup, service, attributes: ['mail', 'departmentNumber'] });
    const outcome = await a.authenticate(login('bob', bob.password), deadline());
    expect(outcome).toMatchObject({
      kind: 'allow',
      identity: {
        attributes: {
          'ldap.dn': `uid=bob,${SLAPD_SEED.peopleDn}`,
          'ldap.mail': bob.mail,
          'ldap.departmentNumber': 'dept-bob',
        },
      },
    });
    expect(await a.authenticate(login('bob', 'wrong'), deadline())).toMatchObject({
      kind: 'deny',
      reason: 'badUserNameOrPassword',
    });
  });

  it('answers an unknown user with deny or ignore as configured', async () => {
    const deny = make({ lookup: searchLookup, service });
    const ignore = make({ lookup: searchLookup, service, userNotFound: 'ignore' });
    expect(await deny.authenticate(login('nobody', 'x'), deadline())).toMatchObject({
      kind: 'deny',
      reason: 'badUserNameOrPassword',
    });
    expect((await ignore.authenticate(login('nobody', 'x'), deadline())).kind).toBe('ignore');
  });

  const groupCases = [
    { schema: 'groupOfNames' as const, user: 'alice', groups: ['engineers', 'mqtt-admins'] },
    { schema: 'groupOfNames' as const, user: 'bob', groups: ['engineers'] },
    { schema: 'groupOfUniqueNames' as const, user: 'carol', groups: ['operators'] },
    { schema: 'posixGroup' as const, user: 'bob', groups: ['sensors'] },
    { schema: 'memberOf' as const, user: 'alice', groups: ['engineers', 'mqtt-admins'] },
  ];
  for (const c of groupCases) {
    for (const mode of ['search', 'bind'] as const) {
      it(`resolves ${c.schema} membership of ${c.user} into the identity's groups (${mode} mode)`, async () => {
        const a = make({
          ...(mode === 'search' ? { lookup: searchLookup, service } : {}),
          groups: {
            baseDn: SLAPD_SEED.groupsDn,
            schemas: [c.schema],
            nameAttribute: 'cn',
            filter: undefined,
            maxGroups: 50,
          },
        });
        const password = SLAPD_SEED.users[c.user as 'alice' | 'bob' | 'carol'].password;
        const outcome = await a.authenticate(login(c.user, password), deadline());
        expect(outcome.kind === 'allow' && outcome.identity.groups).toEqual(c.groups);
      });
    }
  }

  it('unites all schemas and marks members of the superuser group', async () => {
    const a = make({
      lookup: searchLookup,
      service,
      groups: {
        baseDn: SLAPD_SEED.groupsDn,
        schemas: ['groupOfNames', 'groupOfUniqueNames', 'posixGroup', 'memberOf'],
        nameAttribute: 'cn',
        filter: undefined,
        maxGroups: 50,
      },
      superuserGroup: 'mqtt-admins',
    });
    const al = await a.authenticate(login('alice', alice.password), deadline());
    const ca = await a.authenticate(login('carol', carol.password), deadline());
    expect(al.kind === 'allow' && [al.identity.groups, al.identity.superuser]).toEqual([
      ['engineers', 'mqtt-admins', 'operators'],
      true,
    ]);
    expect(ca.kind === 'allow' && [ca.identity.groups, ca.identity.superuser]).toEqual([
      ['operators', 'sensors'],
      false,
    ]);
  });

  it('authenticates over LDAPS with the configured CA and fails without it', async () => {
    const url = slapd?.ldapsUrl ?? '';
    const trusted = make({
      connection: { url, startTls: false, tls: { ca: caPem() }, connectTimeoutMs: 2000, operationTimeoutMs: 2000 },
    });
    const untrusted = make({
      connection: { url, startTls: false, tls: {}, connectTimeoutMs: 2000, operationTimeoutMs: 2000 },
    });
    expect((await trusted.authenticate(login('alice', alice.password), deadline())).kind).toBe('allow');
    await expect(untrusted.authenticate(login('alice', alice.password), deadline())).rejects.toThrow(/certificate/i);
  });

  it('authenticates over StartTLS with the configured CA and never falls back to plaintext', async () => {
    const url = slapd?.url ?? '';
    const trusted = make({
      lookup: searchLookup,
      service,
      connection: { url, startTls: true, tls: { ca: caPem() }, connectTimeoutMs: 2000, operationTimeoutMs: 2000 },
    });
    const untrusted = make({
      connection: { url, startTls: true, tls: {}, connectTimeoutMs: 2000, operationTimeoutMs: 2000 },
    });
    expect((await trusted.authenticate(login('carol', carol.password), deadline())).kind).toBe('allow');
    await expect(untrusted.authenticate(login('alice', alice.password), deadline())).rejects.toThrow(/certificate/i);
  });

  const injections = [
    'al*',
    '*',
    'alice)(uid=*',
    '*)(|(uid=*',
    'alice\\',
    'alice\0',
    '(uid=alice)',
    'alice)(|(objectClass=*',
  ];
  for (const username of injections) {
    it(`does not let the user name ${JSON.stringify(username)} change the search filter`, async () => {
      const a = make({ lookup: searchLookup, service });
      // Every candidate would select alice (or everyone) if spliced in unescaped; with her password that would allow.
      const outcome = await a.authenticate(login(username, alice.password), deadline());
      expect(outcome).toMatchObject({ kind: 'deny', reason: 'badUserNameOrPassword' });
    });
  }

  it('does not let a user name add RDNs to the bind DN', async () => {
    const a = make();
    const names = ['alice,ou=people', 'alice+cn=alice', 'alice\\', ' alice', '#alice', 'alice,uid=bob'];
    const kinds: Record<string, string> = {};
    for (const username of names)
      kinds[username] = (await a.authenticate(login(username, alice.password), deadline())).kind;
    expect(kinds).toEqual(Object.fromEntries(names.map((n) => [n, 'deny'])));
  });

  it('refuses the ${clientid} placeholder trick of a client id holding filter syntax', async () => {
    const a = make({
      lookup: { ...searchLookup, filter: '(&(uid=${username})(description=${clientid}))' },
      service,
    });
    const outcome = await a.authenticate(login('alice', alice.password, '*'), deadline());
    expect(outcome).toMatchObject({ kind: 'deny', reason: 'badUserNameOrPassword' });
  });
});
