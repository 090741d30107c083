import { describe, expect, it } from 'vitest';
import { formatDiagnostic } from '../../../authz/model.js';
import { parseCasesText, parsePolicyText, parseRuleData } from '../../../authz/parse.js';

/** A valid rule to embed in fixtures; line numbers below count from the fixture's first line. */
const okRule = `  - name: ok
    allow: publish
    subjects: all
    topics: ['a/b']
`;

interface ErrorCase {
  what: string;
  text: string;
  message: RegExp;
  line: number;
  column: number;
}

const errors: ErrorCase[] = [
  { what: 'YAML syntax error', text: 'rules: [\n  - a\n', message: /./, line: 2, column: 3 },
  { what: 'duplicate YAML key', text: 'rules: []\nrules: []\n', message: /unique/i, line: 2, column: 1 },
  { what: 'top level is not a mapping', text: '- a\n- b\n', message: /mapping at the top level/, line: 1, column: 1 },
  {
    what: 'unknown top-level key',
    text: `rulez: []\nrules:\n${okRule}`,
    message: /unknown key "rulez"/,
    line: 1,
    column: 1,
  },
  { what: 'missing rules', text: 'version: 1\n', message: /rules under "rules:"/, line: 1, column: 1 },
  {
    what: 'unsupported version',
    text: `version: 2\nrules:\n${okRule}`,
    message: /unsupported policy version/,
    line: 1,
    column: 10,
  },
  {
    what: 'superusers not a boolean',
    text: `superusers: yes please\nrules:\n${okRule}`,
    message: /superusers must be true or false/,
    line: 1,
    column: 13,
  },
  { what: 'rules not a list', text: 'rules: {}\n', message: /"rules" must be a list/, line: 1, column: 8 },
  {
    what: 'rule not a mapping',
    text: 'rules:\n  - just a string\n',
    message: /rule 1 must be a mapping/,
    line: 2,
    column: 5,
  },
  {
    what: 'rule without a name',
    text: 'rules:\n  - allow: publish\n    subjects: all\n    topics: [a]\n',
    message: /rule 1 has no name/,
    line: 2,
    column: 5,
  },
  {
    what: 'rule name with bad characters',
    text: "rules:\n  - name: 'two words'\n    allow: publish\n    subjects: all\n    topics: [a]\n",
    message: /characters outside/,
    line: 2,
    column: 11,
  },
  {
    what: 'reserved rule name',
    text: 'rules:\n  - name: default-deny\n    allow: publish\n    subjects: all\n    topics: [a]\n',
    message: /reserved name/,
    line: 2,
    column: 11,
  },
  {
    what: 'duplicate rule name',
    text: `rules:\n${okRule}${okRule}`,
    message: /duplicate rule name "ok"/,
    line: 6,
    column: 11,
  },
  {
    what: 'unknown rule key (a typo)',
    text: 'rules:\n  - name: r\n    allow: publish\n    subject: all\n    topics: [a]\n',
    message: /unknown key "subject"/,
    line: 4,
    column: 5,
  },
  {
    what: 'both allow and deny',
    text: 'rules:\n  - name: r\n    allow: publish\n    deny: publish\n    subjects: all\n    topics: [a]\n',
    message: /both allow and deny/,
    line: 4,
    column: 5,
  },
  {
    what: 'neither allow nor deny',
    text: 'rules:\n  - name: r\n    subjects: all\n    topics: [a]\n',
    message: /neither allow nor deny/,
    line: 2,
    column: 5,
  },
  {
    what: 'unknown action',
    text: 'rules:\n  - name: r\n    allow: [publish, write]\n    subjects: all\n    topics: [a]\n',
    message: /unknown action "write"/,
    line: 3,
    column: 22,
  },
  {
    what: 'missing subjects',
    text: 'rules:\n  - name: r\n    allow: publish\n    topics: [a]\n',
    message: /has no subjects/,
    line: 2,
    column: 5,
  },
  {
    what: 'empty subjects mapping',
    text: 'rules:\n  - name: r\n    allow: publish\n    subjects: {}\n    topics: [a]\n',
    message: /subjects must not be empty/,
    line: 4,
    column: 15,
  },
  {
    what: 'unknown subject key',
    text: 'rules:\n  - name: r\n    allow: publish\n    subjects: { usernames: [a] }\n    topics: [a]\n',
    message: /unknown key "usernames"/,
    line: 4,
    column: 17,
  },
  {
    what: 'unquoted numeric username',
    text: 'rules:\n  - name: r\n    allow: publish\n    subjects: { users: [007] }\n    topics: [a]\n',
    message: /must be a string, got number/,
    line: 4,
    column: 25,
  },
  {
    what: 'star in the middle of a value',
    text: "rules:\n  - name: r\n    allow: publish\n    subjects: { clients: ['a*b'] }\n    topics: [a]\n",
    message: /only allowed at the end/,
    line: 4,
    column: 27,
  },
  {
    what: 'empty subject list',
    text: 'rules:\n  - name: r\n    allow: publish\n    subjects: { groups: [] }\n    topics: [a]\n',
    message: /must not be an empty list/,
    line: 4,
    column: 25,
  },
  {
    what: 'bad CIDR',
    text: 'rules:\n  - name: r\n    allow: publish\n    subjects: { addresses: [10.0.0.0/33] }\n    topics: [a]\n',
    message: /not an address or CIDR/,
    line: 4,
    column: 29,
  },
  {
    what: 'superuser subject not boolean',
    text: 'rules:\n  - name: r\n    allow: publish\n    subjects: { superuser: maybe }\n    topics: [a]\n',
    message: /superuser must be true or false/,
    line: 4,
    column: 28,
  },
  {
    what: 'missing topics',
    text: 'rules:\n  - name: r\n    allow: publish\n    subjects: all\n',
    message: /has no topics/,
    line: 2,
    column: 5,
  },
  {
    what: 'unquoted # turning the topic into a comment',
    text: 'rules:\n  - name: r\n    allow: publish\n    subjects: all\n    topics: #\n',
    message: /topics is empty/,
    line: 5,
    column: 5,
  },
  {
    what: "'#' not last",
    text: "rules:\n  - name: r\n    allow: publish\n    subjects: all\n    topics: ['a/#/b']\n",
    message: /must be the last level/,
    line: 5,
    column: 14,
  },
  {
    what: 'wildcard inside a level',
    text: "rules:\n  - name: r\n    allow: publish\n    subjects: all\n    topics: ['a/b+']\n",
    message: /wildcard inside a level/,
    line: 5,
    column: 14,
  },
  {
    what: 'placeholder not filling a level',
    text: "rules:\n  - name: r\n    allow: publish\n    subjects: all\n    topics: ['a/x${username}']\n",
    message: /must fill a whole topic level/,
    line: 5,
    column: 14,
  },
  {
    what: 'unknown placeholder',
    text: "rules:\n  - name: r\n    allow: publish\n    subjects: all\n    topics: ['a/${user}']\n",
    message: /unknown placeholder/,
    line: 5,
    column: 14,
  },
  {
    what: 'qos out of range',
    text: "rules:\n  - name: r\n    allow: publish\n    subjects: all\n    topics: ['a']\n    when: { qos: [0, 3] }\n",
    message: /qos must be 0, 1, 2/,
    line: 6,
    column: 22,
  },
  {
    what: 'unknown condition',
    text: "rules:\n  - name: r\n    allow: publish\n    subjects: all\n    topics: ['a']\n    when: { dup: true }\n",
    message: /unknown key "dup"/,
    line: 6,
    column: 13,
  },
  {
    what: 'retain not boolean',
    text: "rules:\n  - name: r\n    allow: publish\n    subjects: all\n    topics: ['a']\n    when: { retain: 1 }\n",
    message: /retain must be true or false/,
    line: 6,
    column: 21,
  },
  {
    what: 'case without an action',
    text: `rules:\n${okRule}cases:\n  - name: c\n    expect: allow\n`,
    message: /exactly one of connect, publish, subscribe, receive/,
    line: 7,
    column: 5,
  },
  {
    what: 'case with a wildcard in a publish topic',
    text: `rules:\n${okRule}cases:\n  - name: c\n    publish: 'a/+'\n    expect: allow\n`,
    message: /not a valid topic name/,
    line: 8,
    column: 14,
  },
  {
    what: 'case with a bad expectation',
    text: `rules:\n${okRule}cases:\n  - name: c\n    publish: a/b\n    expect: maybe\n`,
    message: /expect must be allow or deny/,
    line: 9,
    column: 13,
  },
  {
    what: 'case identity with an unknown key',
    text: `rules:\n${okRule}cases:\n  - name: c\n    identity: { username: a }\n    publish: a/b\n    expect: allow\n`,
    message: /unknown key "username"/,
    line: 8,
    column: 17,
  },
  {
    what: 'case identity with a bad address',
    text: `rules:\n${okRule}cases:\n  - name: c\n    identity: { address: nowhere }\n    publish: a/b\n    expect: allow\n`,
    message: /is not an IP address/,
    line: 8,
    column: 26,
  },
];

