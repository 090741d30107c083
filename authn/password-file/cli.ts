import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { BulwarkError } from '../../src/errors.js';
import { Secret } from '../secret.js';
import { detectAlgorithm, hashPassword, OWASP_ARGON2ID } from '../verify/password-hash.js';
import { writeFileAtomic } from './atomic-write.js';
import { editPasswordFile, parsePasswordFile } from './format.js';

interface PasswdOptions {
  passwordStdin?: boolean;
  group?: string[];
  superuser?: boolean;
}

/**
 * `bulwark passwd FILE add|delete|list [USER]`. Passwords come from a TTY prompt (asked twice, not echoed) or
 * from `--password-stdin`, never from argv, where `ps` and shell history would show them.
 */
export function registerPasswdCommand(program: Command): void {
  program
    .command('passwd')
    .description('Manage a password file: add (or change) a user, delete a user, list users')
    .argument('<file>', 'password file (created by `add` when missing)')
    .argument('<action>', 'add | delete | list')
    .argument('[user]', 'username (add, delete)')
    .option('--password-stdin', 'read the password from standard input instead of a prompt')
    .option('--group <name...>', 'groups of the user (add; replaces existing groups)')
    .option('--superuser', 'mark the user as superuser (add)')
    .action(async (file: string, action: string, user: string | undefined, options: PasswdOptions) => {
      try {
        await runPasswd(file, action, user, options);
      } catch (error) {
        console.error(
          error instanceof BulwarkError ? error.describe() : error instanceof Error ? error.message : String(error),
        );
        process.exitCode = 1;
      }
    });
}

async function runPasswd(
  file: string,
  action: string,
  user: string | undefined,
  options: PasswdOptions,
): Promise<void> {
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' && action === 'add') return '';
    throw new Error(`cannot read ${file}: ${error.code ?? 'error'}`);
  });
  switch (action) {
    case 'list': {
      const { users } = parsePasswordFile(text, file);
      for (const [name, u] of users) {
        const scheme = u.hash.startsWith('$argon2id$') ? 'argon2id' : (detectAlgorithm(u.hash) ?? 'unknown');
        const flags = [`hash=${scheme}`, `groups=${u.groups.join(',') || '-'}`, ...(u.superuser ? ['superuser'] : [])];
        console.log(`${name}\t${flags.join('\t')}`);
      }
      return;
    }
    case 'add': {
      const name = requireUser(user);
      const password = options.passwordStdin ? await readPasswordStdin() : await promptPassword();
      if (password.isEmpty) throw new Error('empty passwords are refused');
      const hash = await hashPassword(password, OWASP_ARGON2ID);
      const out = editPasswordFile(text, file, (users) => {
        const existing = users.get(name);
        users.set(name, {
          hash,
          groups: options.group ?? existing?.groups ?? [],
          superuser: options.superuser ?? existing?.superuser ?? false,
        });
      });
      await writeFileAtomic(file, out);
      console.log(`${name}: password set`);
      return;
    }
    case 'delete': {
      const name = requireUser(user);
      let found = false;
      const out = editPasswordFile(text, file, (users) => {
        found = users.delete(name);
      });
      if (!found) throw new Error(`${name}: no such user in ${file}`);
      await writeFileAtomic(file, out);
      console.log(`${name}: deleted`);
      return;
    }
    default:
      throw new Error(`unknown action "${action}" (expected add, delete or list)`);
  }
}

function requireUser(user: string | undefined): string {
  if (!user) throw new Error('a username is required');
  return user;
}

async function readPasswordStdin(): Promise<Secret> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  let buf = Buffer.concat(chunks);
  // One trailing newline is what `echo` and here-strings add; it is not part of the password.
  if (buf.at(-1) === 0x0a) buf = buf.subarray(0, buf.at(-2) === 0x0d ? -2 : -1);
  const secret = new Secret(buf);
  buf.fill(0);
  return secret;
}

async function promptPassword(): Promise<Secret> {
  if (!process.stdin.isTTY) throw new Error('standard input is not a terminal: use --password-stdin');
  const first = await readHidden('Password: ');
  const second = await readHidden('Repeat password: ');
  if (!first.equals(second)) throw new Error('passwords do not match');
  return first;
}

/** Reads one line from the terminal in raw mode without echoing it. */
function readHidden(prompt: string): Promise<Secret> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    const bytes: number[] = [];
    stdin.setRawMode(true);
    stdin.resume();
    const done = (result: Secret | Error): void => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    const onData = (data: Buffer): void => {
      for (const byte of data) {
        if (byte === 0x0d || byte === 0x0a) {
          const secret = new Secret(Buffer.from(bytes));
          bytes.fill(0);
          return done(secret);
        }
        if (byte === 0x03) return done(new Error('cancelled'));
        if (byte === 0x7f || byte === 0x08) bytes.pop();
        else bytes.push(byte);
      }
    };
    stdin.on('data', onData);
  });
}
