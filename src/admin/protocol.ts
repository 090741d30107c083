import { z } from 'zod';

/**
 * The control channel's wire format: one JSON object per line (newline-delimited JSON) in each direction, one
 * response per request, in order. Requests carry an `id` the response echoes.
 *
 *   → {"id":1,"command":"ban.list","params":{},"uid":1000}
 *   ← {"id":1,"ok":true,"result":{...}}
 *   ← {"id":2,"ok":false,"error":{"code":"unknown_command","message":"..."}}
 */
export const adminRequestSchema = z.strictObject({
  id: z.union([z.string().max(128), z.number().int()]),
  command: z.string().min(1).max(128),
  params: z.unknown().optional(),
  /** The caller's uid as the client reports it; informational, see docs/admin.md (no peer credentials in Node). */
  uid: z.number().int().nonnegative().optional(),
});
export type AdminRequest = z.output<typeof adminRequestSchema>;

export type AdminErrorCode =
  | 'bad_request'
  | 'too_large'
  | 'unknown_command'
  | 'invalid_params'
  | 'rejected'
  | 'not_found'
  | 'failed'
  /** The broker cannot record the command (the audit log is failing, `on_failure: fail-closed`); retry later. */
  | 'audit_unavailable'
  /** The connection limit is reached; nothing was run. */
  | 'busy';

export type AdminResponse =
  | { id: string | number | null; ok: true; result: unknown }
  | {
      id: string | number | null;
      ok: false;
      error: { code: AdminErrorCode; message: string; errors?: readonly string[] };
    };

export const adminResponseSchema = z.union([
  z.object({ id: z.union([z.string(), z.number(), z.null()]), ok: z.literal(true), result: z.unknown() }),
  z.object({
    id: z.union([z.string(), z.number(), z.null()]),
    ok: z.literal(false),
    error: z.object({ code: z.string(), message: z.string(), errors: z.array(z.string()).optional() }),
  }),
]);

/** File name of the socket inside the data directory. */
export const ADMIN_SOCKET_NAME = 'admin.sock';

/** Longest request line accepted (an import of a large block list fits; a runaway client does not). */
export const DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024;
