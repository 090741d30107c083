import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { SourcePosition } from '../src/errors.js';
import { caseDiagnostics, runCases, type CaseResult } from './cases.js';
import { CompiledPolicy } from './compile.js';
import { type CaseSpec, type Diagnostic, type RuleSpec } from './model.js';
import { parseCasesText, parsePolicyText } from './parse.js';

export type FileReader = (path: string) => Promise<string>;

const defaultReader: FileReader = (path) => readFile(path, 'utf8');

/** `site.policy.yaml` → `site.cases.yaml`; `site.yaml` → `site.cases.yaml`. */
export function siblingCasesFile(file: string): string | undefined {
  if (file.endsWith('.cases.yaml') || file.endsWith('.cases.yml')) return undefined;
  if (file.endsWith('.policy.yaml')) return `${file.slice(0, -'.policy.yaml'.length)}.cases.yaml`;
  if (file.endsWith('.policy.yml')) return `${file.slice(0, -'.policy.yml'.length)}.cases.yaml`;
  if (file.endsWith('.yaml') || file.endsWith('.yml')) return `${file.replace(/\.ya?ml$/, '')}.cases.yaml`;
  return undefined;
}

function isCasesFile(file: string): boolean {
  return file.endsWith('.cases.yaml') || file.endsWith('.cases.yml');
}

export interface PolicySet {
  /** Present when there were no errors. */
  policy: CompiledPolicy | undefined;
  rules: RuleSpec[];
  cases: CaseSpec[];
  /** Errors and warnings, each with file:line:column. */
  diagnostics: Diagnostic[];
  /** SHA-256 over every file read (policy and cases), for the audit log's old/new hashes. */
  hash: string;
  /** Every file read, including sibling cases files. */
  filesRead: string[];
  /** Case results when cases were run. */
  caseResults?: CaseResult[];
}

export interface LoadOptions {
  sourceId?: string;
  readFile?: FileReader;
  /** Run the files' cases and report failures as errors (reload does; `policy check` does not). */
  runCases?: boolean;
}

function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/**
 * Reads, parses and compiles policy files as one policy, in the order given. A `*.cases.yaml` sibling of each file
 * is read when it exists. Never throws for file problems: they become diagnostics.
 */
export async function loadPolicySet(files: readonly string[], opts: LoadOptions = {}): Promise<PolicySet> {
  const read = opts.readFile ?? defaultReader;
  const hash = createHash('sha256');
  const diagnostics: Diagnostic[] = [];
  const rules: RuleSpec[] = [];
  const cases: CaseSpec[] = [];
  const filesRead: string[] = [];
  let superusers: { value: boolean; position: SourcePosition } | undefined;
  const names = new Map<string, SourcePosition>();

  const readText = async (file: string, optional: boolean): Promise<string | undefined> => {
    try {
      const text = await read(file);
      hash.update(file).update('\0').update(text).update('\0');
      filesRead.push(file);
      return text;
    } catch (e) {
      if (optional && errnoCode(e) === 'ENOENT') return undefined;
      diagnostics.push({
        severity: 'error',
        code: 'BULWARK_ERR_POLICY_PARSE',
        message: `cannot read the file (${errnoCode(e) ?? 'error'})`,
        position: { file, line: 1, column: 1 },
      });
      return undefined;
    }
  };

  if (files.length === 0) {
    diagnostics.push({ severity: 'error', code: 'BULWARK_ERR_POLICY_INVALID', message: 'no policy files given' });
  }
  for (const file of files) {
    const text = await readText(file, false);
    if (text === undefined) continue;
    if (isCasesFile(file)) {
      const parsed = parseCasesText(text, file);
      // Loops, not `push(...items)`: a spread of a generated cases file with ~120,000 entries overflows the stack.
      for (const item of parsed.diagnostics) diagnostics.push(item);
      for (const item of parsed.cases) cases.push(item);
      continue;
    }
    const parsed = parsePolicyText(text, file);
    for (const item of parsed.diagnostics) diagnostics.push(item);
    for (const rule of parsed.rules) {
      const earlier = names.get(rule.name);
      if (earlier) {
        diagnostics.push({
          severity: 'error',
          code: 'BULWARK_ERR_POLICY_INVALID',
          message: `duplicate rule name "${rule.name}"`,
          position: rule.position,
          hint: `first defined at ${earlier.file}:${earlier.line}`,
        });
        continue;
      }
      names.set(rule.name, rule.position);
      rules.push(rule);
    }
    for (const item of parsed.cases) cases.push(item);
    if (parsed.superusers) {
      if (superusers && superusers.value !== parsed.superusers.value) {
        diagnostics.push({
          severity: 'error',
          code: 'BULWARK_ERR_POLICY_INVALID',
          message: `"superusers: ${parsed.superusers.value}" contradicts "superusers: ${superusers.value}"`,
          position: parsed.superusers.position,
          hint: `set at ${superusers.position.file}:${superusers.position.line}; say it once`,
        });
      } else superusers ??= parsed.superusers;
    }
    const sibling = siblingCasesFile(file);
    if (sibling && !files.includes(sibling)) {
      const casesText = await readText(sibling, true);
      if (casesText !== undefined) {
        const parsedCases = parseCasesText(casesText, sibling);
        for (const item of parsedCases.diagnostics) diagnostics.push(item);
        for (const item of parsedCases.cases) cases.push(item);
      }
    }
  }
  const digest = hash.digest('hex');
  const hasErrors = diagnostics.some((d) => d.severity === 'error');
  const set: PolicySet = { policy: undefined, rules, cases, diagnostics, hash: digest, filesRead };
  if (hasErrors) return set;
  const policy = new CompiledPolicy(rules, {
    sourceId: opts.sourceId ?? 'policy',
    superusers: superusers?.value ?? false,
    hash: digest,
    files,
  });
  if (opts.runCases) {
    const results = runCases(policy, cases);
    set.caseResults = results;
    const failures = caseDiagnostics(policy, results);
    for (const item of failures) diagnostics.push(item);
    if (failures.length > 0) return set;
  }
  set.policy = policy;
  return set;
}
