import { isIP } from 'node:net';
import { single } from '../src/cli/single-value.js';
import type { Command } from 'commander';
import { formatCaseFailure } from './cases.js';
import { explainBrokerAccess, formatExplanation } from './explain.js';
import { lintRules } from './lint.js';
import { loadPolicySet } from './load.js';
import { formatDiagnostic, formatPosition } from './model.js';
import { buildIdentity, splitShared } from './parse.js';
import { isValidFilter, isValidTopicName } from './topic.js';
import type { AccessAction, AccessRequest } from './types.js';

/** Where command output goes; the CLI passes stdout/stderr, tests capture it. */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

const processIo: CliIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** `bulwark policy check FILE...`: every problem with file:line:column; 1 when there is any error. */
export async function policyCheck(files: readonly string[], io: CliIo = processIo): Promise<number> {
  const set = await loadPolicySet(files, { runCases: false });
  const diagnostics = [...set.diagnostics, ...lintRules(set.rules, files)];
  for (const d of diagnostics) (d.severity === 'error' ? io.err : io.out)(formatDiagnostic(d));
  const errors = diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = diagnostics.length - errors;
  const summary = `${plural(errors, 'error')}, ${plural(warnings, 'warning')}; ${plural(set.rules.length, 'rule')}, ${plural(set.cases.length, 'case')} in ${plural(set.filesRead.length, 'file')}`;
  (errors > 0 ? io.err : io.out)(summary);
  return errors > 0 ? 1 : 0;
}

/** `bulwark policy test FILE...`: runs the cases; each failure names the rule that actually decided. */
export async function policyTest(files: readonly string[], io: CliIo = processIo): Promise<number> {
  const set = await loadPolicySet(files, { runCases: true });
  const loadErrors = set.diagnostics.filter((d) => d.severity === 'error' && d.code !== 'BULWARK_ERR_POLICY_CASES');
  if (loadErrors.length > 0) {
    for (const d of loadErrors) io.err(formatDiagnostic(d));
    io.err(`policy does not load: ${plural(loadErrors.length, 'error')}; no cases run`);
    return 1;
  }
  const results = set.caseResults ?? [];
  if (results.length === 0) {
    io.err('no cases found: add "cases:" to the policy file or a *.cases.yaml sibling');
    return 1;
  }
  const unknownRule = set.diagnostics.filter((d) => d.code === 'BULWARK_ERR_POLICY_CASES');
  let failed = 0;
  for (const r of results) {
    const bad = unknownRule.find((d) => d.position === r.case.position && d.message.includes('does not exist'));
    if (bad) {
      failed++;
      io.err(formatDiagnostic(bad));
    } else if (!r.passed) {
      failed++;
      io.err(formatCaseFailure(r));
    } else io.out(`${formatPosition(r.case.position)}: ok ${r.case.name}`);
  }
  const summary = `${results.length - failed} passed, ${failed} failed`;
  (failed > 0 ? io.err : io.out)(summary);
  return failed > 0 ? 1 : 0;
}

export interface ExplainOptions {
  user?: string;
  client?: string;
  group?: string[];
  certCn?: string;
  attr?: string[];
  ip?: string;
  listener?: string;
  authenticator?: string;
  superuser?: boolean;
  connect?: boolean;
  publish?: string;
  subscribe?: string;
  receive?: string;
  qos?: string;
  retain?: boolean;
}

/**
 * Explain describes one request: an option given twice is refused rather than reduced to its last value. (Their
 * defaults are applied in `explainRequest`, since a commander default would arrive as the "first" value.)
 */
const one = single('one request per explain; run it again for another');

