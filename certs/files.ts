import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { BulwarkError } from '../src/errors.js';
import type { IssuedCertificate } from './types.js';

export interface WrittenFiles {
  certificate: string;
  key: string;
  chain?: string;
}

export interface WriteOptions {
  /**
   * Write `<base>.chain.crt` even when the chain is the certificate alone: an intermediate CA signed by the root
   * needs one to pass as `--ca-chain` when it issues. Default: only when the chain holds more than the certificate.
   */
  chain?: boolean;
}

/** The files `writeCertificateFiles` writes, so a caller can refuse to overwrite any of them first. */
export function certificateFilePaths(
  issued: IssuedCertificate,
  basePath: string,
  options: WriteOptions = {},
): WrittenFiles {
  const files: WrittenFiles = { certificate: `${basePath}.crt`, key: `${basePath}.key` };
  if (options.chain === true || issued.chainPem !== issued.certificatePem) files.chain = `${basePath}.chain.crt`;
  return files;
}

/** Does anything, a dangling symlink included, already occupy `path`? */
export async function pathTaken(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/**
 * Replaces `path` with `data` in one rename, so readers see the old file or the new one, never a half-written
 * or wider-permissioned one. The temporary file is created with O_EXCL and its final mode: a private key is
 * never readable by others, not even while it is being written, whatever mode a file it replaces had. A
 * symlink at `path` is refused rather than followed: it could point anywhere, a file of someone else's included.
 */
export async function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  await writeFilesAtomic([{ path, data, mode }]);
}

/**
 * Writes a set of files that belong together (a key and its certificate, their chain) as far as a file system
 * allows all or nothing: every file is checked and written to its temporary first, and only when all are ready are
 * they renamed into place. A refused path (a symbolic link, a directory) or a full disk then leaves every old file
 * as it was, never a new key beside the old certificate.
 */
export async function writeFilesAtomic(
  files: ReadonlyArray<{ path: string; data: string; mode: number }>,
): Promise<void> {
  for (const f of files) await refuseUnsafeTarget(f.path);
  const staged: string[] = [];
  try {
    for (const f of files) staged.push(await stage(f.path, f.data, f.mode));
    for (const [i, f] of files.entries()) await rename(staged[i] as string, f.path);
  } catch (error) {
    for (const temporary of staged) await unlink(temporary).catch(() => undefined);
    throw error;
  }
}

async function refuseUnsafeTarget(path: string): Promise<void> {
  const existing = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (existing?.isSymbolicLink() === true) {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      `refusing to write through the symbolic link ${path}`,
      undefined,
      'remove the link or choose another output path',
    );
  }
  if (existing !== undefined && !existing.isFile()) {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      `${path} exists and is not a regular file`,
      undefined,
      'choose another output path',
    );
  }
}

/** Writes `data` to a new temporary file beside `path` and returns its name. */
async function stage(path: string, data: string, mode: number): Promise<string> {
  const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(
    temporary,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    mode,
  );
  try {
    // The umask may have narrowed the mode; a public certificate should still be readable as documented.
    await handle.chmod(mode);
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
  await handle.close();
  return temporary;
}

/**
 * Writes `<base>.crt`, `<base>.key` (mode 0600, created that way so the key is never world-readable, even
 * briefly) and, for certificates below an intermediate and for intermediate CAs, `<base>.chain.crt`.
 */
export async function writeCertificateFiles(
  issued: IssuedCertificate,
  basePath: string,
  options: WriteOptions = {},
): Promise<WrittenFiles> {
  await mkdir(dirname(basePath), { recursive: true });
  const files = certificateFilePaths(issued, basePath, options);
  await writeFilesAtomic([
    { path: files.key, data: issued.keyPem, mode: 0o600 },
    { path: files.certificate, data: issued.certificatePem, mode: 0o644 },
    ...(files.chain === undefined ? [] : [{ path: files.chain, data: issued.chainPem, mode: 0o644 }]),
  ]);
  return files;
}

export async function writePublicFile(path: string, pem: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, pem, 0o644);
}