describe('policy parser errors carry file:line:column', () => {
  it.each(errors)('$what', ({ text, message, line, column }) => {
    const parsed = parsePolicyText(text, 'site.policy.yaml');
    const errs = parsed.diagnostics.filter((d) => d.severity === 'error');
    const hit = errs.find((d) => message.test(d.message));
    expect(hit, errs.map(formatDiagnostic).join('\n')).toBeDefined();
    expect(hit?.position).toEqual({ file: 'site.policy.yaml', line, column });
  });

  it('reports every error in a file, not just the first', () => {
    const text =
      "rules:\n  - name: a\n    allow: fly\n    subjects: all\n    topics: ['x']\n  - name: b\n    deny: publish\n    subjects: all\n    topics: ['x/#/y']\n";
    const parsed = parsePolicyText(text, 'f.yaml');
    expect(parsed.diagnostics.map((d) => d.position?.line)).toEqual([3, 9]);
    expect(parsed.rules).toEqual([]);
  });

  it('formats a diagnostic in the editor-friendly file:line:column form', () => {
    const parsed = parsePolicyText('rules:\n  - name: r\n    allow: publish\n    subjects: all\n', 'p.yaml');
    expect(formatDiagnostic(parsed.diagnostics[0]!)).toMatch(/^p\.yaml:2:5: error: rule "r" has no topics/);
  });
});

