import { execFileSync } from 'node:child_process';
import { describe, expect, inject, it } from 'vitest';
import { SLAPD_SEED } from '../../../helpers/services/slapd.js';

const slapd = inject('slapd');
const info = 'missing' in slapd ? undefined : slapd;
if (!info) console.warn(`[skip] ${'missing' in slapd ? slapd.missing : ''}`);

function ldap(tool: string, args: string[]): string {
  return execFileSync(tool, ['-x', ...args], {
    env: { ...process.env, LDAPTLS_CACERT: info?.caFile ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  }).toString();
}

describe.skipIf(!info)('the slapd test service', () => {
  it('maintains memberOf on users added to a groupOfNames group', () => {
    const out = ldap('ldapsearch', [
      '-H',
      info!.url,
      '-D',
      info!.bindDn,
      '-w',
      info!.bindPassword,
      '-b',
      SLAPD_SEED.peopleDn,
      '(uid=alice)',
      'memberOf',
    ]);
    expect(out).toContain(`memberOf: cn=engineers,${SLAPD_SEED.groupsDn}`);
  });

  it('refuses a bind by the locked user', () => {
    expect(() =>
      ldap('ldapwhoami', [
        '-H',
        info!.url,
        '-D',
        `uid=dave,${SLAPD_SEED.peopleDn}`,
        '-w',
        SLAPD_SEED.users.dave.password,
      ]),
    ).toThrow();
  });

  it('serves LDAPS and StartTLS with the minted CA', () => {
    const dn = `uid=bob,${SLAPD_SEED.peopleDn}`;
    expect(ldap('ldapwhoami', ['-H', info!.ldapsUrl!, '-D', dn, '-w', SLAPD_SEED.users.bob.password])).toContain(dn);
    expect(ldap('ldapwhoami', ['-ZZ', '-H', info!.url, '-D', dn, '-w', SLAPD_SEED.users.bob.password])).toContain(dn);
  });
});
