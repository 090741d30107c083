import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { policyCheck, policyExplain, policyTest, registerPolicyCommand, type CliIo } from '../../../authz/cli.js';

function capture(): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (l) => stdout.push(l), err: (l) => stderr.push(l) };
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'bulwark-policy-cli-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const site = `version: 1
rules:
  - name: tenants
    allow: [publish, subscribe, receive]
    subjects: { anonymous: false }
    topics: ['tenants/\${username}/#']
  - name: no-secrets
    deny: [publish, subscribe, receive]
    subjects: all
    topics: ['tenants/+/secret/#']
cases:
  - name: alice publishes at home
    identity: { user: alice }
    publish: tenants/alice/x
    expect: allow
    rule: tenants
  - name: alice keeps out of secrets
    identity: { user: alice }
    publish: tenants/alice/secret/x
    expect: deny
    rule: no-secrets
`;

describe('bulwark policy check', () => {
  it('exits 0 and summarises a valid file', async () => {
    const io = capture();
    const connect = write(
      'connect.policy.yaml',
      'rules:\n  - name: users-connect\n    allow: connect\n    subjects: { anonymous: false }\n',
    );
    expect(await policyCheck([write('site.policy.yaml', site), connect], io)).toBe(0);
    expect(io.stdout.at(-1)).toBe('0 errors, 0 warnings; 3 rules, 2 cases in 2 files');
  });

  it('prints every error with file:line:column and exits non-zero', async () => {
    const file = write(
      'bad.policy.yaml',
      "rules:\n  - name: a\n    allow: fly\n    subjects: all\n    topics: ['x']\n  - name: b\n    allow: publish\n    subjects: { user: [x] }\n    topics: ['x']\n",
    );
    const io = capture();
    expect(await policyCheck([file], io)).toBe(1);
    expect(io.stderr).toContain(
      `${file}:3:12: error: rule "a": unknown action "fly" (actions are connect, publish, subscribe and receive)`,
    );
    expect(io.stderr.some((l) => l.startsWith(`${file}:8:17: error: rule "b" subjects: unknown key "user"`))).toBe(
      true,
    );
    expect(io.stderr.at(-1)).toMatch(/^2 errors/);
  });

  it('reports a duplicate rule name across files at the second definition', async () => {
    const a = write(
      'a.policy.yaml',
      "rules:\n  - name: same\n    allow: publish\n    subjects: all\n    topics: ['a']\n",
    );
    const b = write(
      'b.policy.yaml',
      "rules:\n  - name: same\n    allow: publish\n    subjects: all\n    topics: ['b']\n",
    );
    const io = capture();
    expect(await policyCheck([a, b], io)).toBe(1);
    expect(io.stderr[0]).toBe(`${b}:2:5: error: duplicate rule name "same" (first defined at ${a}:2)`);
  });

  it('warns about a rule shadowed by an earlier rule and about an allow a deny always beats', async () => {
    const file = write(
      'shadow.policy.yaml',
      [
        'rules:',
        '  - name: broad',
        '    allow: [publish]',
        '    subjects: all',
        "    topics: ['a/#']",
        '  - name: narrow',
        '    allow: publish',
        '    subjects: { users: [bob] }',
        "    topics: ['a/b/+']",
        '  - name: blocked',
        '    allow: subscribe',
        '    subjects: { groups: [ops] }',
        "    topics: ['s/x']",
        '  - name: nobody-subscribes',
        '    deny: subscribe',
        '    subjects: all',
        "    topics: ['s/#']",
      ].join('\n'),
    );
    const io = capture();
    expect(await policyCheck([file], io)).toBe(0);
    expect(io.stdout).toContain(
      `${file}:6:5: warning: rule "narrow" never decides: earlier rule "broad" (${file}:2) matches everything it does`,
    );
    expect(io.stdout).toContain(
      `${file}:10:5: warning: rule "blocked" can never allow: deny rule "nobody-subscribes" (${file}:14) matches everything it does`,
    );
  });

  it('warns about # granted to anonymous or all clients', async () => {
    const file = write(
      'open.policy.yaml',
      "rules:\n  - name: open\n    allow: subscribe\n    subjects: all\n    topics: ['x', '#']\n  - name: anon\n    allow: publish\n    subjects: { anonymous: true }\n    topics: ['#']\n",
    );
    const io = capture();
    expect(await policyCheck([file], io)).toBe(0);
    expect(io.stdout).toContain(
      `${file}:5:19: warning: rule "open" grants "#" to all clients (narrow the subjects or topics unless this is intended)`,
    );
    expect(
      io.stdout.some((l) => l.startsWith(`${file}:9:14: warning: rule "anon" grants "#" to anonymous clients`)),
    ).toBe(true);
  });

  it('does not warn about shadowing that a narrower condition prevents', async () => {
    const file = write(
      'ok.policy.yaml',
      "rules:\n  - name: qos0\n    allow: publish\n    subjects: all\n    topics: ['a/#']\n    when: { qos: 0 }\n  - name: any\n    allow: publish\n    subjects: all\n    topics: ['a/b']\n  - name: everyone-connects\n    allow: connect\n    subjects: all\n",
    );
    const io = capture();
    expect(await policyCheck([file], io)).toBe(0);
    expect(io.stdout.filter((l) => l.includes(': warning:'))).toEqual([]);
  });

  it('reports a missing file as an error', async () => {
    const io = capture();
    expect(await policyCheck([join(dir, 'nope.policy.yaml')], io)).toBe(1);
    expect(io.stderr[0]).toMatch(/nope\.policy\.yaml:1:1: error: cannot read the file \(ENOENT\)/);
  });
});

describe('bulwark policy test', () => {
  it('runs the cases and exits 0 when they pass', async () => {
    const io = capture();
    expect(await policyTest([write('site.policy.yaml', site)], io)).toBe(0);
    expect(io.stdout.at(-1)).toBe('2 passed, 0 failed');
  });

  it('prints each failure with the rule that actually decided and exits non-zero', async () => {
    const file = write(
      'site.policy.yaml',
      site +
        '  - name: bob reads secrets\n    identity: { user: bob }\n    subscribe: tenants/bob/secret/plans\n    expect: allow\n',
    );
    const io = capture();
    expect(await policyTest([file], io)).toBe(1);
    expect(io.stderr).toContain(
      `${file}:22:5: FAIL bob reads secrets: expected allow, got deny by rule "no-secrets" (${file}:7)`,
    );
    expect(io.stderr.at(-1)).toBe('2 passed, 1 failed');
  });

  it('fails a case whose expected deciding rule is a different one', async () => {
    const file = write(
      'site.policy.yaml',
      site +
        '  - name: wrong rule\n    identity: { user: alice }\n    publish: tenants/alice/y\n    expect: allow\n    rule: no-secrets\n',
    );
    const io = capture();
    expect(await policyTest([file], io)).toBe(1);
    expect(io.stderr[0]).toBe(
      `${file}:22:5: FAIL wrong rule: expected rule "no-secrets" to decide, but rule "tenants" (${file}:3) did`,
    );
  });

  it('fails a case that names a rule that does not exist', async () => {
    const file = write(
      'site.policy.yaml',
      site +
        '  - name: typo\n    identity: { user: alice }\n    publish: tenants/alice/y\n    expect: allow\n    rule: tenant\n',
    );
    const io = capture();
    expect(await policyTest([file], io)).toBe(1);
    expect(io.stderr[0]).toBe(`${file}:22:5: error: case "typo" names rule "tenant", which does not exist`);
  });

  it('runs cases from a sibling cases file', async () => {
    const file = write('site.policy.yaml', site.slice(0, site.indexOf('cases:')));
    write(
      'site.cases.yaml',
      'cases:\n  - name: bob at home\n    identity: { user: bob }\n    receive: tenants/bob/x\n    expect: allow\n',
    );
    const io = capture();
    expect(await policyTest([file], io)).toBe(0);
    expect(io.stdout[0]).toBe(`${join(dir, 'site.cases.yaml')}:2:5: ok bob at home`);
  });

  it('exits non-zero when there are no cases, and when the policy does not load', async () => {
    const noCases = capture();
    expect(await policyTest([write('a.policy.yaml', site.slice(0, site.indexOf('cases:')))], noCases)).toBe(1);
    expect(noCases.stderr[0]).toMatch(/no cases found/);
    const broken = capture();
    expect(await policyTest([write('b.policy.yaml', 'rules: {}\n')], broken)).toBe(1);
    expect(broken.stderr.at(-1)).toMatch(/policy does not load/);
  });
});

describe('bulwark policy explain', () => {
  it('prints the decision, the deciding rule with file:line and why each rule did or did not match', async () => {
    const file = write('site.policy.yaml', site);
    const io = capture();
    const code = await policyExplain(
      [file],
      { user: 'alice', client: 'c1', publish: 'tenants/alice/secret/x', qos: '1' },
      io,
    );
    expect(code).toBe(0);
    const text = io.stdout.join('\n');
    expect(text).toContain('decision: DENY');
    expect(text).toContain(`decided by: rule "no-secrets" at ${file}:7`);
    expect(text).toContain(
      `MATCH allow tenants (${file}:3): topic "tenants/\${username}/#" matches "tenants/alice/secret/x"`,
    );
    expect(text).toContain(
      `MATCH deny  no-secrets (${file}:7): topic "tenants/+/secret/#" matches "tenants/alice/secret/x"`,
    );
  });

  it('explains a refused placeholder and a subject mismatch', async () => {
    const file = write('site.policy.yaml', site);
    const io = capture();
    await policyExplain([file], { user: 'a/b', subscribe: 'tenants/a/b/x', group: ['g'] }, io);
    const text = io.stdout.join('\n');
    expect(text).toContain('decided by: default deny (no rule matched)');
    expect(text).toContain('${username} cannot be filled');
    const anon = capture();
    await policyExplain([file], { receive: 'tenants/x/y', ip: '10.0.0.1' }, anon);
    expect(anon.stdout.join('\n')).toContain('subject does not match: anonymous is true');
  });

  it('accepts certificate CN, attributes and shared subscriptions', async () => {
    const file = write(
      'dev.policy.yaml',
      "rules:\n  - name: dev\n    allow: subscribe\n    subjects: { attributes: { jwt.tenant: [acme] } }\n    topics: ['d/${cert.cn}/#']\n    when: { shared: true }\n",
    );
    const io = capture();
    await policyExplain([file], { certCn: 'dev-1', attr: ['jwt.tenant=acme'], subscribe: '$share/g/d/dev-1/#' }, io);
    expect(io.stdout.join('\n')).toContain('decision: ALLOW');
  });

  it('refuses an invalid request description with exit code 2', async () => {
    const io = capture();
    expect(await policyExplain([], { publish: 'a/+' }, io)).toBe(2);
    expect(io.stderr[0]).toMatch(/not a valid topic name/);
    expect(await policyExplain([], { publish: 'a', subscribe: 'b' }, io)).toBe(2);
    expect(await policyExplain([], { publish: 'a', qos: '3' }, io)).toBe(2);
  });

  it('registers check, test and explain under "policy"', () => {
    const program = new Command('bulwark');
    registerPolicyCommand(program);
    const policy = program.commands.find((c) => c.name() === 'policy');
    expect(policy?.commands.map((c) => c.name())).toEqual(['check', 'test', 'explain']);
  });
});

describe('connect on the command line', () => {
  const connectPolicy = `version: 1