describe('policy parser output', () => {
  it('keeps each rule with its position, effect, subjects, topics, conditions and rationale', () => {
    const text = [
      'version: 1',
      'superusers: true',
      'rules:',
      '  - name: tenants',
      '    allow: [publish, subscribe]',
      '    subjects:',
      '      users: [alice, "svc-*"]',
      '      addresses: [10.0.0.0/8]',
      '      attributes: { jwt.tenant: [acme] }',
      "    topics: ['t/${username}/#', '$SYS/x']",
      '    when: { qos: [0, 1], retain: false, shared: true }',
      '    why: tenants own their prefix',
    ].join('\n');
    const parsed = parsePolicyText(text, 'p.yaml');
    expect(parsed.diagnostics).toEqual([]);
    expect(parsed.superusers?.value).toBe(true);
    const rule = parsed.rules[0]!;
    expect(rule.position).toEqual({ file: 'p.yaml', line: 4, column: 5 });
    expect(rule.effect).toBe('allow');
    expect(rule.actions).toEqual(['publish', 'subscribe']);
    expect(rule.subjects.users).toEqual({ exact: ['alice'], prefixes: ['svc-'] });
    expect(rule.subjects.addresses).toEqual(['10.0.0.0/8']);
    expect(rule.subjects.attributes).toEqual({ 'jwt.tenant': { exact: ['acme'], prefixes: [] } });
    expect(rule.topics).toEqual(['t/${username}/#', '$SYS/x']);
    expect(rule.topicPositions[1]).toEqual({ file: 'p.yaml', line: 10, column: 33 });
    expect(rule.conditions).toEqual({ qos: [0, 1], retain: false, shared: true });
    expect(rule.why).toBe('tenants own their prefix');
  });

  it('splits a shared subscription in a case into group and filter', () => {
    const text = `rules:\n${okRule}cases:\n  - name: c\n    identity: { user: u, groups: [g] }\n    subscribe: $share/workers/a/#\n    qos: 2\n    expect: deny\n    rule: default-deny\n`;
    const c = parsePolicyText(text, 'p.yaml').cases[0]!;
    expect(c).toMatchObject({ action: 'subscribe', topic: 'a/#', sharedGroup: 'workers', qos: 2, expect: 'deny' });
    expect(c.identity).toMatchObject({ username: 'u', anonymous: false, groups: ['g'] });
  });

  it('reads a sibling cases file and rejects stray keys in it', () => {
    const ok = parseCasesText('cases:\n  - name: c\n    publish: a\n    expect: deny\n', 'p.cases.yaml');
    expect(ok.cases).toHaveLength(1);
    const bad = parseCasesText('rules: []\ncases: []\n', 'p.cases.yaml');
    expect(bad.diagnostics[0]?.message).toMatch(/unknown key "rules"/);
    expect(bad.diagnostics[0]?.position).toEqual({ file: 'p.cases.yaml', line: 1, column: 1 });
  });

  it('parses rules given as data (a JWT claim) with subjects optional and the rule index as the line', () => {
    const ok = parseRuleData([{ name: 'own', allow: ['publish'], topics: ['x/${username}'] }], 'jwt:aclRules');
    expect(ok.diagnostics).toEqual([]);
    expect(ok.rules[0]?.subjects).toEqual({ all: true });
    const bad = parseRuleData(
      [
        { name: 'ok', allow: 'publish', topics: ['x'] },
        { name: 'b', allow: 'x', topics: ['y'] },
      ],
      'jwt:aclRules',
    );
    expect(bad.diagnostics[0]?.position).toEqual({ file: 'jwt:aclRules', line: 2, column: 0 });
  });
});
