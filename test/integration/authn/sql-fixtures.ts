import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import bcrypt from 'bcryptjs';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { Secret } from '../../../authn/secret.js';
import { hashPassword } from '../../../authn/verify/password-hash.js';
import type { SqlServiceInfo } from '../../helpers/services/types.js';

export interface SeedUser {
  username: string;
  password: string;
  algorithm: string | null;
  salt: string | null;
  superuser: boolean;
  groups: string[];
}

export async function seedUsers(): Promise<SeedUser[]> {
  return [
    {
      username: 'argon-user',
      password: 'sql-argon-pw',
      algorithm: null,
      salt: null,
      superuser: true,
      groups: ['ops', 'lab'],
    },
    {
      username: 'bcrypt-user',
      password: 'sql-bcrypt-pw',
      algorithm: 'bcrypt',
      salt: null,
      superuser: false,
      groups: ['fleet'],
    },
    {
      username: 'sha-user',
      password: 'sql-sha-pw',
      algorithm: 'sha256',
      salt: 'pepperoni',
      superuser: false,
      groups: [],
    },
  ];
}

/** A plain SHA-256 of the password, as old tables hold: refused whatever the password. */
export const UNSALTED_USER: SeedUser = {
  username: 'unsalted-user',
  password: 'sql-unsalted-pw',
  algorithm: 'sha256',
  salt: null,
  superuser: true,
  groups: [],
};

async function hashFor(u: SeedUser): Promise<string> {
  if (u.algorithm === 'bcrypt') return bcrypt.hash(u.password, 4);
  if (u.algorithm === 'sha256')
    return createHash('sha256')
      .update(u.salt ?? '')
      .update(u.password)
      .digest('hex');
  return hashPassword(new Secret(u.password));
}

export const tableName = (): string => `authn_users_${randomBytes(4).toString('hex')}`;

export async function createPgTable(info: SqlServiceInfo, table: string, users: SeedUser[]): Promise<void> {
  const c = new pg.Client({
    host: info.host,
    port: info.port,
    user: info.user,
    password: info.password,
    database: info.database,
  });
  await c.connect();
  await c.query(
    `CREATE TABLE ${table} (username text PRIMARY KEY, password_hash text NOT NULL, algorithm text, salt text, is_superuser boolean NOT NULL DEFAULT false, groups text[] NOT NULL DEFAULT '{}')`,
  );
  for (const u of users) {
    await c.query(`INSERT INTO ${table} VALUES ($1, $2, $3, $4, $5, $6)`, [
      u.username,
      await hashFor(u),
      u.algorithm,
      u.salt,
      u.superuser,
      u.groups,
    ]);
  }
  await c.end();
}

export async function createMysqlTable(info: SqlServiceInfo, table: string, users: SeedUser[]): Promise<void> {
  const c = await mysql.createConnection({
    host: info.host,
    port: info.port,
    user: info.user,
    password: info.password,
    database: info.database,
  });
  await c.query(
    `CREATE TABLE ${table} (username varchar(128) PRIMARY KEY, password_hash varchar(255) NOT NULL, algorithm varchar(32), salt varchar(64), is_superuser tinyint(1) NOT NULL DEFAULT 0, \`groups\` varchar(255) NOT NULL DEFAULT '')`,
  );
  for (const u of users) {
    await c.query(`INSERT INTO ${table} VALUES (?, ?, ?, ?, ?, ?)`, [
      u.username,
      await hashFor(u),
      u.algorithm,
      u.salt,
      u.superuser ? 1 : 0,
      u.groups.join(','),
    ]);
  }
  await c.end();
}

/** SIGSTOP a server and its children (PostgreSQL backends are child processes), so it accepts but never answers. */
export function freeze(pid: number): number[] {
  const children = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .map(Number);
  const all = [pid, ...children];
  for (const p of all) process.kill(p, 'SIGSTOP');
  // kill() only queues the signal and wakes one thread; until that thread runs, another (say, a connection thread
  // woken by a query) can still answer. On a loaded machine that window let a "frozen" MariaDB reply, so wait until
  // every thread shows as stopped.
  for (const p of all) waitStopped(p);
  return all;
}

function waitStopped(pid: number, timeoutMs = 5_000): void {
  const deadline = Date.now() + timeoutMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    let stopped = true;
    try {
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        // The state letter follows the parenthesised command name, which may itself contain spaces.
        const state = stat.charAt(stat.lastIndexOf(')') + 2);
        if (state !== 'T' && state !== 't') {
          stopped = false;
          break;
        }
      }
    } catch {
      return; // Gone, or a thread exited while we read: nothing left to wait for.
    }
    if (stopped) return;
    if (Date.now() > deadline) throw new Error(`process ${pid} did not stop within ${timeoutMs} ms`);
    Atomics.wait(pause, 0, 0, 5);
  }
}

export function thaw(pids: number[]): void {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGCONT');
    } catch {
      // Exited meanwhile.
    }
  }
}
