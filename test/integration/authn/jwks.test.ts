import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, SignJWT, type JWK } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { createBuiltinRegistry } from '../../../authn/builtin.js';
import { Secret } from '../../../authn/secret.js';
import { VerificationServices } from '../../../authn/verify/services.js';
import { silentLogger } from '../../../src/log.js';
import { attempt } from '../../unit/authn/fakes.js';

/** A real JWKS endpoint on 127.0.0.1 whose key set the test can rotate, counting fetches. */
class JwksServer {
  keys: JWK[] = [];
  fetches = 0;
  down = false;
  readonly server: Server = createServer((_req, res) => {
    this.fetches++;
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

async function chainFor(url: string, minRefetchMs: number) {
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
});
