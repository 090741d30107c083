import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { AuditEvent } from '../audit/events.js';
import type { Logger } from '../src/log.js';
import { CompiledPolicy } from './compile.js';
import { explainAccess, type Explanation } from './explain.js';
import { loadPolicySet, siblingCasesFile, type FileReader } from './load.js';
import { formatDiagnostic, type Diagnostic } from './model.js';
import type { AccessRequest } from './types.js';

/** What caused a reload; appears in events and logs. */
export type ReloadTrigger = 'startup' | 'watch' | 'sighup' | 'cli' | 'manual';

export type PolicyEvent =
  | {
      action: 'policy.reloaded';
      trigger: ReloadTrigger;
      /** Who asked for the reload, when the trigger alone does not say (`cli:<uid>@unix-socket`). */
      actor?: string;
      files: readonly string[];
      oldHash: string;
      newHash: string;
    }
  | {
      action: 'policy.reload_failed';
      trigger: ReloadTrigger;
      actor?: string;
      files: readonly string[];
      /** The hash of the policy that stays live. */
      oldHash: string;
      /** The hash of the rejected content. */
      newHash: string;
      /** The first error, `file:line:column: message`. */
      error: string;
      errors: readonly string[];
    };

export type ReloadResult =
  | { ok: true; changed: boolean; hash: string; warnings: Diagnostic[] }
  | { ok: false; errors: Diagnostic[]; message: string };

export interface PolicyManagerOptions {
  files: readonly string[];
  /** Source id that appears in decisions (`RuleRef.source`). */
  sourceId?: string;
  /** Run the files' own cases before swapping (default true): a failing case rejects the reload. */
  runCases?: boolean;
  /** Quiet period after the last file event before reloading. */
  debounceMs?: number;
  /** For the audit log: one event per swap or rejected reload. */
  onEvent?: (event: PolicyEvent) => void;
  logger?: Logger;
  readFile?: FileReader;
}

/** Turns a policy event into the audit record shape (the broker adds the actor if it knows one). */
export function policyEventToAudit(e: PolicyEvent): AuditEvent {
  return {
    event: {
      action: e.action,
      outcome: e.action === 'policy.reloaded' ? 'success' : 'failure',
      reason: e.action === 'policy.reloaded' ? `policy reloaded (${e.trigger})` : e.error,
    },
    policy: {
      file: e.files.join(','),
      old_hash: e.oldHash,
      new_hash: e.newHash,
      error: e.action === 'policy.reload_failed' ? e.error : undefined,
    },
    actor:
      e.actor ??
      (e.trigger === 'cli'
        ? 'cli'
        : e.trigger === 'sighup'
          ? 'signal:SIGHUP'
          : e.trigger === 'watch'
            ? 'file-watch'
            : 'broker'),
    labels: { trigger: e.trigger },
  };
}

/**
 * Owns the live policy. A reload reads, parses, validates, compiles and runs the files' cases, and only then
 * swaps the compiled policy in with one assignment; any failure leaves the running policy untouched (never a
 * half-loaded or empty one, unlike Mosquitto's historic failed-reload-grants-all). Reloads are serialised.
 */
