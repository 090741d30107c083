import { describe, expect, it } from 'vitest';
import {
  escapeDnValue,
  escapeFilterValue,
  expandTemplate,
  templatePlaceholders,
} from '../../../../authn/ldap/escape.js';
import { groupNameFromDn } from '../../../../authn/ldap/groups.js';

describe('RFC 4515 filter value escaping', () => {
  const cases: Array<[string, string]> = [
    ['alice', 'alice'],
    ['*', '\\2a'],
    ['al*ce', 'al\\2ace'],
    ['alice)(uid=*', 'alice\\29\\28uid=\\2a'],
    ['back\\slash', 'back\\5cslash'],
    ['nul\0byte', 'nul\\00byte'],
    ['élève', 'élève'],
  ];
  for (const [input, expected] of cases) {
    it(`escapes ${JSON.stringify(input)} as ${JSON.stringify(expected)}`, () => {
      expect(escapeFilterValue(input)).toBe(expected);
    });
  }

  it('leaves no filter metacharacter unescaped in any single-character input', () => {
    for (let code = 0; code < 128; code++) {
      const escaped = escapeFilterValue(String.fromCharCode(code));
      expect(escaped.replace(/\\[0-9a-f]{2}/g, '')).not.toMatch(/[*()\\\0]/);
    }
  });
});

describe('RFC 4514 DN value escaping', () => {
  const cases: Array<[string, string]> = [
    ['alice', 'alice'],
    ['alice,ou=admins', 'alice\\,ou\\=admins'],
    ['a+b', 'a\\+b'],
    ['"q"', '\\"q\\"'],
    ['<x>;', '\\<x\\>\\;'],
    [' lead', '\\ lead'],
    ['trail ', 'trail\\ '],
    ['#hash', '\\#hash'],
    ['back\\', 'back\\\\'],
    ['nul\0', 'nul\\00'],
  ];
  for (const [input, expected] of cases) {
    it(`escapes ${JSON.stringify(input)} as ${JSON.stringify(expected)}`, () => {
      expect(escapeDnValue(input)).toBe(expected);
    });
  }
});

describe('templates', () => {
  it('substitutes escaped values for ${username}, ${clientid} and ${dn}', () => {
    const out = expandTemplate(
      '(&(uid=${username})(description=${clientid})(member=${dn}))',
      { username: 'a*', clientid: 'c)', dn: 'uid=x,dc=y' },
      escapeFilterValue,
    );
    expect(out).toBe('(&(uid=a\\2a)(description=c\\29)(member=uid=x,dc=y))');
  });

  it('lists the placeholders a template uses', () => {
    expect([...templatePlaceholders('uid=${username},ou=${clientid}')]).toEqual(['username', 'clientid']);
  });
});

describe('group names from memberOf values', () => {
  it('takes the first RDN value when its attribute is the name attribute', () => {
    expect(groupNameFromDn('cn=engineers,ou=groups,dc=example,dc=com', 'cn')).toBe('engineers');
    expect(groupNameFromDn('CN=Ops\\, Night,OU=Groups', 'cn')).toBe('Ops, Night');
    expect(groupNameFromDn('ou=engineers,dc=example', 'cn')).toBeUndefined();
  });
});