rules:
  - name: staff-connect
    allow: connect
    subjects: { groups: [staff] }
  - name: banned
    deny: connect
    subjects: { users: [mallory] }
cases:
  - name: staff may connect
    identity: { user: alice, groups: [staff] }
    connect: true
    expect: allow
    rule: staff-connect
  - name: mallory may not, staff or not
    identity: { user: mallory, groups: [staff] }
    connect: true
    expect: deny
    rule: banned
`;

  it('policy check warns when no rule allows connect, naming the first file', async () => {
    const file = write('topics.policy.yaml', site);
    const io = capture();
    expect(await policyCheck([file], io)).toBe(0);
    expect(io.stdout).toContain(
      `${file}:1:1: warning: no rule allows connect: every client will be refused with CONNACK 0x87 (add a rule such as "allow: connect" with the subjects that may connect)`,
    );
    const ok = capture();
    expect(await policyCheck([write('connect.policy.yaml', connectPolicy)], ok)).toBe(0);
    expect(ok.stdout.some((l) => l.includes('no rule allows connect'))).toBe(false);
  });

  it('policy test runs connect cases and names the rule that actually decided a failing one', async () => {
    const io = capture();
    expect(await policyTest([write('connect.policy.yaml', connectPolicy)], io)).toBe(0);
    expect(io.stdout.at(-1)).toBe('2 passed, 0 failed');
    const wrong = connectPolicy.replace('    expect: deny\n    rule: banned', '    expect: allow');
    const failing = capture();
    const file = write('wrong.policy.yaml', wrong);
    expect(await policyTest([file], failing)).toBe(1);
    expect(failing.stderr[0]).toBe(
      `${file}:15:5: FAIL mallory may not, staff or not: expected allow, got deny by rule "banned" (${file}:6)`,
    );
  });

  it('policy explain --connect explains a connect decision rule by rule', async () => {
    const file = write('connect.policy.yaml', connectPolicy);
    const io = capture();
    expect(
      await policyExplain([file], { user: 'mallory', client: 'm1', group: ['staff'], connect: true, qos: '0' }, io),
    ).toBe(0);
    const text = io.stdout.join('\n');
    expect(text).toContain('request:  user "mallory", client "m1", connect on listener "default" from 127.0.0.1');
    expect(text).toContain('decision: DENY');
    expect(text).toContain(`decided by: rule "banned" at ${file}:6`);
    expect(text).toContain(`MATCH allow staff-connect (${file}:3): subjects match (connect rules have no topic)`);
    expect(text).toContain(`MATCH deny  banned (${file}:6): subjects match (connect rules have no topic)`);
  });

  it('policy explain refuses --connect together with a topic action, --qos or --retain', async () => {
    const io = capture();
    expect(await policyExplain([], { connect: true, publish: 'a' }, io)).toBe(2);
    expect(io.stderr[0]).toBe('give exactly one of --connect, --publish, --subscribe, --receive');
    expect(await policyExplain([], { connect: true, retain: true }, io)).toBe(2);
    expect(await policyExplain([], { connect: true, qos: '1' }, io)).toBe(2);
    expect(io.stderr.at(-1)).toBe('--qos and --retain do not apply to --connect');
  });

  it('registers --connect on policy explain', () => {
    const program = new Command('bulwark');
    registerPolicyCommand(program);
    const explain = program.commands.find((c) => c.name() === 'policy')?.commands.find((c) => c.name() === 'explain');
    expect(explain?.options.map((o) => o.long)).toContain('--connect');
  });
});

describe('publish grants on $SYS, which the broker refuses before the policy', () => {
  const sysPolicy = [
    'superusers: true',
    'rules:',
    '  - name: everyone-connects',
    '    allow: connect',
    '    subjects: all',
    '  - name: tool-writes-sys',
    '    allow: [publish, subscribe]',
    "    subjects: { clients: ['tool-*'] }",
    "    topics: ['ordinary/#', '$SYS/broker/#']",
    '  - name: monitors-read-sys',
    '    allow: [subscribe, receive]',
    '    subjects: all',
    "    topics: ['$SYS/#']",
    '  - name: nobody-writes-systemish',
    '    allow: publish',
    '    subjects: all',
    "    topics: ['$SYSTEM/#']",
  ].join('\n');

  it('policy check warns at the topic that an allow publish rule on $SYS can never take effect', async () => {
    const file = write('sys.policy.yaml', sysPolicy);
    const io = capture();
    expect(await policyCheck([file], io)).toBe(0);
    const sys = io.stdout.filter((l) => l.includes('$SYS'));
    expect(sys).toEqual([
      `${file}:9:28: warning: rule "tool-writes-sys" allows publish on "$SYS/broker/#", which can never take effect: the broker refuses every client publish to $SYS before the policy is asked (broker rule "sys-topics-are-read-only") (only the broker publishes to $SYS; drop publish or this topic from the rule)`,
    ]);
  });

  it('policy explain shows the broker rule deciding a $SYS publish, and what the policy alone would say', async () => {
    const file = write('sys.policy.yaml', sysPolicy);
    const io = capture();
    expect(await policyExplain([file], { client: 'tool-1', publish: '$SYS/broker/version', qos: '1' }, io)).toBe(0);
    const text = io.stdout.join('\n');
    expect(text).toContain('decision: DENY');
    expect(text).toContain('decided by: broker rule "sys-topics-are-read-only" (applied before the policy)');
    expect(text).toContain(
      `policy alone: ALLOW by rule "tool-writes-sys" at ${file}:6; never applied, the broker decides first`,
    );
    expect(text).toContain(`MATCH allow tool-writes-sys (${file}:6)`);

    const superuser = capture();
    await policyExplain([file], { user: 'root', superuser: true, publish: '$SYS/broker/version' }, superuser);
    expect(superuser.stdout.join('\n')).toContain('decision: DENY');

    // Subscribing to $SYS and publishing to other `$` topics stay the policy's to decide.
    const sub = capture();
    await policyExplain([file], { client: 'monitor', subscribe: '$SYS/#' }, sub);
    expect(sub.stdout.join('\n')).toContain('decision: ALLOW');
    expect(sub.stdout.join('\n')).not.toContain('policy alone');
    const other = capture();
    await policyExplain([file], { client: 'x', publish: '$SYSTEM/x' }, other);
    expect(other.stdout.join('\n')).toContain('decision: ALLOW');
  });

  it('policy test judges cases as the broker does: a $SYS publish case expecting allow fails on the broker rule', async () => {
    const cases = [
      'cases:',
      '  - name: the tool rewrites the version',
      '    identity: { client: tool-1 }',
      '    publish: $SYS/broker/version',
      '    expect: allow',
      '  - name: not even a superuser writes $SYS',
      '    identity: { user: root, superuser: true }',
      '    publish: $SYS/broker/uptime',
      '    expect: deny',
      '    rule: sys-topics-are-read-only',
      '  - name: the tool still writes ordinary topics',
      '    identity: { client: tool-1 }',
      '    publish: ordinary/x',
      '    expect: allow',
      '    rule: tool-writes-sys',
      '  - name: monitors read $SYS',
      '    identity: { client: monitor }',
      '    subscribe: $SYS/#',
      '    expect: allow',
      '',
    ].join('\n');
    const file = write('sys.policy.yaml', sysPolicy);
    write('sys.cases.yaml', cases);
    const io = capture();
    expect(await policyTest([file], io)).toBe(1);
    expect(io.stderr.filter((l) => l.includes('FAIL'))).toEqual([
      expect.stringMatching(
        /FAIL the tool rewrites the version: expected allow, got deny by broker rule "sys-topics-are-read-only" \(applied before the policy\)$/,
      ),
    ]);
    expect(io.stderr.at(-1)).toBe('3 passed, 1 failed');
  });
});