/** Builds the request `policy explain` describes; an error message when the options do not describe one. */
export function explainRequest(o: ExplainOptions): AccessRequest | string {
  const chosen: AccessAction[] = (['publish', 'subscribe', 'receive'] as const).filter((a) => o[a] !== undefined);
  if (o.connect === true) chosen.push('connect');
  if (chosen.length !== 1) return 'give exactly one of --connect, --publish, --subscribe, --receive';
  const action = chosen[0] as AccessAction;
  if (action === 'connect' && (o.retain === true || (o.qos !== undefined && o.qos !== '0'))) {
    return '--qos and --retain do not apply to --connect';
  }
  // A connect request has no topic: it asks whether this identity may be connected at all.
  let topic = action === 'connect' ? '' : (o[action] as string);
  let sharedGroup: string | undefined;
  if (action === 'subscribe') {
    const split = splitShared(topic);
    if (!split || !isValidFilter(split.topic)) return `"${topic}" is not a valid topic filter`;
    topic = split.topic;
    sharedGroup = split.sharedGroup;
  } else if (action !== 'connect' && !isValidTopicName(topic)) return `"${topic}" is not a valid topic name`;
  const qos = o.qos === undefined ? 0 : Number(o.qos);
  if (qos !== 0 && qos !== 1 && qos !== 2) return '--qos must be 0, 1 or 2';
  const ip = o.ip ?? '127.0.0.1';
  if (isIP(ip) === 0) return `--ip ${ip} is not an IP address`;
  const attributes: Record<string, string> = {};
  for (const kv of o.attr ?? []) {
    const eq = kv.indexOf('=');
    if (eq <= 0) return `--attr ${kv}: write NAME=VALUE`;
    const name = kv.slice(0, eq);
    // An attribute has one value: a second (or --cert-cn beside cert.cn) would silently replace the first.
    const previous = attributes[name] ?? (name === 'cert.cn' ? o.certCn : undefined);
    if (previous !== undefined)
      return `--attr ${name} given more than once (also "${previous}"); one request per explain; run it again for another`;
    attributes[name] = kv.slice(eq + 1);
  }
  return {
    identity: buildIdentity({
      user: o.user,
      client: o.client ?? 'explain-client',
      groups: o.group,
      attributes,
      certCn: o.certCn,
      authenticator: o.authenticator,
      superuser: o.superuser,
    }),
    listener: o.listener ?? 'default',
    peerAddress: ip,
    action,
    topic,
    qos,
    retain: o.retain ?? false,
    sharedGroup,
  };
}

/** `bulwark policy explain`: the decision, the deciding rule with file:line, and every rule considered. */
export async function policyExplain(
  files: readonly string[],
  o: ExplainOptions,
  io: CliIo = processIo,
): Promise<number> {
  const request = explainRequest(o);
  if (typeof request === 'string') {
    io.err(request);
    return 2;
  }
  const set = await loadPolicySet(files, { runCases: false });
  if (!set.policy) {
    for (const d of set.diagnostics.filter((x) => x.severity === 'error')) io.err(formatDiagnostic(d));
    io.err('policy does not load; nothing to explain');
    return 1;
  }
  io.out(formatExplanation(request, explainBrokerAccess(set.policy, request)));
  return 0;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerPolicyCommand(program: Command): void {
  const policy = program.command('policy').description('Check, test and explain authorization policy files');
  policy
    .command('check')
    .description(
      'Validate policy files; print every problem as file:line:column; warn about shadowed rules and broad grants',
    )
    .argument('<files...>', 'policy files (evaluated together, in order)')
    .action(async (files: string[]) => {
      process.exitCode = await policyCheck(files);
    });
  policy
    .command('test')
    .description("Run the files' cases; print each failure with the rule that actually decided")
    .argument('<files...>', 'policy files (and *.cases.yaml files)')
    .action(async (files: string[]) => {
      process.exitCode = await policyTest(files);
    });
  policy
    .command('explain')
    .description('Explain how the policy decides one request, rule by rule')
    .argument('<files...>', 'policy files (evaluated together, in order)')
    .option('--user <name>', 'username (omit for an anonymous client)', one)
    .option('--client <id>', 'client id (default: "explain-client")', one)
    .option('--group <name>', 'group membership (repeatable)', collect, [])
    .option('--cert-cn <cn>', 'certificate common name (attribute cert.cn)', one)
    .option('--attr <name=value>', 'identity attribute, e.g. jwt.tenant=acme (repeatable)', collect, [])
    .option('--ip <address>', 'peer address (default: "127.0.0.1")', one)
    .option('--listener <name>', 'listener name (default: "default")', one)
    .option('--authenticator <id>', 'authenticator that admitted the client', one)
    .option('--superuser', 'the identity is a superuser')
    .option('--connect', 'explain whether the client may connect (and stay connected)')
    .option('--publish <topic>', 'explain a publish to this topic', one)
    .option('--subscribe <filter>', 'explain a subscription to this filter ($share/group/filter allowed)', one)
    .option('--receive <topic>', 'explain delivery of a message on this topic', one)
    .option('--qos <n>', 'QoS 0, 1 or 2 (default: "0")', one)
    .option('--retain', 'the message is retained')
    .action(async (files: string[], options: ExplainOptions) => {
      process.exitCode = await policyExplain(files, options);
    });
}
