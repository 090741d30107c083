import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { LineCounter, parseDocument, stringify, type Node as YamlNode } from 'yaml';
import { BulwarkError } from '../errors.js';
import { blocklistFileSchema, type BanEntry, type BlocklistFile } from './ban-entry.js';

/**
 * Parses a block-list file (the persisted one, or one given to `ban import`). JSON and YAML are both accepted since
 * YAML is a superset of JSON. Errors name `file:line:column` of the offending node.
 */
export function parseBlocklistText(text: string, file: string): BanEntry[] {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const first = doc.errors[0];
  if (first !== undefined) {
    const pos = lineCounter.linePos(first.pos[0]);
    throw new BulwarkError(
      'BULWARK_ERR_STORE_CORRUPT',
      `block list is not valid JSON or YAML: ${first.message.split('\n')[0] ?? ''}`,
      {
        file,
        line: pos.line,
        column: pos.col,
      },
      'fix the file or move it aside; the broker will not start with an unreadable block list',
    );
  }
  const parsed = blocklistFileSchema.safeParse(doc.toJS());
  if (parsed.success) return parsed.data.entries;
  const issue = parsed.error.issues[0];
  const path = (issue?.path ?? []).filter((p): p is string | number => typeof p !== 'symbol');
  let node: unknown;
  for (let depth = path.length; depth >= 0 && node === undefined; depth -= 1)
    node = doc.getIn(path.slice(0, depth), true);
  const range = (node as YamlNode | undefined)?.range;
  const pos = lineCounter.linePos(range?.[0] ?? 0);
  throw new BulwarkError(
    'BULWARK_ERR_STORE_CORRUPT',
    `block list entry invalid at ${path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`,
    { file, line: pos.line, column: pos.col },
    'expected {version: 1, entries: [{kind, value, by, reason, created, until}]}; see docs/abuse-protection.md',
  );
}

/**
 * Where a data directory keeps its block list: `guard.blocklist.file`, relative to the data directory. The guard,
 * `bulwark ban` working offline and `bulwark config check` all look here.
 */
export function blocklistPath(dataDir: string, file: string): string {
  return join(dataDir, file);
}

export function serializeBlocklist(entries: readonly BanEntry[], format: 'json' | 'yaml'): string {
  const file: BlocklistFile = { version: 1, entries: [...entries] };
  return format === 'yaml' ? stringify(file) : `${JSON.stringify(file, null, 2)}\n`;
}

export function formatForPath(path: string): 'json' | 'yaml' {
  const ext = extname(path).toLowerCase();
  return ext === '.yaml' || ext === '.yml' ? 'yaml' : 'json';
}

/** Reads a block-list file; a missing file is an empty list, anything unreadable is an error (fail closed). */
export async function readBlocklistFile(path: string): Promise<BanEntry[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new BulwarkError('BULWARK_ERR_STORE_CORRUPT', `cannot read block list ${path}: ${(error as Error).message}`);
  }
  return parseBlocklistText(text, path);
}

/**
 * Writes a file so that a crash leaves either the old or the new content, never half of one: a private temporary
 * file in the same directory, fsync, rename over the target, fsync the directory. Mode 0600: bans name clients.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = `${dir}/.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } catch (error) {
    await handle.close();
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await handle.close();
  try {
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    await dirHandle.close();
  }
}

/**
 * Coalesces saves: at most one write in flight and one pending, each writing the latest snapshot, so a storm of
 * automatic bans costs a few writes rather than one per ban.
 */
export class BlocklistStore {
  private inFlight: Promise<void> | undefined;
  private pending = false;
  private lastError: unknown;

  constructor(
    readonly path: string,
    private readonly snapshot: () => readonly BanEntry[],
    private readonly onError: (error: unknown) => void = () => undefined,
  ) {}

  /** Schedules a save of the current content; returns when a save that includes it has finished. */
  save(): Promise<void> {
    if (this.inFlight !== undefined) {
      // The running loop writes again with the newest snapshot before its promise settles.
      this.pending = true;
      return this.inFlight;
    }
    this.inFlight = this.run();
    return this.inFlight;
  }

  /** Waits for every scheduled save; rejects with the last write error, if any. */
  async flush(): Promise<void> {
    while (this.inFlight !== undefined) await this.inFlight;
    if (this.lastError !== undefined) {
      const error = this.lastError;
      this.lastError = undefined;
      throw error;
    }
  }

  private async run(): Promise<void> {
    try {
      do {
        this.pending = false;
        try {
          await writeFileAtomic(this.path, serializeBlocklist(this.snapshot(), 'json'));
          this.lastError = undefined;
        } catch (error) {
          this.lastError = error;
          this.onError(error);
        }
      } while (this.pending);
    } finally {
      this.inFlight = undefined;
    }
  }
}
