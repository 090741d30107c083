import { createServer, type Server } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_LDAP_CLIENT_ID_BYTES, MAX_LDAP_USERNAME_BYTES } from '../../../../authn/ldap/authenticator.js';
import { CircuitBreaker } from '../../../../authn/verify/breaker.js';
import { Secret } from '../../../../authn/secret.js';
import { deadline, login, made, make, searchLookup, service, slapd, SLAPD_SEED } from './fixtures.js';

const { alice } = SLAPD_SEED.users;

afterAll(async () => {
  await Promise.all(made.map((a) => a.stop()));
});

/** A breaker that opens on the first failure it counts, recording its transitions. */
function strictBreaker(): { breaker: CircuitBreaker; states: string[] } {
  const states: string[] = [];
  const breaker = new CircuitBreaker('ldap', {
    failureThreshold: 1,
    resetTimeoutMs: 60_000,
    onStateChange: (s) => states.push(s),
  });
  return { breaker, states };
}

describe.skipIf(!slapd)('ldap: refusals caused by the client’s user name', () => {
  it('a DN the directory cannot parse (result code 34) is a deny, and never opens the breaker', async () => {
    const { breaker, states } = strictBreaker();
    // uidNumber has INTEGER syntax: a name that is not a number makes a DN the directory refuses as invalid.
    const a = make({ breaker, lookup: { kind: 'bind', dnTemplate: `uidNumber=\${username},${SLAPD_SEED.peopleDn}` } });
    for (let i = 0; i < 3; i++) {
      expect(await a.authenticate(login('not-a-number', 'whatever'), deadline())).toEqual({
        kind: 'deny',
        reason: 'badUserNameOrPassword',
        detail: 'directory refused the user name (result code 34)',
      });
    }
    expect(breaker.state).toBe('closed');
    expect(states).toEqual([]);
    // Where the template carries the client id too, the refusal may be its doing, and says so.
    const withClientId = make({
      breaker,
      lookup: { kind: 'bind', dnTemplate: `uidNumber=\${clientid}+uid=\${username},${SLAPD_SEED.peopleDn}` },
    });
    expect(await withClientId.authenticate(login('alice', 'whatever', 'not-a-number'), deadline())).toEqual({
      kind: 'deny',
      reason: 'badUserNameOrPassword',
      detail: 'directory refused the user name or client id (result code 34)',
    });
    expect(breaker.state).toBe('closed');
    const ok = make({ breaker });
    expect((await ok.authenticate(login('alice', alice.password), deadline())).kind).toBe('allow');
  });

  it(`a user name over ${MAX_LDAP_USERNAME_BYTES} bytes is refused before any directory traffic`, async () => {
    let connections = 0;
    const listener: Server = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const port = (listener.address() as { port: number }).port;
    try {
      const { breaker, states } = strictBreaker();
      const a = make({
        breaker,
        connection: {
          url: `ldap://127.0.0.1:${port}`,
          startTls: false,
          tls: {},
          connectTimeoutMs: 500,
          operationTimeoutMs: 500,
        },
      });
      // Multi-byte: the limit is on UTF-8 bytes, what the directory has to parse.
      const long = 'é'.repeat(MAX_LDAP_USERNAME_BYTES / 2 + 1);
      for (const name of [long, 'a'.repeat(8_170)]) {
        expect(await a.authenticate(login(name, 'whatever'), deadline())).toEqual({
          kind: 'deny',
          reason: 'badUserNameOrPassword',
          detail: `user name longer than ${MAX_LDAP_USERNAME_BYTES} bytes`,
        });
      }
      expect(a.quickAnswer(login('a'.repeat(MAX_LDAP_USERNAME_BYTES + 1), 'whatever'))).toMatchObject({
        kind: 'deny',
      });
      expect(connections).toBe(0);
      expect(states).toEqual([]);
    } finally {
      listener.close();
    }
  });

  it(`a client id over ${MAX_LDAP_CLIENT_ID_BYTES} bytes is refused before any directory traffic when the DN template uses it`, async () => {
    const { breaker, states } = strictBreaker();
    const template = `uid=\${username},${SLAPD_SEED.peopleDn}`;
    const withClientId = make({
      breaker,
      lookup: { kind: 'bind', dnTemplate: `${template.replace('uid=', 'description=${clientid}+uid=')}` },
    });
    // Over OpenLDAP's 256 KiB limit for a request before authentication: the directory would close the connection,
    // an outage to the breaker.
    const long = 'c'.repeat(300_000);
    expect(await withClientId.authenticate(login('alice', alice.password, long), deadline())).toEqual({
      kind: 'deny',
      reason: 'clientIdentifierNotValid',
      detail: `client id longer than ${MAX_LDAP_CLIENT_ID_BYTES} bytes, and the directory lookup uses it`,
    });
    expect(breaker.state).toBe('closed');
    expect(states).toEqual([]);
    // A template without ${clientid} does not care how long the client id is.
    const plain = make({ breaker });
    expect((await plain.authenticate(login('alice', alice.password, long), deadline())).kind).toBe('allow');
  });

  it(`a user name of exactly ${MAX_LDAP_USERNAME_BYTES} bytes still reaches the directory`, async () => {
    const a = make();
    const r = await a.authenticate(login('a'.repeat(MAX_LDAP_USERNAME_BYTES), 'whatever'), deadline());
    expect(r).toMatchObject({ kind: 'deny', detail: 'directory refused the bind (invalid credentials)' });
  });

  /**
   * What a client can put in front of the directory once the broker's own checks pass: well-formed UTF-8 without
   * NUL (the MQTT codec), no control characters or padding and at most 256 bytes (this step), any password bytes up
   * to 65535. Against OpenLDAP none of it draws a result code that is not already the client's answer (49, 34, no
   * entry), so none of it may ever reach the breaker as a failure.
   */
  it('crafted user names and passwords are answered, never counted as directory failures', async () => {
    const names = [
      'a,b+c=d;e<f>"g"\\h',
      '#lead',
      ')(uid=*',
      '*',
      '\\2a',
      '\ufffd',
      '\uffff\ufdd0',
      '\u{10ffff}\u{1f600}',
      'a\u0085b\u0080\u009f',
      '\u0301',
      '\u202e\u200b\u061c',
      '\u0378\ue000',
      'uid=alice,ou=people,dc=example,dc=com',
      'a'.repeat(MAX_LDAP_USERNAME_BYTES),
      '€'.repeat(Math.floor(MAX_LDAP_USERNAME_BYTES / 3)),
      '\u{1f600}'.repeat(MAX_LDAP_USERNAME_BYTES / 4),
    ];
    const passwords = [
      new Secret('pw'),
      new Secret(Buffer.alloc(65_535, 0x61)),
      new Secret(Buffer.from([0])),
      new Secret(Buffer.from([0xff, 0xfe, 0xc3])),
    ];
    const { breaker, states } = strictBreaker();
    const steps = [
      make({ breaker }),
      make({ breaker, lookup: searchLookup, service }),
      // An attribute whose syntax refuses most names: the directory says 34 (bind) or matches nothing (search).
      make({ breaker, lookup: { kind: 'bind', dnTemplate: `mail=\${username},${SLAPD_SEED.peopleDn}` } }),
      make({ breaker, lookup: { ...searchLookup, filter: '(uidNumber>=${username})' }, service }),
    ];
    for (const step of steps) {
      for (const name of names) {
        for (const password of passwords) {
          const r = await step.authenticate({ ...login(name, 'x'), password }, deadline());
          expect(r).toMatchObject({ kind: 'deny', reason: 'badUserNameOrPassword' });
        }
      }
    }
    expect(breaker.state).toBe('closed');
    expect(states).toEqual([]);
  });
});
