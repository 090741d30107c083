import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { BulwarkError } from '../../src/errors.js';
import { defineAuthenticatorType, type AuthenticatorContext } from '../registry.js';
import { Secret } from '../secret.js';
import { JwtAuthenticator, type JwtKeySource } from './authenticator.js';
import { JwksSource } from './jwks-source.js';

const HMAC = ['HS256', 'HS384', 'HS512'] as const;
const ASYMMETRIC = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;
const stringOrList = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

export const jwtSettingsSchema = z
  .object({
    token_from: z.enum(['password', 'username']).default('password').describe('CONNECT field that carries the token.'),
    algorithms: z
      .array(z.enum([...HMAC, ...ASYMMETRIC]))
      .min(1)
      .describe(
        'Accepted `alg` values (pinned). HMAC and public-key algorithms cannot be mixed, which rules out key-confusion attacks.',
      ),
    secret: z
      .string()
      .min(1)
      // Here as well as where the key is made, so that `bulwark config check` refuses what start would refuse.
      // RFC 7518 §3.2: an HMAC key must be at least as long as the hash output. The message never holds the value.
      .refine((s) => Buffer.byteLength(s, 'utf8') >= 32, { message: 'an HMAC secret must be at least 32 bytes' })
      .transform((s) => new Secret(s))
      .optional()
      .describe('HMAC secret inline (UTF-8); prefer `secret_file`. At least 32 bytes.'),
    secret_file: z
      .string()
      .optional()
      .describe('File holding the HMAC secret (whole file, one trailing newline removed).'),
    public_key_file: z.string().optional().describe('PEM public key (SPKI) or a JWK JSON file (RSA, EC, OKP).'),
    jwk: z.record(z.string(), z.unknown()).optional().describe('Public JWK inline.'),
    jwks_url: z
      .url({ protocol: /^https?$/ })
      // fetch refuses such a URL with an error quoting it whole, which would carry the password into every
      // CONNECT's step detail (audit log) and the broker log.
      .refine((url) => !/^[a-z]+:\/\/[^/?#]*@/i.test(url), 'must not carry a user name or password')
      .optional()
      .describe('JWKS endpoint; keys are selected by `kid`.'),
    jwks_refresh_ms: z
      .number()
      .int()
      .min(1_000)
      .max(86_400_000)
      .default(600_000)
      .describe(
        'Refetch the JWKS when the cached copy is older than this; also the longest a key removed from the JWKS keeps working.',
      ),
    jwks_min_refetch_ms: z
      .number()
      .int()
      .min(0)
      .max(3_600_000)
      .default(30_000)
      .describe(
        'The JWKS is requested at most this often, whatever the outcome of the last request: an unknown `kid` refetches early within this limit, and a failing identity provider is not asked again before it passes (rate limit against forged kids).',
      ),
    jwks_stale_if_error_ms: z
      .number()
      .int()
      .min(0)
      .max(604_800_000)
      .default(0)
      .describe(
        'While the identity provider cannot be reached (or fails, or is in its back-off) after the copy passed `jwks_refresh_ms`, keep verifying with the last good copy for up to this much longer. 0 (default): refuse tokens then (serverUnavailable, fail closed). A key the provider removed keeps working for up to `jwks_refresh_ms` plus this.',
      ),
    jwks_timeout_ms: z.number().int().min(100).max(60_000).default(5_000).describe('JWKS fetch deadline.'),
    jwks_max_bytes: z
      .number()
      .int()
      .min(1_024)
      .max(67_108_864)
      .default(1_048_576)
      .describe('Largest JWKS response accepted (bytes); a larger one is refused as it arrives, like a failed fetch.'),
    issuer: stringOrList.optional().describe('Required `iss` (one of).'),
    audience: stringOrList.optional().describe('Required `aud` (one of).'),
    require_exp: z.boolean().default(true).describe('Refuse tokens without `exp`.'),
    clock_skew_s: z
      .number()
      .int()
      .min(0)
      .max(300)
      .default(30)
      .describe('Tolerance for `exp`/`nbf`/`iat`, at most 300 s.'),
    max_token_age_s: z.number().int().min(1).optional().describe('Refuse tokens whose `iat` is older than this.'),
    claims: z
      .object({
        username: z
          .string()
          .min(1)
          .nullable()
          .default('sub')
          .describe(
            'Claim that becomes the username. null: the identity has no username, unless `require_equal.username` proved the CONNECT username equal to a claim.',
          ),
        groups: z
          .string()
          .min(1)
          .optional()
          .describe('Claim with groups: array of strings or space/comma-separated string.'),
        attributes: z
          .array(z.string().min(1))
          .default(['sub', 'iss'])
          .describe('Claims copied to identity attributes as `jwt.<claim>`.'),
        acl: z.string().min(1).optional().describe('Claim carrying ACL rules for the policy engine.'),
      })
      .strict()
      .prefault({})
      .describe('How claims map onto the identity.'),
    require_equal: z
      .object({
        clientid: z.string().min(1).optional().describe('Claim that must equal the client id.'),
        username: z.string().min(1).optional().describe('Claim that must equal the CONNECT username.'),
      })
      .strict()
      .prefault({})
      .describe('Bind the token to the connection.'),
  })
  .strict()
  .superRefine((s, ctx) => {
    const sources = [s.secret, s.secret_file, s.public_key_file, s.jwk, s.jwks_url].filter(
      (v) => v !== undefined,
    ).length;
    if (sources !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: 'exactly one of secret, secret_file, public_key_file, jwk, jwks_url is required',
      });
    }
    const hmac = s.secret !== undefined || s.secret_file !== undefined;
    const hmacAlgs = s.algorithms.filter((a) => (HMAC as readonly string[]).includes(a));
    if (hmac && hmacAlgs.length !== s.algorithms.length) {
      ctx.addIssue({ code: 'custom', path: ['algorithms'], message: 'an HMAC secret only allows HS256/HS384/HS512' });
    }
    if (!hmac && hmacAlgs.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['algorithms'], message: 'HS* algorithms need `secret` or `secret_file`' });
    }
    if (s.token_from === 'username' && s.require_equal.username !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['require_equal', 'username'],
        message: 'cannot compare with the username when the token is the username',
      });
    }
  });

