import {
  closeSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { BulwarkError } from './errors.js';

/** File name of the lock inside the data directory. */
export const DATA_DIR_LOCK_NAME = 'bulwark.lock';

/** Whether a file of this owner is another user's: neither the broker's user nor root (who can write anywhere). */
function isForeign(uid: number, self: number): boolean {
  return uid !== self && uid !== 0;
}

/**
 * Why a directory of this owner is not the broker's own, or undefined when it is: its owner can write in it whatever
 * the mode says, so one that is neither the broker's user nor root (who can anyway) could replace the control
 * socket, the lock or the block list. Undefined where there are no uids (Windows).
 */
function foreignOwner(dir: string, uid: number): BulwarkError | undefined {
  const self = process.geteuid?.();
  if (self === undefined || !isForeign(uid, self)) return undefined;
  return new BulwarkError(
    'BULWARK_ERR_LISTEN',
    `data directory ${dir} is owned by uid ${uid}, not by the broker's user (uid ${self}); its owner could replace the control socket, the lock or the block list`,
    undefined,
    `chown ${self} ${dir}`,
  );
}

/**
 * Why the path to the data directory is not the broker's own, or undefined when it is: a symbolic link on it (the
 * directory itself or a folder above it) owned by another user than the broker's or root. Whoever owns a link in a
 * sticky folder such as /tmp can point it at a directory of their own at any time, after every check here: the
 * broker's next open of its block list, and every `bulwark` command's control socket, would follow it there.
 * Undefined where there are no uids (Windows).
 */
function foreignLink(dir: string): BulwarkError | undefined {
  const self = process.geteuid?.();
  if (self === undefined) return undefined;
  const absolute = resolve(dir);
  for (let end = absolute.indexOf(sep, 1); ; end = absolute.indexOf(sep, end + 1)) {
    const prefix = end === -1 ? absolute : absolute.slice(0, end);
    let info: Stats;
    try {
      info = lstatSync(prefix);
    } catch {
      // Missing: created below, by the broker's user.
      return undefined;
    }
    if (info.isSymbolicLink() && isForeign(info.uid, self))
      return new BulwarkError(
        'BULWARK_ERR_LISTEN',
        `data directory ${dir}: ${prefix} is a symbolic link owned by uid ${info.uid}, not by the broker's user (uid ${self}) or root; its owner could point it at a directory of their own`,
        undefined,
        `name the directory it points to instead: ${realpathOf(prefix)}`,
      );
    if (end === -1) return undefined;
  }
}

function realpathOf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return 'its target';
  }
}

/** A folder above the data directory that lets another user replace it (`dataDirAncestorProblems`). */
export interface DataDirAncestorProblem {
  folder: string;
  /** e.g. `writable by others without the sticky bit (mode 777)` */
  problem: string;
}

/** Logged (start) and printed (config check) as this, with the folder and its problem. */
export const DATA_DIR_ANCESTOR_WARNING = 'a folder above the data directory lets another user replace it';

/**
 * Folders above the data directory in which a user other than the broker's (or root) can rename entries: one
 * writable by others, or by a group that is not the broker user's own, without the sticky bit; or one owned by
 * another user. Whoever can do that can move the data directory aside after start's checks and put one of their own
 * in its place, with their block list and their control socket. A warning, not a refusal: shared folders like these
 * are common on development machines, and Mosquitto checks none of it. Empty where there are no uids (Windows).
 */
export function dataDirAncestorProblems(dir: string): DataDirAncestorProblem[] {
  const self = process.geteuid?.();
  const ownGroup = process.getegid?.();
  if (self === undefined) return [];
  let folder: string;
  try {
    folder = realpathSync(dirname(resolve(dir)));
  } catch {
    return [];
  }
  const problems: DataDirAncestorProblem[] = [];
  for (;;) {
    let info: Stats | undefined;
    try {
      info = statSync(folder);
    } catch {
      info = undefined;
    }
    if (info) {
      const sticky = (info.mode & 0o1000) !== 0;
      const why = isForeign(info.uid, self)
        ? `owned by uid ${info.uid}`
        : !sticky && (info.mode & 0o002) !== 0
          ? 'writable by others without the sticky bit'
          : !sticky && (info.mode & 0o020) !== 0 && info.gid !== ownGroup
            ? `writable by group ${info.gid} without the sticky bit`
            : undefined;
      if (why) problems.push({ folder, problem: `${why} (mode ${(info.mode & 0o7777).toString(8)})` });
    }
    const parent = dirname(folder);
    if (parent === folder) return problems;
    folder = parent;
  }
}

/**
 * Creates the data directory (0700) when it is missing and refuses one that is not a directory, that group or
 * others may write to, or that another user owns: someone who can write there could replace the control socket, the
 * lock or the block list.
 * Runs before anything else of the broker, so a refusal costs no warm-up, store load or open port.
 */
