import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, SignJWT, type JWTPayload } from 'jose';
import { describe, expect, it } from 'vitest';
import { JwtAuthenticator, type JwtAuthenticatorOptions } from '../../../authn/jwt/authenticator.js';
import { jwtType } from '../../../authn/jwt/config.js';
import { createBuiltinRegistry } from '../../../authn/builtin.js';
import { Secret } from '../../../authn/secret.js';
import { VerificationServices } from '../../../authn/verify/services.js';
import { silentLogger } from '../../../src/log.js';
import { attempt } from './fakes.js';

const HMAC = new TextEncoder().encode('unit-test-hmac-secret-of-32-bytes!!');
const NOW = Date.UTC(2030, 0, 1);
const nowS = Math.floor(NOW / 1000);
const signal = () => new AbortController().signal;

function options(over: Partial<JwtAuthenticatorOptions> = {}): JwtAuthenticatorOptions {
  return {
    id: 'jwt',
    tokenFrom: 'password',
    keys: { kind: 'static', key: HMAC },
    algorithms: ['HS256'],
    issuer: 'https://issuer.test',
    audience: 'bulwark',
    requireExp: true,
    clockSkewS: 30,
    maxTokenAgeS: undefined,
    claims: { username: 'sub', groups: 'groups', attributes: ['sub', 'tenant'], acl: 'acl' },
    requireEqual: { clientid: undefined, username: undefined },
    now: () => NOW,
    ...over,
  };
}

async function hs(
  payload: JWTPayload,
  over: { alg?: string; exp?: number | null; key?: Uint8Array } = {},
): Promise<string> {
  const jwt = new SignJWT(payload)
    .setProtectedHeader({ alg: over.alg ?? 'HS256' })
    .setIssuer('https://issuer.test')
    .setAudience('bulwark')
    .setIssuedAt(nowS);
  if (over.exp !== null) jwt.setExpirationTime(over.exp ?? nowS + 600);
  return jwt.sign(over.key ?? HMAC);
}

const connect = (a: JwtAuthenticator, token: string, over: Parameters<typeof attempt>[0] = {}) =>
  a.authenticate(attempt({ password: new Secret(token), ...over }), signal());

