import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';

/** Refuses the file with the caller's own error, which names its setting: it must throw. */
export type RefuseFile = (why: string, hint?: string) => never;

/**
 * Reads a secret a file must hold for its owner alone (the metrics token, the audit signing key, the SCRAM
 * unknown-user secret), checked and read through one descriptor, so the bytes read are those of the file checked.
 * Only a regular file is read: a FIFO would hold the start forever, a device feed it without end (the open is
 * non-blocking, so that it cannot hang either). A file group or others may read or write is refused before any of
 * its bytes is read. With `noFollow` a symbolic link is refused too: for files the broker keeps in its own data
 * directory, where a planted link must not make it read another file; a configured path may be a link (mounted
 * secrets usually are). File system errors (ENOENT, EACCES, ELOOP for a refused link) are thrown as they are, for
 * the caller to word.
 */
export function readOwnerOnlyFile(
  file: string,
  refuse: RefuseFile,
  options: { noFollow?: boolean; notRegularHint?: string } = {},
): Buffer {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | (options.noFollow ? constants.O_NOFOLLOW : 0));
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) refuse('not a regular file', options.notRegularHint);
    const mode = info.mode & 0o777;
    if (process.platform !== 'win32' && (mode & 0o077) !== 0)
      refuse(`readable or writable by group or others (mode ${mode.toString(8)})`, `chmod 600 ${file}`);
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}
