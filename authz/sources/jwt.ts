import { parse as parseYaml } from 'yaml';
import type { Identity } from '../../authn/types.js';
import { BulwarkError } from '../../src/errors.js';
import { CompiledPolicy, NOMATCH } from '../compile.js';
import { formatDiagnostic } from '../model.js';
import { parseRuleData } from '../parse.js';
import type { AccessRequest, AuthzOutcome, AuthzSource } from '../types.js';

/**
 * ACL entries carried by the credential (`identity.aclRules`, filled by the JWT authenticator from a claim), in
 * the policy-file rule grammar. The rules apply to the bearer only, so `subjects` may be omitted; they cannot
 * enable superusers. Compiled once per identity object. A claim that does not parse is a source failure: the
 * chain denies (fail closed) unless the source is configured `on_error: next`.
 */
export class JwtClaimSource implements AuthzSource {
  readonly #compiled = new WeakMap<Identity, CompiledPolicy | BulwarkError>();

  constructor(readonly id: string = 'jwt') {}

  authorize(req: AccessRequest): AuthzOutcome {
    const claim = req.identity.aclRules;
    if (claim === undefined || claim === null) return NOMATCH;
    let compiled = this.#compiled.get(req.identity);
    if (compiled === undefined) {
      compiled = this.#compile(claim);
      this.#compiled.set(req.identity, compiled);
    }
    if (compiled instanceof BulwarkError) throw compiled;
    return compiled.authorize(req);
  }

  #compile(claim: unknown): CompiledPolicy | BulwarkError {
    let data: unknown = claim;
    if (typeof claim === 'string') {
      try {
        data = parseYaml(claim) as unknown;
      } catch {
        return new BulwarkError('BULWARK_ERR_POLICY_PARSE', 'ACL claim is a string that is not YAML or JSON');
      }
    }
    const origin = `${this.id}:aclRules`;
    const parsed = parseRuleData(data, origin);
    const errors = parsed.diagnostics.filter((d) => d.severity === 'error');
    if (errors.length > 0) {
      return new BulwarkError(
        'BULWARK_ERR_POLICY_INVALID',
        `ACL claim rejected: ${errors.map(formatDiagnostic).join('; ')}`,
      );
    }
    return new CompiledPolicy(parsed.rules, { sourceId: this.id, superusers: false });
  }
}
