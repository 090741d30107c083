import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errors, exportJWK, SignJWT, type JWK } from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createBuiltinRegistry } from '../../../authn/builtin.js';
import { JwksSource, JwksUnavailableError } from '../../../authn/jwt/jwks-source.js';
import { Secret } from '../../../authn/secret.js';
import { VerificationServices } from '../../../authn/verify/services.js';
import { silentLogger } from '../../../src/log.js';
import { attempt } from '../../unit/authn/fakes.js';

/** A real JWKS endpoint on 127.0.0.1 whose key set the test can rotate, counting fetches. */
class JwksServer {
  keys: JWK[] = [];
  fetches = 0;
  down = false;
  /** When set, answers every request instead of the key set. */
  answer: ((res: ServerResponse) => void) | undefined;
  readonly server: Server = createServer((_req, res) => {
    this.fetches++;
    if (this.answer) {
      this.answer(res);
      return;
    }
    if (this.down) {
      res.statusCode = 503;
      res.end();
      return;
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: this.keys }));
  });
  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/.well-known/jwks.json`;
  }
  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

async function es256(kid: string): Promise<{ privateKey: KeyObject; jwk: JWK }> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

const token = (key: KeyObject, kid: string, sub: string) =>
  new SignJWT({ sub }).setProtectedHeader({ alg: 'ES256', kid }).setIssuer('idp').setExpirationTime('5m').sign(key);

let jwks: JwksServer | undefined;
afterEach(async () => {
  await jwks?.stop();
  jwks = undefined;
});

async function chainFor(url: string, minRefetchMs: number, extra: Record<string, unknown> = {}) {
  const chain = createBuiltinRegistry().parseAndBuild(
    {
      steps: [
        {
          type: 'jwt',
          algorithms: ['ES256'],
          jwks_url: url,
          issuer: 'idp',
          jwks_min_refetch_ms: minRefetchMs,
          jwks_timeout_ms: 1_000,
          ...extra,
        },
      ],
    },
    { verification: new VerificationServices(), onEvent: () => undefined, logger: silentLogger, baseDir: '.' },
  );
  await chain.start();
  return chain;
}

describe('jwt authenticator with a JWKS URL', () => {
  it('accepts a token signed by a key in the JWKS, then a rotated key with a new kid after refetching', async () => {
    jwks = new JwksServer();
    const url = await jwks.start();
    const k1 = await es256('key-1');
    jwks.keys = [k1.jwk];
    const chain = await chainFor(url, 0);
    const r1 = await chain.authenticate(
      attempt({ password: new Secret(await token(k1.privateKey, 'key-1', 'dev-1')) }),
    );
    expect(r1.kind === 'allow' && r1.identity.username).toBe('dev-1');
    expect(jwks.fetches).toBe(1);

    const k2 = await es256('key-2');
    jwks.keys = [k2.jwk];
    const r2 = await chain.authenticate(
      attempt({ password: new Secret(await token(k2.privateKey, 'key-2', 'dev-2')) }),
    );
    expect(r2.kind === 'allow' && r2.identity.username).toBe('dev-2');
    expect(jwks.fetches).toBe(2);
    // The retired key is gone from the set: its tokens no longer verify.
    const r3 = await chain.authenticate(
      attempt({ password: new Secret(await token(k1.privateKey, 'key-1', 'dev-1')) }),
    );
    expect(r3).toMatchObject({ kind: 'deny', reason: 'badUserNameOrPassword' });
  });

  it('an unknown kid refetches at most once per cooldown (forged kids cannot hammer the IdP)', async () => {
    jwks = new JwksServer();
    const url = await jwks.start();
    const k1 = await es256('key-1');
    jwks.keys = [k1.jwk];
    const chain = await chainFor(url, 3_600_000);
    await chain.authenticate(attempt({ password: new Secret(await token(k1.privateKey, 'key-1', 'a')) }));
    const forged = await es256('forged');
    for (let i = 0; i < 5; i++) {
      const r = await chain.authenticate(
        attempt({ password: new Secret(await token(forged.privateKey, `forged-${i}`, 'x')) }),
      );
      expect(r).toMatchObject({ kind: 'deny', reason: 'badUserNameOrPassword' });
    }
    expect(jwks.fetches).toBe(1);
  });

  it('a kid rotated in while the provider fails is unverifiable for the whole back-off, not a bad token', async () => {
    jwks = new JwksServer();
    const k1 = await es256('key-1');
    jwks.keys = [k1.jwk];
    let now = 0;
    const source = new JwksSource({
      url: new URL(await jwks.start()),
      refreshMs: 3_600_000,
      minRefetchMs: 5_000,
      timeoutMs: 1_000,
      maxBytes: 1_048_576,
      now: () => now,
    });
    const flattened = { payload: '', signature: '' };
    await expect(source.getKey({ alg: 'ES256', kid: 'key-1' }, flattened)).resolves.toBeDefined();
    // The provider rotates to key-2 and fails before the broker has seen it.
    const k2 = await es256('key-2');
    jwks.keys = [k2.jwk];
    jwks.down = true;
    now = 6_000;
    await expect(source.getKey({ alg: 'ES256', kid: 'key-2' }, flattened)).rejects.toBeInstanceOf(JwksUnavailableError);
    // In that request's back-off the provider is not asked again, and what it would say is still unknown.
    now = 7_000;
    await expect(source.getKey({ alg: 'ES256', kid: 'key-2' }, flattened)).rejects.toBeInstanceOf(JwksUnavailableError);
    expect(jwks.fetches).toBe(2);
    await expect(source.getKey({ alg: 'ES256', kid: 'key-1' }, flattened)).resolves.toBeDefined();
    // Back: key-2 is fetched; a kid the provider has just answered without is a bad token again (forged kids).
    jwks.down = false;
    now = 12_000;
    await expect(source.getKey({ alg: 'ES256', kid: 'key-2' }, flattened)).resolves.toBeDefined();
    now = 13_000;
    await expect(source.getKey({ alg: 'ES256', kid: 'forged' }, flattened)).rejects.toBeInstanceOf(
      errors.JWKSNoMatchingKey,
    );
    expect(jwks.fetches).toBe(3);
  });

  it("a key set with one key the step's algorithms can use is taken, whatever else it holds", async () => {
    jwks = new JwksServer();
    const k1 = await es256('key-1');
    // No `alg`, no `use`: usable for ES256 by its type and curve, as jose picks keys.
    const { alg: _alg, use: _use, ...bare } = k1.jwk;
    jwks.keys = [
      { kty: 'RSA', kid: 'rsa', n: 'sXch', e: 'AQAB' },
      { ...bare, key_ops: ['verify'] },
    ];
    const url = await jwks.start();
    const chain = await chainFor(url, 0);
    const r = await chain.authenticate(attempt({ password: new Secret(await token(k1.privateKey, 'key-1', 'dev-1')) }));
    expect(r).toMatchObject({ kind: 'allow' });

    // An RSA key without `alg` serves a PS256 step.
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    jwks.keys = [{ ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1' }];
    const ps = await chainFor(url, 0, { algorithms: ['PS256'] });
    const signed = await new SignJWT({ sub: 'dev-2' })
      .setProtectedHeader({ alg: 'PS256', kid: 'rsa-1' })
      .setIssuer('idp')
      .setExpirationTime('5m')
      .sign(rsa.privateKey);
    expect(await ps.authenticate(attempt({ password: new Secret(signed) }))).toMatchObject({ kind: 'allow' });
  });

  it('an unreachable JWKS fails closed with serverUnavailable', async () => {
    jwks = new JwksServer();
    const url = await jwks.start();
    jwks.down = true;
    const k1 = await es256('key-1');
    const chain = await chainFor(url, 0);
    const r = await chain.authenticate(attempt({ password: new Secret(await token(k1.privateKey, 'key-1', 'a')) }));
    expect(r).toMatchObject({ kind: 'deny', reason: 'serverUnavailable' });
    expect(r.steps[0]?.answer).toBe('error');
  });

  const failures: [string, (res: ServerResponse) => void][] = [
    [
      'answers 500',
      (res) => {
        res.statusCode = 500;
        res.end('{"error":"boom"}');
      },
    ],
    ['answers something that is not JSON', (res) => res.end('<html>maintenance</html>')],
    ['answers JSON that is not a key set', (res) => res.end('{"keys":"none"}')],
    // Not a rotation to nothing: every token would be refused as a bad credential and counted by the throttle.
    ['answers an empty key set', (res) => res.end('{"keys":[]}')],
    // Members without the REQUIRED kty (RFC 7517 §4.1) are no keys either: the same empty copy in disguise.
    ['answers a key set whose members are no keys', (res) => res.end('{"keys":[{},{"use":"sig"}]}')],
    // Keys, but none an ES256 token could verify with: another type, another curve, or marked for encryption.
    [
      "answers a key set whose keys serve none of the step's algorithms",
      (res) =>
        res.end(
          JSON.stringify({
            keys: [
              { kty: 'RSA', kid: 'rsa', n: 'sXch', e: 'AQAB' },
              { kty: 'EC', kid: 'p384', crv: 'P-384', x: 'AA', y: 'AA' },
              { kty: 'EC', kid: 'enc', crv: 'P-256', use: 'enc', x: 'AA', y: 'AA' },
              { kty: 'EC', kid: 'es512', crv: 'P-256', alg: 'ES512', x: 'AA', y: 'AA' },
              { kty: 'EC', kid: 'wrap', crv: 'P-256', key_ops: ['wrapKey'], x: 'AA', y: 'AA' },
            ],
          }),
        ),
    ],
  ];
  for (const [name, answer] of failures) {
    it(`a provider that ${name} is asked at most once per jwks_min_refetch_ms, and tokens get serverUnavailable`, async () => {
      jwks = new JwksServer();
      jwks.answer = answer;
      const chain = await chainFor(await jwks.start(), 3_600_000);
      const forged = await es256('forged');
      for (let i = 0; i < 5; i++) {
        const r = await chain.authenticate(
          attempt({ password: new Secret(await token(forged.privateKey, `random-${i}`, 'x')) }),
        );
        expect(r).toMatchObject({ kind: 'deny', reason: 'serverUnavailable' });
      }
      expect(jwks.fetches).toBe(1);
    });
  }

  it('a stale copy and a failing provider: one request per back-off period, serverUnavailable meanwhile, then recovery', async () => {
    jwks = new JwksServer();
    const k1 = await es256('key-1');
    jwks.keys = [k1.jwk];
    let now = 0;
    const source = new JwksSource({
      url: new URL(await jwks.start()),
      refreshMs: 1_000,
      minRefetchMs: 30_000,
      timeoutMs: 1_000,
      maxBytes: 1_048_576,
      now: () => now,
    });
    const header = { alg: 'ES256', kid: 'key-1' };
    const flattened = { payload: '', signature: '' };
    await expect(source.getKey(header, flattened)).resolves.toBeDefined();
    now = 31_000;
    jwks.down = true;
    for (let i = 0; i < 5; i++) {
      await expect(source.getKey(header, flattened)).rejects.toBeInstanceOf(JwksUnavailableError);
      now += 1_000;
    }
    expect(jwks.fetches).toBe(2);
    jwks.down = false;
    now = 31_000 + 30_000;
    await expect(source.getKey(header, flattened)).resolves.toBeDefined();
    expect(jwks.fetches).toBe(3);
  });

  it('jwks_stale_if_error_ms: a failing provider leaves the last good copy verifying for that long, said in the step', async () => {
    jwks = new JwksServer();
    const k1 = await es256('key-1');
    jwks.keys = [k1.jwk];
    let now = 0;
    const staleUses: [number, string][] = [];
    const source = new JwksSource({
      url: new URL(await jwks.start()),
      refreshMs: 1_000,
      minRefetchMs: 5_000,
      timeoutMs: 1_000,
      maxBytes: 1_048_576,
      staleIfErrorMs: 60_000,
      onStaleUse: (age, failure) => staleUses.push([age, failure]),
      now: () => now,
    });
    const header = { alg: 'ES256', kid: 'key-1' };
    const flattened = { payload: '', signature: '' };
    await expect(source.getKey(header, flattened)).resolves.toBeDefined();
    expect(source.staleness()).toBeUndefined();

    jwks.down = true;
    now = 6_000;
    await expect(source.getKey(header, flattened)).resolves.toBeDefined();
    expect(jwks.fetches).toBe(2);
    expect(staleUses).toEqual([[6_000, 'HTTP 503']]);
    expect(source.staleness()).toBe('verified with a JWKS copy 6 s old (jwks_stale_if_error_ms): HTTP 503');
    // Within the back-off the copy serves without asking, and the operator is not told again.
    now = 7_000;
    await expect(source.getKey(header, flattened)).resolves.toBeDefined();
    expect(jwks.fetches).toBe(2);
    expect(staleUses).toHaveLength(1);
    // A kid the copy lacks may be one the provider added: unverifiable while it fails, not a bad token.
    await expect(source.getKey({ alg: 'ES256', kid: 'key-2' }, flattened)).rejects.toBeInstanceOf(JwksUnavailableError);
    // Past refresh + stale-if-error: fail closed again.
    now = 61_000;
    await expect(source.getKey(header, flattened)).rejects.toBeInstanceOf(JwksUnavailableError);
    jwks.down = false;
    now = 67_000;
    await expect(source.getKey(header, flattened)).resolves.toBeDefined();
    expect(source.staleness()).toBeUndefined();
  });

  it('jwks_stale_if_error_ms through the chain: allowed with the stale copy, the step detail saying so; 0 refuses', async () => {
    jwks = new JwksServer();
    const url = await jwks.start();
    const k1 = await es256('key-1');
    jwks.keys = [k1.jwk];
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const lenient = await chainFor(url, 0, { jwks_refresh_ms: 1_000, jwks_stale_if_error_ms: 60_000 });
      const strict = await chainFor(url, 0, { jwks_refresh_ms: 1_000 });
      const jwt = await token(k1.privateKey, 'key-1', 'dev-1');
      for (const chain of [lenient, strict]) {
        expect(await chain.authenticate(attempt({ password: new Secret(jwt) }))).toMatchObject({ kind: 'allow' });
      }
      jwks.down = true;
      vi.setSystemTime(Date.now() + 5_000);
      const served = await lenient.authenticate(attempt({ password: new Secret(jwt) }));
      expect(served.kind === 'allow' && served.identity.username).toBe('dev-1');
      expect(served.steps[0]).toMatchObject({ answer: 'allow' });
      expect(served.steps[0]?.detail).toMatch(
        /^verified with a JWKS copy 5 s old \(jwks_stale_if_error_ms\): HTTP 503$/,
      );
      const refused = await strict.authenticate(attempt({ password: new Secret(jwt) }));
      expect(refused).toMatchObject({ kind: 'deny', reason: 'serverUnavailable' });
    } finally {
      vi.useRealTimers();
    }
  });

  const huge = JSON.stringify({ keys: [], padding: 'x'.repeat(2 * 1_048_576) });
  const bodies: [string, (res: ServerResponse) => void][] = [
    ['with a Content-Length', (res) => res.end(huge)],
    [
      'streamed without a length',
      (res) => {
        res.setHeader('transfer-encoding', 'chunked');
        for (let i = 0; i < huge.length; i += 65_536) res.write(huge.slice(i, i + 65_536));
        res.end();
      },
    ],
  ];
  for (const [name, answer] of bodies) {
    it(`a JWKS response over jwks_max_bytes is refused (${name})`, async () => {
      jwks = new JwksServer();
      jwks.answer = answer;
      const k1 = await es256('key-1');
      const chain = await chainFor(await jwks.start(), 3_600_000);
      const r = await chain.authenticate(attempt({ password: new Secret(await token(k1.privateKey, 'key-1', 'a')) }));
      expect(r).toMatchObject({ kind: 'deny', reason: 'serverUnavailable' });
      expect(r.steps[0]?.detail).toMatch(/exceeds 1048576/);
    });
  }

  it('a JWKS within a raised jwks_max_bytes is accepted', async () => {
    jwks = new JwksServer();
    const k1 = await es256('key-1');
    const body = JSON.stringify({ keys: [k1.jwk], padding: 'x'.repeat(1_100_000) });
    jwks.answer = (res) => res.end(body);
    const chain = await chainFor(await jwks.start(), 3_600_000, { jwks_max_bytes: 2_097_152 });
    const r = await chain.authenticate(attempt({ password: new Secret(await token(k1.privateKey, 'key-1', 'a')) }));
    expect(r.kind).toBe('allow');
  });
});