describe('jwt authenticator', () => {
  it('allows a valid token and maps claims to username, groups, attributes, ACL and expiry', async () => {
    const token = await hs({
      sub: 'dev-7',
      groups: ['sensors'],
      tenant: 'acme',
      acl: [{ allow: 'publish', topic: 't/#' }],
    });
    const r = await connect(new JwtAuthenticator(options()), token, { username: 'ignored' });
    expect(r.kind === 'allow' && r.identity).toMatchObject({
      username: 'dev-7',
      groups: ['sensors'],
      attributes: { 'jwt.sub': 'dev-7', 'jwt.tenant': 'acme' },
      aclRules: [{ allow: 'publish', topic: 't/#' }],
      expiresAt: (nowS + 600 + 30) * 1000,
    });
  });

  const refusals: { name: string; token: () => Promise<string>; detail: RegExp }[] = [
    { name: 'an expired token', token: () => hs({ sub: 'a' }, { exp: nowS - 60 }), detail: /exp/ },
    { name: 'a token without exp (required by default)', token: () => hs({ sub: 'a' }, { exp: null }), detail: /exp/ },
    { name: 'a token not yet valid', token: () => hs({ sub: 'a', nbf: nowS + 120 }), detail: /nbf/ },
    {
      name: 'a token from another issuer',
      token: () =>
        new SignJWT({ sub: 'a' })
          .setProtectedHeader({ alg: 'HS256' })
          .setIssuer('evil')
          .setAudience('bulwark')
          .setExpirationTime(nowS + 60)
          .sign(HMAC),
      detail: /iss/,
    },
    {
      name: 'a token for another audience',
      token: () =>
        new SignJWT({ sub: 'a' })
          .setProtectedHeader({ alg: 'HS256' })
          .setIssuer('https://issuer.test')
          .setAudience('other')
          .setExpirationTime(nowS + 60)
          .sign(HMAC),
      detail: /aud/,
    },
    {
      name: 'a token signed with another key',
      token: () => hs({ sub: 'a' }, { key: new TextEncoder().encode('another-secret-another-secret-xx!') }),
      detail: /SIGNATURE/,
    },
    {
      name: 'a token with an algorithm that is not pinned',
      token: () => hs({ sub: 'a' }, { alg: 'HS512' }),
      detail: /ALG_NOT_ALLOWED/,
    },
  ];
  for (const c of refusals) {
    it(`denies ${c.name} with badUserNameOrPassword`, async () => {
      const r = await connect(new JwtAuthenticator(options()), await c.token());
      expect(r.kind).toBe('deny');
      expect(r.kind === 'deny' && r.reason).toBe('badUserNameOrPassword');
      expect(r.kind === 'deny' && r.detail).toMatch(c.detail);
      // The failed check of its own token is what the client is told (CONNACK Reason String).
      expect(r.kind === 'deny' && r.clientDetail).toBe(r.kind === 'deny' && r.detail);
    });
  }

  it('accepts a token that expired within the clock skew', async () => {
    const r = await connect(new JwtAuthenticator(options()), await hs({ sub: 'a' }, { exp: nowS - 10 }));
    expect(r.kind).toBe('allow');
  });

  it('an alg=none token is refused', async () => {
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const token = `${b64({ alg: 'none' })}.${b64({ sub: 'root', exp: nowS + 60, iss: 'https://issuer.test', aud: 'bulwark' })}.`;
    const r = await connect(new JwtAuthenticator(options()), token);
    expect(r.kind).not.toBe('allow');
  });

  it('ignores a password that is not a JWT, so the next step can try it', async () => {
    const r = await connect(new JwtAuthenticator(options()), 'just-a-password');
    expect(r).toMatchObject({ kind: 'ignore' });
  });

  it('reads the token from the username field when configured', async () => {
    const token = await hs({ sub: 'u-from-token' });
    const r = await new JwtAuthenticator(options({ tokenFrom: 'username' })).authenticate(
      attempt({ username: token, password: undefined }),
      signal(),
    );
    expect(r.kind === 'allow' && r.identity.username).toBe('u-from-token');
  });

  it('a claim required to equal the client id refuses another client', async () => {
    const a = new JwtAuthenticator(options({ requireEqual: { clientid: 'cid', username: undefined } }));
    const token = await hs({ sub: 'a', cid: 'client-1' });
    expect((await connect(a, token)).kind).toBe('allow');
    expect(await connect(a, token, { clientId: 'client-2' })).toMatchObject({ kind: 'deny', reason: 'notAuthorized' });
  });

  it('a claim required to equal the username refuses a different username', async () => {
    const a = new JwtAuthenticator(options({ requireEqual: { clientid: undefined, username: 'sub' } }));
    const token = await hs({ sub: 'alice' });
    expect((await connect(a, token, { username: 'alice' })).kind).toBe('allow');
    expect(await connect(a, token, { username: 'bob' })).toMatchObject({ kind: 'deny', reason: 'notAuthorized' });
  });

  it('without a username claim the identity has no username: the token does not vouch for the one the client wrote', async () => {
    const noClaim = { username: undefined, groups: undefined, attributes: [], acl: undefined };
    const token = await hs({ sub: 'alice' });
    const plain = await connect(new JwtAuthenticator(options({ claims: noClaim })), token, { username: 'admin' });
    expect(plain.kind === 'allow' && plain.identity).toMatchObject({ username: undefined, anonymous: false });
    // A claim required to equal the username proves it: then it is the identity's.
    const bound = new JwtAuthenticator(
      options({ claims: noClaim, requireEqual: { clientid: undefined, username: 'sub' } }),
    );
    const proven = await connect(bound, token, { username: 'alice' });
    expect(proven.kind === 'allow' && proven.identity.username).toBe('alice');
  });

  it('verifies RS256 with a PEM public key file and ES256 with a JWK, built from configuration', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jwt-'));
    try {
      const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      writeFileSync(join(dir, 'rsa.pem'), rsa.publicKey.export({ type: 'spki', format: 'pem' }));
      const registry = createBuiltinRegistry();
      const ctx = {
        verification: new VerificationServices(),
        onEvent: () => undefined,
        logger: silentLogger,
        baseDir: dir,
      };
      const chain = registry.parseAndBuild(
        {
          steps: [
            { type: 'jwt', id: 'rsa', algorithms: ['RS256'], public_key_file: 'rsa.pem', require_exp: false },
            { type: 'jwt', id: 'ec', algorithms: ['ES256'], jwk: await exportJWK(ec.publicKey), require_exp: false },
          ],
        },
        ctx,
      );
      const rsaToken = await new SignJWT({ sub: 'r' }).setProtectedHeader({ alg: 'RS256' }).sign(rsa.privateKey);
      const ecToken = await new SignJWT({ sub: 'e' }).setProtectedHeader({ alg: 'ES256' }).sign(ec.privateKey);
      const r1 = await chain.authenticate(attempt({ password: new Secret(rsaToken) }));
      expect(r1.kind === 'allow' && r1.identity.authenticator).toBe('rsa');
      // The RSA step refuses the EC token (its alg is not pinned there): the first deny ends the chain.
      const r2 = await chain.authenticate(attempt({ password: new Secret(ecToken) }));
      expect(r2).toMatchObject({ kind: 'deny', decidedBy: 'rsa' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('jwt configuration', () => {
  const parse = (s: object) => jwtType.settings.safeParse(s);
  it('refuses HMAC algorithms with a public key (key confusion)', () => {
    expect(parse({ algorithms: ['HS256'], jwks_url: 'http://127.0.0.1/jwks' }).success).toBe(false);
  });
  it('refuses a jwks_url carrying credentials, without echoing them (fetch would quote the URL in every error)', () => {
    for (const url of ['https://svc:hunter2@idp.example/jwks', 'http://token@127.0.0.1/jwks']) {
      const r = parse({ algorithms: ['ES256'], jwks_url: url });
      expect(r.success).toBe(false);
      expect(JSON.stringify(r.error?.issues)).toContain('must not carry a user name or password');
      expect(JSON.stringify(r.error?.issues)).not.toContain('hunter2');
    }
    expect(parse({ algorithms: ['ES256'], jwks_url: 'https://idp.example/jwks?user=a@b' }).success).toBe(true);
  });
  it('refuses a public-key algorithm with an HMAC secret', () => {
    expect(parse({ algorithms: ['RS256'], secret: 'x'.repeat(32) }).success).toBe(false);
  });
  it('requires exactly one key source', () => {
    expect(parse({ algorithms: ['HS256'] }).success).toBe(false);
    expect(parse({ algorithms: ['HS256'], secret: 'x'.repeat(32), secret_file: 'f' }).success).toBe(false);
  });
  it('refuses a clock skew above five minutes', () => {
    expect(parse({ algorithms: ['HS256'], secret: 'x'.repeat(32), clock_skew_s: 301 }).success).toBe(false);
  });
  it('an inline secret is held as a Secret that prints redacted', () => {
    const r = parse({ algorithms: ['HS256'], secret: 'inline-config-secret-inline-config' });
    expect(r.success && JSON.stringify(r.data)).not.toContain('inline-config-secret');
  });
  it('refuses an HMAC secret shorter than 32 bytes when building', () => {
    const registry = createBuiltinRegistry();
    const ctx = {
      verification: new VerificationServices(),
      onEvent: () => undefined,
      logger: silentLogger,
      baseDir: '.',
    };
    expect(() =>
      registry.parseAndBuild({ steps: [{ type: 'jwt', algorithms: ['HS256'], secret: 'short' }] }, ctx),
    ).toThrow(/32 bytes/);
  });
});
