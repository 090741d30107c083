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
 * secrets usually are). A file that cannot be opened is refused as `cannot read (CODE)`, a refused link as what it
 * is; with `passMissing` a missing file's ENOENT is thrown as it is, for a caller that makes the file then.
 */
export function readOwnerOnlyFile(
  file: string,
  refuse: RefuseFile,
  options: { noFollow?: boolean; notRegularHint?: string; linkHint?: string; passMissing?: boolean } = {},
): Buffer {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | (options.noFollow ? constants.O_NOFOLLOW : 0));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && options.passMissing) throw error;
    // O_NOFOLLOW fails with ELOOP when the last part of the path is a link; "cannot read (ELOOP)" would not say so.
    if (code === 'ELOOP' && options.noFollow)
      refuse(
        'a symbolic link, which is not followed here',
        options.linkHint ?? 'replace the link with the file it points to',
      );
    return refuse(`cannot read (${code ?? 'error'})`);
  }
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
