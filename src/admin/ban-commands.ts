import { z } from 'zod';
import { BAN_KINDS, banEntrySchema } from '../guard/ban-entry.js';
import type { Guard } from '../guard/guard.js';
import type { AdminResult, AdminServer } from './server.js';

/** What the ban commands need of the guard. */
export type BanManager = Pick<
  Guard,
  'ban' | 'unban' | 'list' | 'importEntries' | 'throttled' | 'releaseThrottle' | 'flush'
>;

export const banAddParams = z
  .strictObject({
    kind: z.enum(BAN_KINDS),
    value: z.string().min(1).max(65_535),
    reason: z.string().max(1024).default(''),
    /** Exactly one of the three. */
    duration_ms: z.number().int().positive().optional(),
    until: z.iso.datetime({ offset: true }).optional(),
    forever: z.literal(true).optional(),
  })
  .refine((p) => [p.duration_ms, p.until, p.forever].filter((v) => v !== undefined).length === 1, {
    message: 'give exactly one of duration_ms, until or forever',
  });

export const banDeleteParams = z.strictObject({ kind: z.enum(BAN_KINDS), value: z.string().min(1).max(65_535) });
export const throttleReleaseParams = z.strictObject({
  dimension: z.enum(['username', 'address']),
  key: z.string().min(1).max(65_535),
});
export const banImportParams = z.strictObject({ entries: z.array(banEntrySchema).max(10_000_000) });

function invalid(error: z.ZodError): AdminResult {
  return {
    ok: false,
    code: 'invalid_params',
    message: error.issues.map((i) => `${i.path.join('.') || '(params)'}: ${i.message}`).join('; '),
  };
}

/** A save that failed must not be reported as done: the ban would silently vanish at the next restart. */
async function persisted(guard: BanManager, result: AdminResult): Promise<AdminResult> {
  try {
    await guard.flush();
    return result;
  } catch {
    return {
      ok: false,
      code: 'failed',
      message: 'applied in memory but could not be written to the data directory; see the broker log',
    };
  }
}

/** `ban.add`, `ban.delete`, `ban.list`, `ban.export`, `ban.import` on the control channel. */
export function registerBanCommands(server: AdminServer, guard: BanManager, now: () => number = Date.now): void {
  server.register(
    'ban.add',
    async (params, { actor }) => {
      const parsed = banAddParams.safeParse(params);
      if (!parsed.success) return invalid(parsed.error);
      const p = parsed.data;
      const until =
        p.forever === true ? null : p.until !== undefined ? Date.parse(p.until) : now() + (p.duration_ms ?? 0);
      const added = guard.ban({ kind: p.kind, value: p.value, reason: p.reason, until }, actor);
      const labels = { kind: p.kind };
      if (added.kind === 'rejected') return { ok: false, code: 'rejected', message: added.reason, auditLabels: labels };
      return persisted(guard, {
        ok: true,
        result: { entry: added.entry, replaced: added.replaced !== undefined },
        auditLabels: { ...labels, value: added.entry.value },
      });
    },
    'add or replace a block-list entry and disconnect the clients it matches',
  );
  server.register(
    'ban.delete',
    async (params, { actor }) => {
      const parsed = banDeleteParams.safeParse(params);
      if (!parsed.success) return invalid(parsed.error);
      const removed = guard.unban(parsed.data.kind, parsed.data.value, actor);
      const labels = { kind: parsed.data.kind, value: parsed.data.value };
      if (removed === undefined)
        return {
          ok: false,
          code: 'not_found',
          message: `no ${parsed.data.kind} entry for that value`,
          auditLabels: labels,
        };
      return persisted(guard, { ok: true, result: { entry: removed }, auditLabels: labels });
    },
    'remove a block-list entry',
  );
  server.register(
    'ban.list',
    () => ({ ok: true, result: { entries: guard.list(), throttled: guard.throttled() } }),
    'list block-list entries and active throttle lockouts',
  );
  server.register(
    'ban.export',
    () => ({ ok: true, result: { version: 1, entries: guard.list() } }),
    'the block list in its file format',
  );
  server.register(
    'ban.import',
    async (params, { actor }) => {
      const parsed = banImportParams.safeParse(params);
      if (!parsed.success) return invalid(parsed.error);
      const outcome = guard.importEntries(parsed.data.entries, actor);
      return persisted(guard, {
        ok: true,
        result: outcome,
        auditLabels: { added: String(outcome.added), skipped: String(outcome.skipped.length) },
      });
    },
    'merge entries into the block list',
  );
  server.register(
    'throttle.release',
    (params, { actor }) => {
      const parsed = throttleReleaseParams.safeParse(params);
      if (!parsed.success) return invalid(parsed.error);
      const labels = { dimension: parsed.data.dimension, key: parsed.data.key };
      if (!guard.releaseThrottle(parsed.data.dimension, parsed.data.key, actor))
        return {
          ok: false,
          code: 'not_found',
          message: 'no active throttle lockout for that key',
          auditLabels: labels,
        };
      return { ok: true, result: { released: true }, auditLabels: labels };
    },
    'lift a brute-force throttle lockout or throttle ban early',
  );
}
