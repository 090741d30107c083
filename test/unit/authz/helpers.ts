import type { Identity } from '../../../authn/types.js';
import { CompiledPolicy } from '../../../authz/compile.js';
import { formatDiagnostic } from '../../../authz/model.js';
import { parsePolicyText } from '../../../authz/parse.js';
import type { AccessAction, AccessRequest } from '../../../authz/types.js';

/** Compiles policy text, failing loudly on any diagnostic error. */
export function policyFrom(text: string, file = 'test.policy.yaml'): CompiledPolicy {
  const parsed = parsePolicyText(text, file);
  const errors = parsed.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) throw new Error(errors.map(formatDiagnostic).join('\n'));
  return new CompiledPolicy(parsed.rules, { sourceId: 'file', superusers: parsed.superusers?.value ?? false });
}

export function identity(over: Partial<Identity> = {}): Identity {
  return {
    clientId: 'c1',
    username: 'alice',
    groups: [],
    attributes: {},
    superuser: false,
    anonymous: false,
    authenticator: 'password-file',
    ...over,
  };
}

export function request(
  action: AccessAction,
  topic: string,
  over: Partial<Omit<AccessRequest, 'action' | 'topic'>> = {},
): AccessRequest {
  return {
    identity: identity(),
    listener: 'default',
    peerAddress: '127.0.0.1',
    action,
    topic,
    qos: 0,
    retain: false,
    sharedGroup: undefined,
    ...over,
  };
}

/** One rule in YAML, for table-driven tests. */
export function rule(name: string, body: string): string {
  return `  - name: ${name}\n${body
    .trim()
    .split('\n')
    .map((l) => `    ${l.trim()}`)
    .join('\n')}\n`;
}
