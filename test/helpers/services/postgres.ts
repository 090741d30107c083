import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { freePort } from '../free-port.js';
import type { SqlServiceInfo, Started } from './types.js';

const PG_BIN = '/usr/lib/postgresql/15/bin';

/**
 * Starts a private PostgreSQL 15 on a free loopback port: `initdb` into `workDir`, then `postgres` in the
 * foreground as a child process (fsync off), then a database `bulwark` owned by a password user `bulwark`.
 * PostgreSQL refuses to run as root, so as root everything runs as user `postgres` through runuser.
 */
export async function startPostgres(workDir: string): Promise<Started<SqlServiceInfo>> {
  if (!existsSync(join(PG_BIN, 'postgres')))
    return { missing: `PostgreSQL 15 not installed (${PG_BIN}/postgres missing)` };
  const asRoot = process.getuid?.() === 0;
  let owner: { uid: number; gid: number } | undefined;
  if (asRoot) {
    const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    if (id.status !== 0) return { missing: 'running as root but there is no "postgres" user to run PostgreSQL as' };
    owner = { uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
  }
  mkdirSync(workDir, { recursive: true });
  // The harness's temp folder is 0700 root: let the postgres user traverse (not list) it.
  if (owner) makeTraversable(dirname(workDir));
  const dataDir = join(workDir, 'data');
  const socketDir = join(workDir, 'socket');
  mkdirSync(socketDir, { recursive: true });
  if (owner) {
    chownSync(workDir, owner.uid, owner.gid);
    chownSync(socketDir, owner.uid, owner.gid);
  }
  const as = (bin: string, args: string[]): [string, string[]] =>
    owner ? ['runuser', ['-u', 'postgres', '--', join(PG_BIN, bin), ...args]] : [join(PG_BIN, bin), args];

  const [initCmd, initArgs] = as('initdb', [
    '-D',
    dataDir,
    '-U',
    'postgres',
    '--auth-local=trust',
    '--auth-host=scram-sha-256',
    '-E',
    'UTF8',
    '--no-sync',
  ]);
  const init = await run(initCmd, initArgs);
  if (init.status !== 0)
    return { missing: `initdb failed: ${(init.stderr || init.stdout).trim().split('\n').pop() ?? ''}` };

  const port = await freePort();
  const [cmd, args] = as('postgres', [
    '-D',
    dataDir,
    '-p',
    String(port),
    '-k',
    socketDir,
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'fsync=off',
    '-c',
    'synchronous_commit=off',
    '-c',
    'full_page_writes=off',
  ]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4_000);
  });
  const admin = { host: socketDir, port, user: 'postgres', database: 'postgres' };
  const ready = await waitFor(async () => {
    const c = new pg.Client(admin);
    await c.connect();
    await c.end();
  }, child);
  if (!ready) {
    await stopChild(child);
    return { missing: `postgres did not start: ${stderr.trim().split('\n').pop() ?? 'no output'}` };
  }
  const password = randomBytes(12).toString('base64url');
  const c = new pg.Client(admin);
  await c.connect();
  await c.query(`CREATE ROLE bulwark LOGIN PASSWORD '${password}'`);
  await c.query('CREATE DATABASE bulwark OWNER bulwark');
  // A single-byte database: user names with characters it cannot hold fail with SQLSTATE 22P05.
  await c.query(
    "CREATE DATABASE bulwark_latin1 OWNER bulwark ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
  );
  await c.end();
  // With runuser, `child.pid` is runuser's; the server's pid is the first line of postmaster.pid.
  const pid = serverPid(join(dataDir, 'postmaster.pid')) ?? child.pid ?? 0;
  return {
    info: { host: '127.0.0.1', port, user: 'bulwark', password, database: 'bulwark', pid, adminSocket: socketDir },
    stop: async () => {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // Already gone.
      }
      await stopChild(child, pid, 'SIGINT');
    },
  };
}

function serverPid(file: string): number | undefined {
  let first: string;
  try {
    first = readFileSync(file, 'utf8').split('\n')[0] ?? '';
  } catch {
    return undefined;
  }
  const n = Number(first.trim());
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** Runs a setup command without blocking the event loop, so services provisioned in parallel start in parallel. */
export function run(cmd: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout = (stdout + d.toString()).slice(-8_000)));
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-8_000)));
    child.on('error', (e) => resolve({ status: null, stdout, stderr: e.message }));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

export function makeTraversable(dir: string): void {
  try {
    const mode = statSync(dir).mode & 0o777;
    chmodSync(dir, mode | 0o011);
  } catch {
    // Not ours to change; initdb will report the problem.
  }
}

/** Polls `probe` until it succeeds, the child exits, or ~30 s pass (a loaded 2-core box starts slowly). */
export async function waitFor(probe: () => Promise<void>, child: ChildProcess): Promise<boolean> {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    try {
      await probe();
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return false;
}

/** Signals the server (or the child) and waits for the child to exit, escalating to SIGKILL. */
export async function stopChild(child: ChildProcess, pid?: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    process.kill(pid ?? child.pid ?? 0, signal);
  } catch {
    child.kill(signal);
  }
  const timer = setTimeout(() => {
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone.
      }
    }
    child.kill('SIGKILL');
  }, 10_000);
  await exited;
  clearTimeout(timer);
}
