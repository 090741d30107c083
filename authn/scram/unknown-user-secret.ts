import { randomBytes } from 'node:crypto';
import { closeSync, constants, fsyncSync, linkSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { BulwarkError } from '../../src/errors.js';
import { readOwnerOnlyFile, type RefuseFile } from '../../src/owner-only-file.js';

export const UNKNOWN_USER_SECRET_FILE = 'scram-unknown-user.secret';
/** The least an unknown-user secret holds, configured or made: what makes 256-bit HMAC keys of it. */
export const UNKNOWN_USER_SECRET_BYTES = 32;

/**
 * The data directory's secret for unknown users' fake salts, made on the first start (32 random bytes, mode 0600)
 * and read at every later one. A secret new at each start would change every unknown user's salt across a restart
 * while real users' salts stay: a prober comparing the two would tell them apart (docs/scram.md).
 */
export function dataDirUnknownUserSecret(dataDir: string): Buffer {
  const existing = existingUnknownUserSecret(dataDir);
  if (existing) return existing;
  const file = join(dataDir, UNKNOWN_USER_SECRET_FILE);
  const fail = failure(file);
  // Written whole under a temporary name, then linked into place: the file never exists part-written, and a
  // second step making it at the same moment keeps the first one's (link refuses to replace).
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const cannotCreate = (error: unknown, hint: string): never =>
    fail(`cannot create (${(error as NodeJS.ErrnoException).code ?? 'error'})`, hint);
  let fd: number;
  try {
    fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (error) {
    return cannotCreate(error, 'create the data directory, or set unknown_user_secret_file');
  }
  try {
    try {
      writeSync(fd, randomBytes(UNKNOWN_USER_SECRET_BYTES));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    linkSync(tmp, file);
  } catch (error) {
    // EEXIST: another step made it first, and its secret is the one to use.
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
      cannotCreate(error, "free space on the data directory's file system, or set unknown_user_secret_file");
  } finally {
    // Also after a failed write: a full disk must not be left holding a part-written secret under another name.
    unlinkSync(tmp);
  }
  return checked(readSecretNoFollow(file, fail), fail);
}

/**
 * The data directory's secret as start reads it, or undefined when there is none yet (start makes it). Nothing is
 * created: `bulwark config check` asks this too, so that it refuses what start would.
 */
export function existingUnknownUserSecret(dataDir: string): Buffer | undefined {
  const file = join(dataDir, UNKNOWN_USER_SECRET_FILE);
  const fail = failure(file);
  try {
    return checked(readSecretNoFollow(file, fail), fail);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function failure(file: string): RefuseFile {
  return (why, hint) => {
    throw new BulwarkError('BULWARK_ERR_CONFIG_INVALID', `SCRAM unknown-user secret ${file}: ${why}`, undefined, hint);
  };
}

function checked(secret: Buffer, fail: RefuseFile): Buffer {
  if (secret.length < UNKNOWN_USER_SECRET_BYTES)
    fail(
      `holds ${secret.length} bytes, fewer than ${UNKNOWN_USER_SECRET_BYTES}`,
      'delete it: the next start makes a new one',
    );
  return secret;
}

/**
 * A symlink planted in the data directory must not make the broker read (and use) some other file's bytes. A secret
 * others can read lets them compute every unknown user's fake salt and so tell unknown names from real ones.
 */
function readSecretNoFollow(file: string, fail: RefuseFile): Buffer {
  const remake = 'delete it: the next start makes a new one';
  return readOwnerOnlyFile(file, fail, { noFollow: true, passMissing: true, notRegularHint: remake, linkHint: remake });
}
