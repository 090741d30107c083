import { spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lchownSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DATA_DIR_LOCK_NAME, dataDirAncestorProblems, lockDataDir, prepareDataDir } from '../../src/data-dir.js';
import { BulwarkError } from '../../src/errors.js';

let dir: string;
let children: ChildProcess[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'bw-data-dir-'));
  children = [];
});
afterEach(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** A live process that is not this one, to stand for a running broker. */
async function liveProcess(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000); console.log("up")']);
  children.push(child);
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  return child.pid!;
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return child.pid!;
}

describe('prepareDataDir', () => {
  it('creates a missing data directory mode 0700, whatever the umask', () => {
    const fresh = join(dir, 'a', 'data');
    const previous = process.umask(0);
    try {
      prepareDataDir(fresh);
    } finally {
      process.umask(previous);
    }
    expect(statSync(fresh).mode & 0o777).toBe(0o700);
  });

  it('refuses a data directory writable by group or others, and a file in its place', () => {
    chmodSync(dir, 0o770);
    expect(() => prepareDataDir(dir)).toThrow(/writable by group or others/);
    const file = join(dir, 'file');
    writeFileSync(file, '');
    chmodSync(dir, 0o700);
    expect(() => prepareDataDir(file)).toThrow(BulwarkError);
  });

  // Only root can give a directory to another user; that user could then replace the socket, lock or block list.
  it.skipIf(process.geteuid?.() !== 0)('refuses a data directory owned by another user than the broker', () => {
    chmodSync(dir, 0o700);
    chownSync(dir, 65534, 65534);
    expect(() => prepareDataDir(dir)).toThrow(/owned by uid 65534/);
    chownSync(dir, 0, 0);
    expect(() => prepareDataDir(dir)).not.toThrow();
  });

  // A link in a sticky folder (/tmp) can be re-pointed by whoever made it, whatever the directory it names now.
  it.skipIf(process.geteuid?.() !== 0)(
    'refuses a data directory reached through a symbolic link another user owns, the directory or a folder above',
    () => {
      chmodSync(dir, 0o700);
      const target = join(dir, 'real');
      mkdirSync(target, { mode: 0o700 });
      const link = join(dir, 'link');
      symlinkSync(target, link);
      lchownSync(link, 65534, 65534);
      expect(() => prepareDataDir(link)).toThrow(/link is a symbolic link owned by uid 65534/);
      expect(() => prepareDataDir(join(link, 'below'))).toThrow(/link is a symbolic link owned by uid 65534/);
      expect(existsSync(join(target, 'below'))).toBe(false);
      lchownSync(link, 0, 0);
      expect(() => prepareDataDir(link)).not.toThrow();
      expect(() => prepareDataDir(join(link, 'below'))).not.toThrow();
    },
  );
});

describe('dataDirAncestorProblems', () => {
  it('names a folder above that others may write in without the sticky bit, and none with it', () => {
    const above = join(dir, 'above');
    mkdirSync(above);
    chmodSync(above, 0o757);
    const dataDir = join(above, 'data');
    expect(dataDirAncestorProblems(dataDir)).toEqual([
      { folder: above, problem: 'writable by others without the sticky bit (mode 757)' },
    ]);
    chmodSync(above, 0o1757);
    expect(dataDirAncestorProblems(dataDir)).toEqual([]);
  });

  // Only root can give a folder to another user or group.
  it.skipIf(process.geteuid?.() !== 0)(
    "names a folder above owned by another user, or writable by a group not the broker user's own",
    () => {
      const above = join(dir, 'above');
      mkdirSync(above, { mode: 0o770 });
      chmodSync(above, 0o770);
      const dataDir = join(above, 'data');
      // The user's own group (a user private group, as umask 002 makes them) is no one else.
      chownSync(above, 0, process.getegid!());
      expect(dataDirAncestorProblems(dataDir)).toEqual([]);
      chownSync(above, 0, 65534);
      expect(dataDirAncestorProblems(dataDir)).toEqual([
        { folder: above, problem: 'writable by group 65534 without the sticky bit (mode 770)' },
      ]);
      chmodSync(above, 0o755);
      chownSync(above, 65534, 0);
      expect(dataDirAncestorProblems(dataDir)).toEqual([{ folder: above, problem: 'owned by uid 65534 (mode 755)' }]);
    },
  );
});

describe('lockDataDir', () => {
  const lockFile = (): string => join(dir, DATA_DIR_LOCK_NAME);

  it('writes its pid into the lock, mode 0600, and removes it on release', () => {
    const lock = lockDataDir(dir);
    expect(readFileSync(lockFile(), 'utf8')).toBe(`${process.pid}\n`);
    expect(statSync(lockFile()).mode & 0o777).toBe(0o600);
    expect(lock.tookOverFrom).toBeUndefined();
    lock.release();
    expect(existsSync(lockFile())).toBe(false);
  });

  it('refuses while the lock names a live process, naming the pid and leaving the lock alone', async () => {
    const pid = await liveProcess();
    writeFileSync(lockFile(), `${pid}\n`);
    const error = (() => {
      try {
        lockDataDir(dir);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(BulwarkError);
    expect((error as BulwarkError).message).toBe(`another broker (pid ${pid}) is running on data directory ${dir}`);
    expect(readFileSync(lockFile(), 'utf8')).toBe(`${pid}\n`);
  });

  it('takes over the lock of a dead process, and one naming this process (pid 1 in a container)', async () => {
    const dead = await deadPid();
    writeFileSync(lockFile(), `${dead}\n`);
    const lock = lockDataDir(dir);
    expect(lock.tookOverFrom).toBe(dead);
    expect(readFileSync(lockFile(), 'utf8')).toBe(`${process.pid}\n`);
    expect(existsSync(`${lockFile()}.takeover-${dead}`)).toBe(false);
    // Not released: what a crashed previous incarnation with this pid would leave.
    const again = lockDataDir(dir);
    expect(again.tookOverFrom).toBe(process.pid);
    again.release();
  });

  it('takes over an empty lock (a power loss before its content reached the disk)', () => {
    writeFileSync(lockFile(), '');
    expect(lockDataDir(dir).tookOverFrom).toBe(0);
  });

  it('does not take over a stale lock another process is taking over already', async () => {
    const dead = await deadPid();
    writeFileSync(lockFile(), `${dead}\n`);
    writeFileSync(`${lockFile()}.takeover-${dead}`, '1\n');
    expect(() => lockDataDir(dir)).toThrow(/taking over the stale lock/);
    expect(readFileSync(lockFile(), 'utf8')).toBe(`${dead}\n`);
  });

  it('release leaves a lock that is no longer ours', async () => {
    const lock = lockDataDir(dir);
    const other = await liveProcess();
    writeFileSync(lockFile(), `${other}\n`);
    lock.release();
    expect(readFileSync(lockFile(), 'utf8')).toBe(`${other}\n`);
  });
});
