import { describe, expect, it } from 'vitest';
import { ldapSettingsProblems, ldapSettingsSchema } from '../../../../authn/ldap/config.js';
import { ldapOptionsFromSettings } from '../../../../authn/ldap/create.js';
import { BulwarkError } from '../../../../src/errors.js';

const parse = (raw: unknown) => ldapSettingsSchema.parse(raw);

describe('ldap settings', () => {
  it('refuses ldap:// without StartTLS unless plaintext is explicitly allowed', () => {
    const s = parse({ url: 'ldap://dir:389', user_dn_template: 'uid=${username},dc=x' });
    expect(ldapSettingsProblems(s)).toEqual([expect.stringMatching(/^url: .*in clear/)]);
    expect(ldapSettingsProblems({ ...s, start_tls: true })).toEqual([]);
    expect(ldapSettingsProblems({ ...s, allow_plaintext: true })).toEqual([]);
    expect(() => ldapOptionsFromSettings(s, 'ldap', '/')).toThrow(BulwarkError);
  });

  it('refuses a URL with user info (it would name the backend in logs and audit records, password and all)', () => {
    const r = ldapSettingsSchema.safeParse({
      url: 'ldaps://cn=admin:hunter2@dir:636',
      user_dn_template: 'uid=${username}',
    });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).not.toContain('hunter2');
    expect(ldapSettingsSchema.safeParse({ url: 'ldaps://dir:636', user_dn_template: 'uid=${username}' }).success).toBe(
      true,
    );
  });

  it('needs exactly one of user_dn_template and search, and a service account for search', () => {
    const both = parse({
      url: 'ldaps://dir',
      user_dn_template: 'uid=${username},dc=x',
      search: { base_dn: 'dc=x' },
    });
    expect(ldapSettingsProblems(both)).toContain('search: set exactly one of user_dn_template and search');
    const searchOnly = parse({ url: 'ldaps://dir', search: { base_dn: 'dc=x' } });
    expect(ldapSettingsProblems(searchOnly)).toEqual(['service_account: search needs service_account']);
  });

  it('refuses to copy password or key attributes into the identity, whatever their case', () => {
    const s = parse({
      url: 'ldaps://dir',
      user_dn_template: 'uid=${username},dc=x',
      attributes: ['mail', 'userPassword', 'UNICODEPWD', 'sambaNTPassword'],
    });
    expect(ldapSettingsProblems(s)).toEqual([
      expect.stringMatching(/^attributes: userPassword holds credentials; .* the wills kept in the store/),
      expect.stringMatching(/^attributes: UNICODEPWD holds credentials/),
      expect.stringMatching(/^attributes: sambaNTPassword holds credentials/),
    ]);
    expect(ldapSettingsProblems({ ...s, attributes: ['mail', 'departmentNumber'] })).toEqual([]);
    expect(() => ldapOptionsFromSettings(s, 'ldap', '/')).toThrow(/userPassword holds credentials/);
  });

  it('rejects a DN template without ${username} and unknown keys', () => {
    expect(() => parse({ url: 'ldaps://dir', user_dn_template: 'uid=fixed,dc=x' })).toThrow();
    expect(() => parse({ url: 'ldaps://dir', user_dn_template: 'uid=${username}', tls: { verify: false } })).toThrow();
  });

  it('maps snake_case settings to the authenticator options with safe defaults', () => {
    const s = parse({
      url: 'ldaps://dir:636',
      search: { base_dn: 'ou=people,dc=x' },
      service_account: { dn: 'cn=svc,dc=x', password: 'pw' },
      groups: { base_dn: 'ou=groups,dc=x', schemas: ['posixGroup'] },
    });
    const o = ldapOptionsFromSettings(s, 'corp-ldap', '/');
    expect(o).toMatchObject({
      id: 'corp-ldap',
      lookup: { kind: 'search', filter: '(&(objectClass=inetOrgPerson)(uid=${username}))', scope: 'sub' },
      connection: { tls: { rejectUnauthorized: true }, operationTimeoutMs: 3000 },
      userNotFound: 'deny',
      cache: { bindTtlMs: 60_000 },
    });
    expect(String(o.service?.password)).toBe('[redacted]');
  });
});
