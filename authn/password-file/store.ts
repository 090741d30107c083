import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { AuditEvent } from '../../audit/events.js';
import { BulwarkError } from '../../src/errors.js';
import { writeFileAtomic } from './atomic-write.js';
import {
  digestOf,
  editPasswordFile,
  parsePasswordFile,
  type PasswordFileContents,
  type PasswordFileUser,
} from './format.js';

export type ReloadResult =
  { kind: 'reloaded'; users: number } | { kind: 'unchanged' } | { kind: 'failed'; error: string };

export interface PasswordFileStoreOptions {
  /** Authenticator id, for events. */
  id: string;
  onEvent: (event: AuditEvent) => void;
  /** Watch the file and reload on change (default true). */
  watch: boolean;
  /** Changes arriving within this window are reloaded once (editors write in several steps). */
  debounceMs: number;
}

/**
 * The users of one password file. A reload parses the whole file into a new map and swaps it in one
 * assignment, so a CONNECT sees the old users or the new ones, never a mix; a broken file keeps the previous
 * users and reports `credentials.reload_failed` with `file:line:column`.
 */
export class PasswordFileStore {
  #contents: PasswordFileContents | undefined;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #writes: Promise<unknown> = Promise.resolve();
  #reloading: Promise<ReloadResult> | undefined;

  constructor(
    readonly file: string,
    private readonly options: PasswordFileStoreOptions,
  ) {}

  /** Loads the file; a broken or missing file at startup is a configuration error (thrown). */
  async start(): Promise<void> {
    this.#contents = await this.#readContents();
    if (this.options.watch) this.#watch();
  }

  /** Reads and parses the file as start does, keeping nothing and watching nothing (`bulwark config check`). */
  async check(): Promise<void> {
    await this.#readContents();
  }

  async #readContents(): Promise<PasswordFileContents> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      throw new BulwarkError(
        'BULWARK_ERR_PASSWORD_FILE',
        `cannot read password file: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
        {
          file: this.file,
          line: 1,
          column: 1,
        },
      );
    }
    return parsePasswordFile(text, this.file);
  }

  async stop(): Promise<void> {
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#writes.catch(() => undefined);
  }

  get digest(): string | undefined {
    return this.#contents?.digest;
  }

  get size(): number {
    return this.#contents?.users.size ?? 0;
  }

  lookup(username: string): PasswordFileUser | undefined {
    return this.#contents?.users.get(username);
  }

  /** Re-reads the file now. Concurrent calls share one reload. */
  reload(): Promise<ReloadResult> {
    this.#reloading ??= this.#reload().finally(() => {
      this.#reloading = undefined;
    });
    return this.#reloading;
  }

  /**
   * Replaces one user's hash if it is still `expectedHash` (compare-and-swap against the file on disk, so an
   * operator's concurrent `bulwark passwd` wins). Used to rehash to current parameters after a login.
   */
  updateHash(username: string, expectedHash: string, newHash: string): Promise<boolean> {
    const job = this.#writes.then(async () => {
      const text = await readFile(this.file, 'utf8');
      let changed = false;
      const out = editPasswordFile(text, this.file, (users) => {
        const u = users.get(username);
        if (u && u.hash === expectedHash) {
          users.set(username, { ...u, hash: newHash });
          changed = true;
        }
      });
      if (!changed) return false;
      await writeFileAtomic(this.file, out);
      await this.reload();
      return true;
    });
    this.#writes = job.catch(() => undefined);
    return job;
  }

  async #reload(): Promise<ReloadResult> {
    const previous = this.#contents?.digest;
    let next: PasswordFileContents;
    try {
      const text = await readFile(this.file, 'utf8');
      if (digestOf(text) === previous) return { kind: 'unchanged' };
      next = parsePasswordFile(text, this.file);
    } catch (error) {
      const message =
        error instanceof BulwarkError
          ? error.describe()
          : `${this.file}:1:1: cannot read password file (${(error as NodeJS.ErrnoException).code ?? 'error'})`;
      this.options.onEvent({
        event: { action: 'credentials.reload_failed', outcome: 'failure', reason: 'previous users kept' },
        policy: { file: this.file, ...(previous ? { old_hash: previous } : {}), error: message },
        actor: 'broker',
        labels: { authenticator: this.options.id },
      });
      return { kind: 'failed', error: message };
    }
    this.#contents = next;
    this.options.onEvent({
      event: { action: 'credentials.reloaded', outcome: 'success', reason: `${next.users.size} users` },
      policy: { file: this.file, ...(previous ? { old_hash: previous } : {}), new_hash: next.digest },
      actor: 'broker',
      labels: { authenticator: this.options.id },
    });
    return { kind: 'reloaded', users: next.users.size };
  }

  #watch(): void {
    // Watch the directory: editors and writeFileAtomic replace the file by rename, which ends a file watch.
    const name = basename(this.file);
    this.#watcher = watch(dirname(this.file), { persistent: false }, (_event, changed) => {
      if (changed !== null && changed !== name) return;
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = setTimeout(() => void this.reload(), this.options.debounceMs);
      this.#timer.unref();
    });
    this.#watcher.on('error', () => undefined);
  }
}
