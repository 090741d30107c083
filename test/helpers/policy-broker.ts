import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createBuiltinRegistry } from '../../authn/builtin.js';
import { createVerificationServices } from '../../authn/config.js';
import type { AuthenticationChain } from '../../authn/chain.js';
import { verificationConfigSchema } from '../../authn/registry.js';
import { Secret } from '../../authn/secret.js';
import { hashPassword } from '../../authn/verify/password-hash.js';
import type { AuditEvent } from '../../audit/events.js';
import { startBroker, type TestBroker, type TestBrokerOptions } from './broker.js';

/** A temporary folder for policy, password and config files; `cleanup()` removes it. */
export interface TempDir {
  path: string;
  file(name: string): string;
  write(name: string, text: string): string;
  cleanup(): void;
}

export function tempDir(prefix = 'bulwark-authz-wire-'): TempDir {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return {
    path,
    file: (name) => join(path, name),
    write(name, text) {
      const file = join(path, name);
      writeFileSync(file, text);
      return file;
    },
    cleanup: () => rmSync(path, { recursive: true, force: true }),
  };
}

/**
 * `file:line` of a rule, the form decisions and audit records name it in (`authz.rule`): the line of its
 * `- name: NAME` entry in the file as it is on disk now.
 */
export function ruleAt(file: string, name: string): string {
  const lines = readFileSync(file, 'utf8').split('\n');
  const index = lines.findIndex((l) => new RegExp(`^\\s*-\\s+name:\\s*['"]?${escape(name)}['"]?\\s*$`).test(l));
  if (index < 0) throw new Error(`rule ${name} not found in ${file}`);
  return `${file}:${index + 1}`;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export interface TestUser {
  password: string;
  groups?: string[];
  superuser?: boolean;
}

/** Writes `users.yaml` in the password-file format with argon2id hashes (cheap parameters: tests only). */
export async function writePasswordFile(dir: TempDir, users: Record<string, TestUser>): Promise<string> {
  const entries: string[] = ['users:'];
  for (const [name, user] of Object.entries(users)) {
    const hash = await hashPassword(new Secret(user.password), { memoryCost: 1024, timeCost: 1, parallelism: 1 });
    entries.push(`  ${JSON.stringify(name)}:`, `    hash: '${hash}'`);
    if (user.groups) entries.push(`    groups: ${JSON.stringify(user.groups)}`);
    if (user.superuser) entries.push('    superuser: true');
  }
  return dir.write('users.yaml', entries.join('\n') + '\n');
}

/**
 * A real password-file authentication chain built with the same registry the broker uses, started; for
 * `startBroker({ authenticator })` where a test needs the chain outside the configuration.
 */
export async function passwordFileChain(
  dir: TempDir,
  users: Record<string, TestUser>,
  events: AuditEvent[] = [],
): Promise<AuthenticationChain> {
  const file = await writePasswordFile(dir, users);
  const verification = createVerificationServices(verificationConfigSchema.parse({}), (e) => events.push(e));
  const chain = createBuiltinRegistry().parseAndBuild(
    { anonymous: false, steps: [{ type: 'password-file', file, unknown_user: 'deny', watch: false }] },
    { verification, onEvent: (e) => events.push(e), logger: pino({ level: 'silent' }), baseDir: dir.path },
  );
  await chain.start();
  return chain;
}

export interface PolicyBroker {
  broker: TestBroker;
  dir: TempDir;
  policyFile: string;
  /** `file:line` of a rule in the policy file as currently written. */
  rule(name: string): string;
  /** Replaces the policy file's content (the broker reloads on its own when watching). */
  rewrite(text: string): void;
  stop(): Promise<void>;
}

export interface PolicyBrokerOptions extends Omit<TestBrokerOptions, 'authorizer'> {
  /** The policy file's YAML. */
  policy: string;
  /** Extra keys of the `authorization:` section (policy_files is set to the temporary policy file). */
  authorization?: Record<string, unknown>;
  /** Named users: the broker's `authentication:` chain gets one password-file step holding them. */
  users?: Record<string, TestUser>;
}

/**
 * A real broker on 127.0.0.1 with the real evaluator loading one policy file from a temporary folder (absolute
 * path, so no dependency on process.cwd()).
 */
export async function startPolicyBroker(options: PolicyBrokerOptions): Promise<PolicyBroker> {
  const dir = tempDir();
  const policyFile = dir.write('site.policy.yaml', options.policy);
  const { policy: _policy, authorization, users, ...rest } = options;
  const config: Record<string, unknown> = {
    ...(rest.config ?? {}),
    authorization: {
      watch: false,
      reload_debounce_ms: 20,
      ...(authorization ?? {}),
      policy_files: [policyFile],
    },
  };
  if (users) {
    // The broker's own chain from configuration: the path a deployment takes (docs/authentication.md).
    config.authentication = {
      anonymous: false,
      steps: [{ type: 'password-file', file: await writePasswordFile(dir, users), unknown_user: 'deny', watch: false }],
    };
  }
  let broker: TestBroker;
  try {
    broker = await startBroker({ ...rest, config: config as TestBrokerOptions['config'] });
  } catch (error) {
    dir.cleanup();
    throw error;
  }
  return {
    broker,
    dir,
    policyFile,
    rule: (name) => ruleAt(policyFile, name),
    rewrite: (text) => writeFileSync(policyFile, text),
    async stop() {
      await broker.stop();
      dir.cleanup();
    },
  };
}
