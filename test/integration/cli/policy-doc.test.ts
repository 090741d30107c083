import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPolicySet } from '../../../authz/load.js';
import { formatDiagnostic } from '../../../authz/model.js';
import { parseRuleData } from '../../../authz/parse.js';
import { runCli } from '../../helpers/cli.js';

/**
 * docs/policy.md is what security engineers write policies from: its sample policy must load and pass its own
 * cases, and every `$ bulwark policy …` transcript must be what the command prints today, exit status included.
 */
const ROOT = resolve(import.meta.dirname, '../../..');
const DOC = readFileSync(join(ROOT, 'docs/policy.md'), 'utf8');
const dirs: string[] = [];

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function blocks(lang: string): string[] {
  return [...DOC.matchAll(new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```$', 'gm'))].map((m) => m[1]!);
}

/** `$ bulwark policy …` blocks: the command (continued with `\`) and the output shown under it. */
function transcripts(): { args: string[]; output: string }[] {
  return blocks('')
    .filter((b) => b.startsWith('$ bulwark policy '))
    .map((b) => {
      const lines = b.trimEnd().split('\n');
      let command = '';
      let i = 0;
      for (; i < lines.length; i++) {
        const line = lines[i]!.replace(/^\$ /, '');
        if (!line.endsWith('\\')) {
          command += line;
          break;
        }
        command += `${line.slice(0, -1)} `;
      }
      const args = command.trim().split(/\s+/).slice(1);
      return { args, output: lines.slice(i + 1).join('\n') };
    });
}

async function load(text: string): Promise<Awaited<ReturnType<typeof loadPolicySet>>> {
  const dir = mkdtempSync(join(tmpdir(), 'bw-policy-doc-'));
  dirs.push(dir);
  const file = join(dir, 'example.policy.yaml');
  writeFileSync(file, text);
  return loadPolicySet([file], { runCases: true });
}

describe('docs/policy.md', () => {
  it('has a sample policy file that loads and passes its own cases', async () => {
    const sample = blocks('yaml').find((b) => b.startsWith('version: 1'));
    expect(sample).toBeDefined();
    const set = await load(sample!);
    expect(set.diagnostics.map(formatDiagnostic)).toEqual([]);
    expect(set.caseResults?.length).toBeGreaterThanOrEqual(2);
    expect(set.caseResults?.filter((r) => !r.passed).map((r) => r.failure)).toEqual([]);
  });

  it('has connect rules and cases that parse and decide as the text says', async () => {
    const ruleBlock = blocks('yaml').find((b) => b.includes('name: quarantined-certificates-cannot-connect'));
    const caseBlock = blocks('yaml').find((b) => b.includes('name: a quarantined device is refused at CONNECT'));
    expect(ruleBlock && caseBlock).toBeTruthy();
    const set = await load(`rules:\n${ruleBlock!}cases:\n${caseBlock!}`);
    expect(set.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic)).toEqual([]);
    expect(set.caseResults?.map((r) => r.passed)).toEqual([true]);
  });

  it('has a JWT claim example in the rule grammar', () => {
    const claim = blocks('json').find((b) => b.includes('"acl"'));
    expect(claim).toBeDefined();
    const parsed = parseRuleData((JSON.parse(claim!) as { acl: unknown }).acl, 'jwt:aclRules');
    expect(parsed.diagnostics.map(formatDiagnostic)).toEqual([]);
    expect(parsed.rules.map((r) => r.name)).toEqual(['own']);
  });

  it('shows what `bulwark policy check` and `explain` print for the shipped policies', async () => {
    const shown = transcripts();
    expect(shown.map((t) => t.args.slice(0, 2).join(' '))).toEqual([
      'policy check',
      'policy explain',
      'policy explain',
    ]);
    for (const { args, output } of shown) {
      const result = await runCli(args, { cwd: ROOT });
      // Diagnostics go to stderr and the summary or explanation to stdout, in that order on a terminal.
      expect(`${result.stderr}${result.stdout}`.trimEnd(), `bulwark ${args.join(' ')}`).toBe(output);
      expect(result.code).toBe(0);
    }
  }, 60_000);

  it('`policy explain` refuses an option given twice instead of explaining only its last value', async () => {
    for (const repeated of [
      ['--user', 'alice', '--user', 'mallory'],
      ['--qos', '0', '--qos', '2'],
      ['--ip', '127.0.0.1', '--ip', '203.0.113.9'],
      ['--client', 'explain-client', '--client', 'gw-1'],
      // --attr is repeatable for several attributes, not for two values of one.
      ['--attr', 'jwt.tenant=acme', '--attr', 'jwt.tenant=globex'],
      ['--cert-cn', 'dev-1', '--attr', 'cert.cn=dev-2'],
    ]) {
      const args = ['policy', 'explain', 'policies/devices.policy.yaml', '--publish', 'devices/x', ...repeated];
      const result = await runCli(args, { cwd: ROOT });
      expect(result.code, repeated.join(' ')).not.toBe(0);
      expect(result.stderr).toMatch(/given more than once \(also "[^"]+"\); one request per explain/);
      expect(result.stdout).toBe('');
    }
    // The defaults still apply when an option is not given.
    const plain = await runCli(['policy', 'explain', 'policies/devices.policy.yaml', '--publish', 'devices/x'], {
      cwd: ROOT,
    });
    expect(plain.stdout).toContain('explain-client');
  }, 60_000);
});
