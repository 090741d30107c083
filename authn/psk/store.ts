import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { AuditEvent } from '../../audit/events.js';
import { BulwarkError } from '../../src/errors.js';
import { parsePskFile } from './format.js';

export interface PskStoreOptions {
  file: string;
  watch: boolean;
  /** Changes within this window cause one reload. */
  debounceMs: number;
  /** `credentials.reloaded` / `credentials.reload_failed` for the audit log. Never carries key material. */
  onEvent: (event: AuditEvent) => void;
}

export type PskReloadResult =
  | { kind: 'reloaded'; identities: number; warnings: string[] }
  | { kind: 'unchanged' }
  | { kind: 'failed'; errors: BulwarkError[] };

/**
 * The identities and keys of one PSK file. The whole table is replaced in one assignment, so a handshake
 * sees either the old or the new file, never a mix; a broken file keeps the previous table live.
 */
export class PskStore {
  #keys = new Map<string, Buffer>();
  #digest: string | undefined;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #reloading: Promise<PskReloadResult> | undefined;
  readonly #options: PskStoreOptions;

  constructor(options: PskStoreOptions) {
    this.#options = options;
  }

  get file(): string {
    return this.#options.file;
  }

  get size(): number {
    return this.#keys.size;
  }

  /** Loads the file; throws the first `BulwarkError` when it is unreadable or invalid (startup must fail). */
  async start(): Promise<void> {
    const result = await this.reload();
    if (result.kind === 'failed')
      throw result.errors[0] ?? new BulwarkError('BULWARK_ERR_PASSWORD_FILE', 'PSK file failed to load');
    if (this.#options.watch) this.#watch();
  }

  async stop(): Promise<void> {
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  lookup(identity: string): Buffer | undefined {
    return this.#keys.get(identity);
  }

  has(identity: string): boolean {
    return this.#keys.has(identity);
  }

  /** Re-reads the file now. Concurrent calls share one read. */
  reload(): Promise<PskReloadResult> {
    this.#reloading ??= this.#load().finally(() => {
      this.#reloading = undefined;
    });
    return this.#reloading;
  }

  /** Reads and parses the file as start does, keeping nothing and watching nothing (`bulwark config check`). */
  async check(): Promise<void> {
    const read = await this.#read();
    const parsed = 'errors' in read ? read : parsePskFile(read.text, this.#options.file);
    if ('errors' in parsed && parsed.errors.length > 0) throw parsed.errors[0];
  }

  async #read(): Promise<{ text: string } | { errors: BulwarkError[] }> {
    const file = this.#options.file;
    try {
      return { text: await readFile(file, 'utf8') };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
      return {
        errors: [
          new BulwarkError(
            'BULWARK_ERR_PASSWORD_FILE',
            `cannot read PSK file (${code})`,
            { file, line: 1, column: 1 },
            'check the path and permissions',
          ),
        ],
      };
    }
  }

  async #load(): Promise<PskReloadResult> {
    const file = this.#options.file;
    const read = await this.#read();
    if ('errors' in read) return this.#failed(read.errors);
    const text = read.text;
    const digest = createHash('sha256').update(text).digest('hex');
    if (digest === this.#digest) return { kind: 'unchanged' };
    const parsed = parsePskFile(text, file);
    if (!parsed.ok) return this.#failed(parsed.errors);
    const oldDigest = this.#digest;
    this.#keys = parsed.keys;
    this.#digest = digest;
    this.#options.onEvent({
      event: {
        action: 'credentials.reloaded',
        outcome: 'success',
        reason: `${parsed.keys.size} PSK identities loaded`,
      },
      actor: 'broker',
      policy: {
        file,
        ...(oldDigest !== undefined ? { old_hash: `sha256:${oldDigest}` } : {}),
        new_hash: `sha256:${digest}`,
      },
      labels: {
        kind: 'psk',
        identities: String(parsed.keys.size),
        ...(parsed.warnings.length > 0 ? { warnings: parsed.warnings.join('; ') } : {}),
      },
    });
    return { kind: 'reloaded', identities: parsed.keys.size, warnings: parsed.warnings };
  }

  #failed(errors: BulwarkError[]): PskReloadResult {
    this.#options.onEvent({
      event: {
        action: 'credentials.reload_failed',
        outcome: 'failure',
        reason: 'the PSK file was refused; the previous keys stay',
      },
      actor: 'broker',
      policy: { file: this.#options.file, error: errors.map((e) => e.describe()).join('; ') },
      labels: { kind: 'psk', kept_identities: String(this.#keys.size) },
    });
    return { kind: 'failed', errors };
  }

  #watch(): void {
    // Watch the folder: editors and atomic writers replace the file by rename, which ends a watch on the file.
    const name = basename(this.#options.file);
    this.#watcher = watch(dirname(this.#options.file), { persistent: false }, (_event, changed) => {
      if (changed !== null && changed !== name && !changed.startsWith('..')) return;
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = setTimeout(() => void this.reload(), this.#options.debounceMs);
      this.#timer.unref();
    });
    this.#watcher.on('error', () => undefined);
  }
}
