import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createBuiltinRegistry } from '../../../../authn/builtin.js';
import { ldapType } from '../../../../authn/ldap/type.js';
import { formatScramCredentialLine } from '../../../../authn/scram/file-store.js';
import { deriveScramCredential } from '../../../../authn/scram/mechanism.js';
import { scramType } from '../../../../authn/scram/type.js';
import { VerificationServices } from '../../../../authn/verify/services.js';
import { silentLogger } from '../../../../src/log.js';
import { ScramClient } from '../../../helpers/scram-client.js';
import { attempt } from './fixtures.js';

describe('scram and ldap registry types', () => {
  it('build a chain from snake_case configuration whose SCRAM step completes an exchange', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scram-type-'));
    const cred = await deriveScramCredential('pw', 'SCRAM-SHA-512', 4096);
    writeFileSync(join(dir, 'scram.txt'), formatScramCredentialLine('alice', cred) + '\n');
    const registry = createBuiltinRegistry([ldapType, scramType]);
    const chain = registry.parseAndBuild(
      {
        steps: [
          { type: 'scram', store: { type: 'file', path: 'scram.txt' } },
          {
            type: 'ldap',
            url: 'ldaps://127.0.0.1:1',
            user_dn_template: 'uid=${username},dc=example,dc=com',
            groups: { base_dn: 'dc=example,dc=com', schemas: ['memberOf'] },
          },
        ],
      },
      { verification: new VerificationServices(), onEvent: () => undefined, logger: silentLogger, baseDir: dir },
    );
    expect(chain.supportsMethod('SCRAM-SHA-512')).toBe(true);
    expect(chain.supportsMethod('SCRAM-SHA-1')).toBe(false);
    const client = new ScramClient({ hash: 'SHA-512', username: 'alice', password: 'pw' });
    const connect = attempt('SCRAM-SHA-512', client.clientFirst());
    const first = await chain.authenticate(connect);
    expect(first.kind).toBe('continue');
    if (first.kind !== 'continue') return;
    const final = await chain.continueExchange(first.state, connect, client.clientFinal(first.data), false);
    expect(final.kind === 'allow' && final.identity).toMatchObject({ username: 'alice', authenticator: 'scram' });
  });

  it('refuses an ldap step whose cross-field rules fail, naming the rule', () => {
    const registry = createBuiltinRegistry([ldapType, scramType]);
    expect(() =>
      registry.parseAndBuild(
        { steps: [{ type: 'ldap', url: 'ldap://dir', user_dn_template: 'uid=${username},dc=x' }] },
        { verification: new VerificationServices(), onEvent: () => undefined, logger: silentLogger, baseDir: '/' },
      ),
    ).toThrow(/in clear/);
  });
});
