import { z } from 'zod';
import { MIN_ITERATIONS, SCRAM_MECHANISMS } from './mechanism.js';

const sqlStoreShape = {
  host: z.string().min(1).default('127.0.0.1').describe('Database host.'),
  port: z.number().int().min(1).max(65_535).describe('Database port.'),
  user: z.string().min(1).describe('Database user; give it SELECT on the credential table only.'),
  password: z.string().optional().describe('Database password. Prefer `password_file`.'),
  password_file: z.string().optional().describe('File holding the database password (trailing newline ignored).'),
  database: z.string().min(1).describe('Database name.'),
  ca_file: z.string().optional().describe('PEM CA bundle; when set the connection uses TLS and verifies the server.'),
  max_connections: z.number().int().min(1).max(64).default(4).describe('Connection pool size.'),
  query_timeout_ms: z.number().int().min(100).max(60_000).default(5_000).describe('Per-query deadline.'),
  statement: z
    .string()
    .optional()
    .describe(
      'SELECT returning `salt, iterations, stored_key, server_key` (or one `credential` column in the file layout) for the parameters (username, mechanism): `$1, $2` for postgres, `?, ?` for mysql. Values are always passed as parameters.',
    ),
};

export const scramStoreSchema = z
  .discriminatedUnion('type', [
    z
      .object({
        type: z.literal('file'),
        path: z.string().min(1).describe('SCRAM credential file (see docs/scram.md); relative to the config file.'),
      })
      .strict(),
    z.object({ type: z.literal('postgres'), ...sqlStoreShape }).strict(),
    z.object({ type: z.literal('mysql'), ...sqlStoreShape }).strict(),
  ])
  .describe('Where SCRAM credentials (salt, iterations, StoredKey, ServerKey) are kept; never passwords.');

/** Settings of a `scram` authentication step (the registry adds `type`, `id`, `on_error`, `timeout_ms`, `when`). */
export const scramSettingsSchema = z
  .object({
    mechanisms: z
      .array(z.enum(SCRAM_MECHANISMS))
      .min(1)
      .default([...SCRAM_MECHANISMS])
      .describe('MQTT 5 Authentication Methods this step answers: `SCRAM-SHA-256`, `SCRAM-SHA-512`.'),
    min_iterations: z
      .number()
      .int()
      .min(MIN_ITERATIONS)
      .default(MIN_ITERATIONS)
      .describe('Stored credentials with fewer PBKDF2 iterations are refused (RFC 7677: at least 4096).'),
    unknown_user_iterations: z
      .number()
      .int()
      .min(MIN_ITERATIONS)
      .optional()
      .describe(
        'Iteration count announced to unknown users. Default: the count most credentials of a `file` store use (per mechanism); `min_iterations` for SQL stores, so set it there to what your credentials use.',
      ),
    unknown_user_secret_file: z
      .string()
      .optional()
      .describe(
        'File with at least 32 bytes of secret used to derive stable fake salts for unknown users. Default: `<data_dir>/scram-unknown-user.secret`, 32 random bytes made on the first start (mode 0600).',
      ),
    store: scramStoreSchema,
  })
  .strict();

export type ScramSettings = z.output<typeof scramSettingsSchema>;