export function prepareDataDir(dir: string): void {
  // Before mkdir too: it would follow another user's link and create the directory where they chose.
  const link = foreignLink(dir);
  if (link) throw link;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new BulwarkError(
      'BULWARK_ERR_LISTEN',
      `cannot create data directory ${dir}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      undefined,
      'create it with mode 0700, owned by the broker user',
    );
  }
  const problem = unsafeDataDir(dir);
  if (problem) throw problem;
}

/**
 * Why an existing data directory is refused (reached through another user's link, not a directory, writable by
 * group or others, another user's), or undefined when it is fit. Start, the embedded control channel and `bulwark
 * config check` all ask this one function, so that none accepts what another refuses.
 */
export function unsafeDataDir(dir: string): BulwarkError | undefined {
  const link = foreignLink(dir);
  if (link) return link;
  const info = statSync(dir);
  if (!info.isDirectory())
    return new BulwarkError('BULWARK_ERR_LISTEN', `data directory ${dir} is not a directory`, undefined, 'move it');
  if ((info.mode & 0o022) !== 0)
    return new BulwarkError(
      'BULWARK_ERR_LISTEN',
      `data directory ${dir} is writable by group or others (mode ${(info.mode & 0o777).toString(8)})`,
      undefined,
      `chmod 0700 ${dir}`,
    );
  return foreignOwner(dir, info.uid);
}

export interface DataDirLock {
  readonly file: string;
  /** The pid of a dead broker whose lock was taken over, for the log. */
  readonly tookOverFrom: number | undefined;
  /** Removes the lock file if it is still ours. Synchronous, so it can run in a process `exit` handler. */
  release(): void;
}

/**
 * Makes this process the only broker on `dir`: `bulwark.lock`, holding the pid, appears at once with its content
 * (written to a temporary file, then hard-linked, which fails if the lock exists), so nobody reads a half-made lock.
 * A lock whose pid is not alive (a broker killed with SIGKILL, a power loss) is taken over. Our own pid counts as
 * dead: in a container the broker is pid 1 at every start, and the lock it left is never this process's.
 *
 * Taking over is serialised per stale pid through a second O_EXCL file, `bulwark.lock.takeover-<pid>`: two brokers
 * starting at once over the same stale lock would otherwise both delete it, and the slower one would delete the
 * faster one's fresh lock and run beside it. A pid reused by an unrelated live process keeps the lock (the start is
 * refused, naming the pid and the file): refusing wrongly is recoverable, two brokers on one journal are not.
 */
export function lockDataDir(dir: string): DataDirLock {
  const file = join(dir, DATA_DIR_LOCK_NAME);
  for (let attempt = 0; attempt < 3; attempt++) {
    if (createLock(file)) return holding(file, undefined);
    const holder = readPid(file);
    if (holder === undefined) continue;
    if (holder !== process.pid && isAlive(holder))
      throw new BulwarkError(
        'BULWARK_ERR_LISTEN',
        `another broker (pid ${holder}) is running on data directory ${dir}`,
        undefined,
        `stop it, or use another data directory; if no process ${holder} is a broker, delete ${file}`,
      );
    const takeover = `${file}.takeover-${holder}`;
    const guard = openExclusive(takeover);
    if (guard === undefined)
      throw new BulwarkError(
        'BULWARK_ERR_LISTEN',
        `another process is taking over the stale lock ${file} of pid ${holder}`,
        undefined,
        `if no broker is starting, delete ${takeover}`,
      );
    try {
      writeSync(guard, `${process.pid}\n`);
      // Under the takeover file nobody else can remove a lock naming `holder`; re-reading closes the gap between
      // our first read and taking the takeover file, in which another broker may already have replaced it.
      if (readPid(file) !== holder) continue;
      unlinkSync(file);
      if (createLock(file)) return holding(file, holder);
    } finally {
      closeSync(guard);
      unlinkSync(takeover);
    }
  }
  throw new BulwarkError(
    'BULWARK_ERR_LISTEN',
    `cannot lock data directory ${dir}: ${file} keeps changing`,
    undefined,
    'another broker is starting on it',
  );
}

function holding(file: string, tookOverFrom: number | undefined): DataDirLock {
  let held = true;
  return {
    file,
    tookOverFrom,
    release(): void {
      if (!held) return;
      held = false;
      try {
        if (readPid(file) === process.pid) unlinkSync(file);
      } catch {
        // Gone or unreadable: what is left names a dead pid, which the next start takes over.
      }
    },
  };
}

/** True when the lock was created (holding our pid), false when it exists already. */
function createLock(file: string): boolean {
  const staged = `${file}.${process.pid}`;
  try {
    writeFileSync(staged, `${process.pid}\n`, { mode: 0o600 });
    linkSync(staged, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new BulwarkError(
      'BULWARK_ERR_LISTEN',
      `cannot create ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      undefined,
      'the data directory must be writable by the broker user',
    );
  } finally {
    try {
      unlinkSync(staged);
    } catch {
      // Never created (the write failed): nothing to remove.
    }
  }
}

/** The file descriptor of a newly created file, or undefined when it exists already. */
function openExclusive(file: string): number | undefined {
  try {
    return openSync(file, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw new BulwarkError(
      'BULWARK_ERR_LISTEN',
      `cannot create ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      undefined,
      'the data directory must be writable by the broker user',
    );
  }
}

/**
 * The pid a lock file names; undefined when the file vanished. A file without a pid (emptied by a power loss before
 * it reached the disk) names pid 0, which is never alive, so it is taken over.
 */
function readPid(file: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : 0;
}

function isAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