export class PolicyManager {
  readonly files: readonly string[];
  #current: CompiledPolicy;
  readonly #opts: PolicyManagerOptions;
  readonly #listeners: Array<(next: CompiledPolicy, previous: CompiledPolicy) => void> = [];
  #queue: Promise<unknown> = Promise.resolve();
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: PolicyManagerOptions) {
    this.#opts = opts;
    this.files = opts.files;
    this.#current = CompiledPolicy.empty(opts.sourceId ?? 'policy');
  }

  /** The policy in force; before the first successful load, an empty one (everything denied). */
  get current(): CompiledPolicy {
    return this.#current;
  }

  /** Why the policy in force decides `req` as it does, rule by rule (for audit records of real decisions). */
  explain(req: AccessRequest): Explanation {
    return explainAccess(this.#current, req);
  }

  /** Called after each swap, with the new and the previous policy. */
  onChange(listener: (next: CompiledPolicy, previous: CompiledPolicy) => void): void {
    this.#listeners.push(listener);
  }

  /** Loads at startup; the same as a reload, with trigger `startup`. */
  load(): Promise<ReloadResult> {
    return this.reload('startup');
  }

  /**
   * For SIGHUP, the CLI and file changes. Resolves when this reload has been applied or rejected. `actor` names who
   * asked (the control channel's caller), for the audit record.
   */
  reload(trigger: ReloadTrigger = 'manual', actor?: string): Promise<ReloadResult> {
    const next = this.#queue.then(() => this.#reload(trigger, actor));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #reload(trigger: ReloadTrigger, actor: string | undefined): Promise<ReloadResult> {
    const set = await loadPolicySet(this.files, {
      sourceId: this.#opts.sourceId ?? 'policy',
      readFile: this.#opts.readFile,
      runCases: this.#opts.runCases ?? true,
    });
    const previous = this.#current;
    const errors = set.diagnostics.filter((d) => d.severity === 'error');
    if (!set.policy || errors.length > 0) {
      const formatted = errors.map(formatDiagnostic);
      const message = formatted[0] ?? 'policy rejected';
      this.#opts.logger?.error(
        { event: 'policy.reload_failed', trigger, errors: formatted, kept_hash: previous.hash },
        'policy reload failed; the running policy stays in force',
      );
      this.#emit({
        action: 'policy.reload_failed',
        trigger,
        ...(actor === undefined ? {} : { actor }),
        files: this.files,
        oldHash: previous.hash,
        newHash: set.hash,
        error: message,
        errors: formatted,
      });
      return { ok: false, errors, message };
    }
    const warnings = set.diagnostics.filter((d) => d.severity === 'warning');
    if (set.policy.hash === previous.hash) return { ok: true, changed: false, hash: previous.hash, warnings };
    this.#current = set.policy;
    this.#opts.logger?.info(
      {
        event: 'policy.reloaded',
        trigger,
        old_hash: previous.hash,
        new_hash: set.policy.hash,
        rules: set.rules.length,
      },
      'policy reloaded',
    );
    this.#emit({
      action: 'policy.reloaded',
      trigger,
      ...(actor === undefined ? {} : { actor }),
      files: this.files,
      oldHash: previous.hash,
      newHash: set.hash,
    });
    for (const l of this.#listeners) {
      try {
        l(set.policy, previous);
      } catch (e) {
        this.#opts.logger?.error({ event: 'policy.listener_failed', err: e }, 'policy change listener threw');
      }
    }
    return { ok: true, changed: true, hash: set.policy.hash, warnings };
  }

  #emit(event: PolicyEvent): void {
    try {
      this.#opts.onEvent?.(event);
    } catch (e) {
      this.#opts.logger?.error({ event: 'policy.event_listener_failed', err: e }, 'policy event listener threw');
    }
  }

  /**
   * Reloads when a policy file or its cases sibling changes. Watches the directories rather than the files,
   * because editors and deploy tools replace files by rename, which ends a watch on the file itself.
   */
  watch(): void {
    if (this.#watchers.length > 0) return;
    const byDir = new Map<string, Set<string>>();
    for (const f of this.files) {
      for (const path of [f, siblingCasesFile(f)]) {
        if (!path) continue;
        const dir = dirname(resolve(path));
        const names = byDir.get(dir) ?? new Set<string>();
        names.add(basename(path));
        byDir.set(dir, names);
      }
    }
    for (const [dir, names] of byDir) {
      try {
        const w = watch(dir, { persistent: false }, (_event, filename) => {
          if (filename === null || names.has(filename.toString())) this.#schedule();
        });
        w.on('error', (e) => this.#opts.logger?.warn({ event: 'policy.watch_failed', dir, err: e }, 'watch failed'));
        this.#watchers.push(w);
      } catch (e) {
        this.#opts.logger?.warn({ event: 'policy.watch_failed', dir, err: e }, 'cannot watch policy directory');
      }
    }
  }

  #schedule(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.reload('watch');
    }, this.#opts.debounceMs ?? 250);
    this.#timer.unref?.();
  }

  /** Stops watching; the current policy stays readable. */
  close(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
  }
}
