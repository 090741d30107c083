import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Small tmpfs mounts a test can fill completely, so the code under test meets a real ENOSPC. Mounting needs root
 * (the test machines run as root); where it is refused, `mount` answers undefined and the caller skips.
 */
export class SmallFilesystems {
  readonly #mounts: string[] = [];

  /** Mounts a tmpfs of `size` (`64k`, `256k`, …) on `dir`, an empty folder; undefined where mounting is refused. */
  mount(dir: string, size: string): string | undefined {
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
    } catch {
      return undefined;
    }
    this.#mounts.push(dir);
    return dir;
  }

  /** Lazy: a test that failed may still hold a file open on one. */
  unmountAll(): void {
    for (const m of this.#mounts.splice(0)) execFileSync('umount', ['-l', m]);
  }
}

/** Whether this process may mount a tmpfs: tried once, on a folder of its own, and undone. */
export function canMountTmpfs(): boolean {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-tmpfs-probe-'));
  const probe = new SmallFilesystems();
  try {
    return probe.mount(dir, '64k') !== undefined;
  } finally {
    probe.unmountAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Writes to `file` until the file system is full, down to single bytes: the next write anyone makes there gets
 * ENOSPC, possibly after a part.
 */
export function fillFilesystem(file: string): void {
  const fd = openSync(file, 'w');
  try {
    for (const size of [64 * 1024, 4096, 1])
      try {
        for (;;) writeSync(fd, Buffer.alloc(size, 1));
      } catch {
        // Full at this granularity: go on with smaller writes.
      }
  } finally {
    closeSync(fd);
  }
}