type JwtSettings = z.output<typeof jwtSettingsSchema>;

function keySource(s: JwtSettings, id: string, ctx: AuthenticatorContext): JwtKeySource {
  const path = (p: string): string => (isAbsolute(p) ? p : resolve(ctx.baseDir, p));
  const read = (p: string): Buffer => {
    try {
      return readFileSync(path(p));
    } catch (error) {
      throw new BulwarkError(
        'BULWARK_ERR_CONFIG_INVALID',
        `cannot read key file: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
        {
          file: path(p),
          line: 1,
          column: 1,
        },
      );
    }
  };
  if (s.secret !== undefined || s.secret_file !== undefined) {
    let bytes = s.secret !== undefined ? Buffer.from(s.secret.reveal()) : read(s.secret_file ?? '');
    if (s.secret_file !== undefined && bytes.at(-1) === 0x0a)
      bytes = bytes.subarray(0, bytes.at(-2) === 0x0d ? -2 : -1);
    // RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
    if (bytes.length < 32)
      throw new BulwarkError('BULWARK_ERR_CONFIG_INVALID', 'jwt: HMAC secret shorter than 32 bytes');
    return { kind: 'static', key: new Uint8Array(bytes) };
  }
  if (s.jwks_url !== undefined) {
    const source = new JwksSource({
      url: new URL(s.jwks_url),
      refreshMs: s.jwks_refresh_ms,
      minRefetchMs: s.jwks_min_refetch_ms,
      timeoutMs: s.jwks_timeout_ms,
      maxBytes: s.jwks_max_bytes,
      staleIfErrorMs: s.jwks_stale_if_error_ms,
      algorithms: s.algorithms,
      onStaleUse: (ageMs, failure) =>
        ctx.logger.warn(
          { authenticator: id, jwks_age_s: Math.round(ageMs / 1000), failure },
          'JWKS refresh failed; verifying tokens with the last good copy (jwks_stale_if_error_ms)',
        ),
    });
    return { kind: 'remote', getKey: source.getKey, staleness: () => source.staleness() };
  }
  let key: KeyObject;
  try {
    if (s.jwk !== undefined) key = createPublicKey({ key: s.jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    else {
      const text = read(s.public_key_file ?? '').toString('utf8');
      key = text.trimStart().startsWith('{')
        ? createPublicKey({ key: JSON.parse(text) as import('node:crypto').JsonWebKey, format: 'jwk' })
        : createPublicKey(text);
    }
  } catch (error) {
    if (error instanceof BulwarkError) throw error;
    throw new BulwarkError(
      'BULWARK_ERR_CONFIG_INVALID',
      'jwt: the configured public key cannot be parsed',
      undefined,
      'give a PEM SPKI public key or a public JWK',
    );
  }
  if (key.type !== 'public')
    throw new BulwarkError('BULWARK_ERR_CONFIG_INVALID', 'jwt: configure a public key, not a private one');
  return { kind: 'static', key };
}

export const jwtType = defineAuthenticatorType({
  type: 'jwt',
  settings: jwtSettingsSchema,
  create: (s, id, ctx) =>
    new JwtAuthenticator({
      id,
      tokenFrom: s.token_from,
      keys: keySource(s, id, ctx),
      algorithms: s.algorithms,
      issuer: s.issuer,
      audience: s.audience,
      requireExp: s.require_exp,
      clockSkewS: s.clock_skew_s,
      maxTokenAgeS: s.max_token_age_s,
      claims: {
        username: s.claims.username ?? undefined,
        groups: s.claims.groups,
        attributes: s.claims.attributes,
        acl: s.claims.acl,
      },
      requireEqual: { clientid: s.require_equal.clientid, username: s.require_equal.username },
    }),
});
