import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import mysql from 'mysql2/promise';
import { freePort } from '../free-port.js';
import { makeTraversable, run, stopChild, waitFor } from './postgres.js';
import type { SqlServiceInfo, Started } from './types.js';

const MARIADBD = ['/usr/sbin/mariadbd', '/usr/sbin/mysqld'];
const INSTALL_DB = '/usr/bin/mariadb-install-db';

/**
 * Starts a private MariaDB on a free loopback port: `mariadb-install-db` into `workDir`, `mariadbd` in the
 * foreground as a child process (durability off), then a database `bulwark` and a password user `bulwark`
 * allowed from 127.0.0.1. As root the server runs as user `mysql`.
 */
export async function startMariaDb(workDir: string): Promise<Started<SqlServiceInfo>> {
  const server = MARIADBD.find((p) => existsSync(p));
  if (!server || !existsSync(INSTALL_DB)) return { missing: 'MariaDB not installed (apt-get install mariadb-server)' };
  const asRoot = process.getuid?.() === 0;
  let owner: { uid: number; gid: number } | undefined;
  if (asRoot) {
    const id = spawnSync('id', ['-u', 'mysql'], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', 'mysql'], { encoding: 'utf8' });
    if (id.status !== 0) return { missing: 'running as root but there is no "mysql" user to run MariaDB as' };
    owner = { uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
  }
  mkdirSync(workDir, { recursive: true });
  if (owner) makeTraversable(dirname(workDir));
  const dataDir = join(workDir, 'data');
  const socket = join(workDir, 'mariadb.sock');
  const pidFile = join(workDir, 'mariadb.pid');
  mkdirSync(dataDir, { recursive: true });
  if (owner) {
    chownSync(workDir, owner.uid, owner.gid);
    chownSync(dataDir, owner.uid, owner.gid);
  }
  const port = await freePort();
  const cnf = join(workDir, 'my.cnf');
  writeFileSync(
    cnf,
    [
      '[mysqld]',
      `datadir=${dataDir}`,
      `socket=${socket}`,
      `pid-file=${pidFile}`,
      // Its own: as user mysql it cannot write to a TMPDIR owned by root (the test run's folder).
      `tmpdir=${workDir}`,
      `port=${port}`,
      'bind-address=127.0.0.1',
      ...(owner ? ['user=mysql'] : []),
      'skip-name-resolve',
      'skip-log-bin',
      'innodb_flush_log_at_trx_commit=0',
      'innodb_doublewrite=0',
      'innodb_buffer_pool_size=32M',
      'innodb_log_file_size=16M',
      'sync_binlog=0',
      'max_connections=200',
      '',
    ].join('\n'),
  );
  const install = await run(INSTALL_DB, [
    `--defaults-file=${cnf}`,
    '--auth-root-authentication-method=normal',
    '--skip-test-db',
    '--skip-name-resolve',
  ]);
  if (install.status !== 0) {
    return {
      missing: `mariadb-install-db failed: ${(install.stderr || install.stdout).trim().split('\n').pop() ?? ''}`,
    };
  }
  const child = spawn(server, [`--defaults-file=${cnf}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4_000);
  });
  const ready = await waitFor(async () => {
    const c = await mysql.createConnection({ socketPath: socket, user: 'root' });
    await c.end();
  }, child);
  if (!ready) {
    await stopChild(child);
    return { missing: `mariadbd did not start: ${stderr.trim().split('\n').pop() ?? 'no output'}` };
  }
  const password = randomBytes(12).toString('base64url');
  const c = await mysql.createConnection({ socketPath: socket, user: 'root' });
  await c.query('CREATE DATABASE bulwark');
  await c.query(`CREATE USER 'bulwark'@'127.0.0.1' IDENTIFIED BY '${password}'`);
  await c.query(`GRANT ALL PRIVILEGES ON bulwark.* TO 'bulwark'@'127.0.0.1'`);
  await c.end();
  const pid = Number(readFileSync(pidFile, 'utf8').trim()) || child.pid || 0;
  return {
    info: { host: '127.0.0.1', port, user: 'bulwark', password, database: 'bulwark', pid, adminSocket: socket },
    stop: async () => {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // Already gone.
      }
      await stopChild(child, pid, 'SIGTERM');
    },
  };
}
