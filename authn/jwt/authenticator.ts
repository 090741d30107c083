import type { KeyObject } from 'node:crypto';
import { errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import { looksLikeJwt } from '../chain.js';
import type { Authenticator, AuthnOutcome, ConnectAttempt } from '../types.js';

export type JwtKeySource =
  | { kind: 'static'; key: KeyObject | Uint8Array }
  | {
      kind: 'remote';
      getKey: JWTVerifyGetKey;
      /** Set when tokens are verified with a copy past its refresh (`jwks_stale_if_error_ms`): why. */
      staleness?: () => string | undefined;
    };

export interface JwtClaimMapping {
  /** Claim whose value becomes the identity's username; undefined keeps the CONNECT username. */
  username: string | undefined;
  groups: string | undefined;
  /** Claims copied to `identity.attributes` as `jwt.<claim>`. */
  attributes: readonly string[];
  /** Claim carrying ACL entries for the policy engine (`identity.aclRules`). */
  acl: string | undefined;
}

export interface JwtAuthenticatorOptions {
  id: string;
  tokenFrom: 'password' | 'username';
  keys: JwtKeySource;
  algorithms: readonly string[];
  issuer: string | readonly string[] | undefined;
  audience: string | readonly string[] | undefined;
  requireExp: boolean;
  clockSkewS: number;
  maxTokenAgeS: number | undefined;
  claims: JwtClaimMapping;
  /** Claims that must equal the CONNECT's client id / username. */
  requireEqual: { clientid: string | undefined; username: string | undefined };
  /** Injected for tests; defaults to the wall clock. */
  now?: () => number;
}

/** jose errors that mean "this token is not acceptable" rather than "we could not check". */
const REFUSALS: ReadonlySet<string> = new Set([
  'ERR_JWT_EXPIRED',
  'ERR_JWT_CLAIM_VALIDATION_FAILED',
  'ERR_JWT_INVALID',
  'ERR_JWS_INVALID',
  'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  'ERR_JOSE_ALG_NOT_ALLOWED',
  'ERR_JOSE_NOT_SUPPORTED',
  'ERR_JWKS_NO_MATCHING_KEY',
  'ERR_JWKS_MULTIPLE_MATCHING_KEYS',
  'ERR_JWK_INVALID',
]);

/**
 * Verifies a compact JWS carried in the password (or username) field. Algorithms are pinned by configuration,
 * `exp` is required by default and the clock skew is bounded. A JWKS that cannot be fetched is a backend
 * failure (thrown: fail closed); a token that does not verify is a deny. Tokens are never logged or echoed:
 * details name the failed check only.
 */
export class JwtAuthenticator implements Authenticator {
  readonly type = 'jwt';
  readonly id: string;
  readonly usernameIsCredential: boolean;

  constructor(private readonly options: JwtAuthenticatorOptions) {
    this.id = options.id;
    this.usernameIsCredential = options.tokenFrom === 'username';
  }

  async authenticate(attempt: ConnectAttempt, _signal: AbortSignal): Promise<AuthnOutcome> {
    const o = this.options;
    const token = o.tokenFrom === 'password' ? attempt.password?.revealString() : attempt.username;
    if (token === undefined || token === '') return { kind: 'ignore', detail: `no token in ${o.tokenFrom}` };
    const shaped =
      o.tokenFrom === 'password'
        ? looksLikeJwt(attempt)
        : /^[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*$/.test(token);
    if (!shaped) return { kind: 'ignore', detail: `${o.tokenFrom} is not a JWT` };

    const verifyOptions: JWTVerifyOptions = {
      algorithms: [...o.algorithms],
      clockTolerance: o.clockSkewS,
      requiredClaims: o.requireExp ? ['exp'] : [],
      ...(o.issuer !== undefined ? { issuer: typeof o.issuer === 'string' ? o.issuer : [...o.issuer] } : {}),
      ...(o.audience !== undefined ? { audience: typeof o.audience === 'string' ? o.audience : [...o.audience] } : {}),
      ...(o.maxTokenAgeS !== undefined ? { maxTokenAge: o.maxTokenAgeS } : {}),
      ...(o.now ? { currentDate: new Date(o.now()) } : {}),
    };
    let payload: JWTPayload;
    try {
      const result =
        o.keys.kind === 'static'
          ? await jwtVerify(token, o.keys.key, verifyOptions)
          : await jwtVerify(token, o.keys.getKey, verifyOptions);
      payload = result.payload;
    } catch (error) {
      if (error instanceof errors.JOSEError && REFUSALS.has(error.code)) {
        // The failed check of the client's own token is worth telling it (refresh an expired token, fix the
        // audience); it names no key, claim value or anything of the broker's side.
        const detail = refusalDetail(error);
        return { kind: 'deny', reason: 'badUserNameOrPassword', detail, clientDetail: detail };
      }
      throw error instanceof errors.JOSEError ? new Error(`JWT keys unavailable (${error.code})`) : error;
    }
    const outcome = this.#identity(attempt, payload);
    const stale = o.keys.kind === 'remote' ? o.keys.staleness?.() : undefined;
    return outcome.kind === 'allow' && stale !== undefined ? { ...outcome, detail: stale } : outcome;
  }

  #identity(attempt: ConnectAttempt, payload: JWTPayload): AuthnOutcome {
    const { claims, requireEqual, tokenFrom } = this.options;
    if (requireEqual.clientid !== undefined && claimText(payload, requireEqual.clientid) !== attempt.clientId) {
      const detail = `claim ${requireEqual.clientid} does not equal the client id`;
      return { kind: 'deny', reason: 'notAuthorized', detail, clientDetail: detail };
    }
    if (requireEqual.username !== undefined) {
      if (tokenFrom === 'username' || claimText(payload, requireEqual.username) !== attempt.username) {
        const detail = `claim ${requireEqual.username} does not equal the username`;
        return { kind: 'deny', reason: 'notAuthorized', detail, clientDetail: detail };
      }
    }
    // Only a name the token vouches for: the CONNECT User Name counts when a claim was required to equal it.
    let username: string | undefined =
      tokenFrom === 'password' && requireEqual.username !== undefined ? attempt.username : undefined;
    if (claims.username !== undefined) {
      username = claimText(payload, claims.username);
      if (username === undefined) {
        return { kind: 'deny', reason: 'badUserNameOrPassword', detail: `token has no ${claims.username} claim` };
      }
    }
    const attributes: Record<string, string> = {};
    for (const name of claims.attributes) {
      const v = claimText(payload, name);
      if (v !== undefined) attributes[`jwt.${name}`] = v;
    }
    return {
      kind: 'allow',
      identity: {
        clientId: attempt.clientId,
        username,
        groups: claims.groups !== undefined ? groupsOf(payload[claims.groups]) : [],
        attributes,
        superuser: false,
        anonymous: false,
        authenticator: this.id,
        // The same skew that admitted the token at CONNECT applies to the disconnect, or it would be cut off at once.
        ...(typeof payload.exp === 'number' ? { expiresAt: (payload.exp + this.options.clockSkewS) * 1000 } : {}),
        ...(claims.acl !== undefined && payload[claims.acl] !== undefined ? { aclRules: payload[claims.acl] } : {}),
      },
    };
  }
}

function refusalDetail(error: InstanceType<typeof errors.JOSEError>): string {
  if (error instanceof errors.JWTClaimValidationFailed || error instanceof errors.JWTExpired) {
    return `token ${error.claim} check failed (${error.reason})`;
  }
  return `token refused (${error.code})`;
}

function claimText(payload: JWTPayload, name: string): string | undefined {
  const v = payload[name];
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

/** An array of strings, or a space- or comma-separated string (as OAuth `scope` is). */
function groupsOf(v: unknown): string[] {
  if (Array.isArray(v)) return v.filter((g): g is string => typeof g === 'string' && g !== '');
  if (typeof v === 'string') return v.split(/[\s,]+/).filter((g) => g !== '');
  return [];
}
