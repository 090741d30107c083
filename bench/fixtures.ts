import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';

export interface Credential {
  username: string;
  password: string;
}

/** Known clients of the reconnect storm. Bench-only passwords, generated per run, never printed. */
export function benchCredentials(count: number): Credential[] {
  return Array.from({ length: count }, (_, i) => ({
    username: `bench-user-${i}`,
    password: `bench-${process.pid}-${i}-${Math.random().toString(36).slice(2)}`,
  }));
}

/** An argon2id password file written by `bulwark passwd ... add --password-stdin`, one call per user. */
export function bulwarkPasswordFile(repoRoot: string, dir: string, users: readonly Credential[]): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'bulwark-passwords.yaml');
  if (existsSync(file)) return file;
  for (const u of users) {
    execFileSync(
      process.execPath,
      [join(repoRoot, 'dist/src/cli/main.js'), 'passwd', file, 'add', u.username, '--password-stdin'],
      {
        input: u.password,
        stdio: ['pipe', 'ignore', 'pipe'],
      },
    );
  }
  return file;
}

/** A Mosquitto password file (PBKDF2-SHA512, `$7$`) written by `mosquitto_passwd -b`. */
export function mosquittoPasswordFile(dir: string, users: readonly Credential[]): string {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  const file = join(dir, 'mosquitto-passwords');
  if (existsSync(file)) return file;
  writeFileSync(file, '');
  for (const u of users) execFileSync('mosquitto_passwd', ['-b', file, u.username, u.password], { stdio: 'ignore' });
  // Mosquitto may drop to its own user before reading the file.
  chmodSync(file, 0o644);
  return file;
}

/**
 * A policy that lets every authenticated client connect (and do nothing else): for the reconnect storm, whose
 * known clients log in with passwords, which the default policy (anonymous local clients only) refuses at CONNECT.
 * Use it as `authorization: { policy_files: [connectPolicyFile(dir)] }` next to the `authentication:` variant.
 */
export function connectPolicyFile(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'users-connect.yaml');
  const rules = [
    {
      name: 'users-connect',
      allow: 'connect',
      subjects: { anonymous: false },
      why: 'The storm measures authentication: every known client may connect.',
    },
  ];
  writeFileSync(file, stringify({ version: 1, rules }));
  return file;
}

/**
 * A policy of `count` rules: one rule that lets every bench client connect, `count - 2` rules for other users'
 * device topics (which the evaluator has to get past or index away), then the one rule that lets the bench's
 * anonymous clients use `bench/#`. Everything else, `probe/#` included, falls to the default deny, which is how the
 * bench detects that authorization is wired.
 */
export function policyFile(dir: string, count: number): string {
  mkdirSync(dir, { recursive: true });
  // The name changed when connect rules were introduced, so a cached file without one is never reused.
  const file = join(dir, `policy-connect-${count}.yaml`);
  if (existsSync(file)) return file;
  const rules: Record<string, unknown>[] = [
    { name: 'bench-connect', allow: 'connect', subjects: 'all', why: 'Every bench client may connect.' },
  ];
  for (let i = 0; i < count - 2; i++) {
    rules.push({
      name: `fleet-${i}`,
      allow: ['publish', 'subscribe'],
      subjects: { users: [`fleet-user-${i}`] },
      topics: [`fleet/${i}/+/telemetry`, `fleet/${i}/cmd/#`],
    });
  }
  rules.push({
    name: 'bench-anyone',
    allow: ['publish', 'subscribe', 'receive'],
    subjects: 'all',
    topics: ['bench/#'],
  });
  writeFileSync(file, stringify({ version: 1, rules }));
  return file;
}
