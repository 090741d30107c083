import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { databaseTlsSchema } from '../authn/sql/config.js';
import { parseDuration } from '../src/config/duration.js';

/**
 * A duration setting: text in the units the rest of the configuration uses (`250ms`, `10s`, `1h30m`, `30d`,
 * src/config/duration.ts), or a YAML number of milliseconds, which the audit keys have always accepted.
 */
export function parseDurationSetting(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  return parseDuration(value);
}

const SIZE = /^(\d+)(B|KiB|MiB|GiB)?$/;
const UNIT_BYTES: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };

export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value > 0 ? value : undefined;
  const m = SIZE.exec(value.trim());
  if (!m) return undefined;
  const bytes = Number(m[1]) * (UNIT_BYTES[m[2] ?? 'B'] as number);
  return bytes > 0 ? bytes : undefined;
}

/**
 * Defaults are given as input (`prefault`), in the units an operator writes, so the generated configuration
 * reference shows them; a default applied after the transform is invisible to the schema's input side.
 */
const duration = (describe: string, defaultValue: string | number) =>
  z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const ms = parseDurationSetting(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: 'expected a duration such as 250ms, 10s, 5m, 1h30m, 24h or 30d' });
        return z.NEVER;
      }
      return ms;
    })
    .prefault(defaultValue)
    .describe(`${describe} A duration such as 250ms, 10s, 5m, 1h30m, 24h or 30d, or a number of milliseconds.`);

const size = (describe: string, defaultValue: string | number) =>
  z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const bytes = parseSize(v);
      if (bytes === undefined) {
        ctx.addIssue({ code: 'custom', message: 'expected a size such as 65536, 512KiB, 64MiB or 1GiB' });
        return z.NEVER;
      }
      return bytes;
    })
    .prefault(defaultValue)
    .describe(`${describe} A size such as 512KiB, 64MiB or 1GiB, or a number of bytes.`);

const allowedRecording = z
  .enum(['none', 'sampled', 'all'])
  .default('none')
  .describe('none: allowed decisions are not recorded; sampled: one in `allowed_sample_every`; all: every one');

/** A SQL identifier, optionally schema-qualified: the table name is part of the statement, never a parameter. */
const SQL_TABLE = /^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$/;

/** `audit.mirror`: a copy of every record in PostgreSQL, for queries and off-host retention. */
export const auditMirrorSchema = z
  .object({
    type: z.literal('postgres').describe('Where records are mirrored: `postgres`.'),
    host: z.string().min(1).default('127.0.0.1').describe('Database host.'),
    port: z.number().int().min(1).max(65_535).default(5432).describe('Database port.'),
    database: z.string().min(1).describe('Database name.'),
    user: z.string().min(1).describe('Database role of the broker: grant it INSERT on the table and nothing else.'),
    password_file: z
      .string()
      .refine((f) => isAbsolute(f), 'must be an absolute path')
      .optional()
      .describe('Absolute path of a file holding the password (first line). Without it, no password is sent.'),
    table: z
      .string()
      .regex(SQL_TABLE, 'must be a table name, optionally schema-qualified (letters, digits, underscores)')
      .default('bulwark_audit')
      .describe('Table the records go to (see docs/audit.md for its definition and grants).'),
    tls: databaseTlsSchema.optional().describe('Connect over TLS.'),
    queue_max: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(100_000)
      .describe(
        'Records waiting for the database at most; beyond it records are dropped from the mirror (counted and logged), never from the file log.',
      ),
    batch_max_records: z.number().int().min(1).max(10_000).default(500).describe('Records per INSERT at most.'),
    connect_timeout: duration('Connection establishment deadline.', '5s'),
    query_timeout: duration('Deadline of one INSERT.', '10s'),
    retry_initial: duration('First retry delay after a failed INSERT.', '1s'),
    retry_max: duration('Longest retry delay.', '1m'),
  })
  .strict();

export type AuditMirrorConfig = z.output<typeof auditMirrorSchema>;

/**
 * `audit.refusals`: how records of repeated refusals before authentication are bounded (audit/refusal-limiter.ts).
 * The defaults keep one client's flood to at most 11 records a minute per key.
 */
export const auditRefusalsSchema = z
  .object({
    burst: z
      .number()
      .int()
      .min(0)
      .max(10_000)
      .default(10)
      .describe(
        'Refusals per key (action, client address, reason code, listener) and window that are recorded one by one; later ones in the window are counted and summarised in one `audit.refusals_suppressed` record when it ends. 0: summaries only.',
      ),
    window: duration(
      'Length of a key’s counting window, from its first refusal; its summary is written when it ends. 1s to 24h.',
      '60s',
    ).refine((ms) => ms >= 1000 && ms <= 24 * 3600 * 1000, 'must be between 1s and 24h'),
    max_keys: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(1000)
      .describe(
        'Keys counted separately at most (about 200 bytes each); refusals of further keys while all are in their window share one overflow key per action, counted and summarised the same way.',
      ),
  })
  .strict();

/** The `audit:` section of the broker configuration. */
export const auditConfigSchema = z
  .object({
    enabled: z
      .boolean()
      .default(true)
      .describe('Write the tamper-evident audit log. On by default, also in the no-config local mode.'),
    directory: z
      .string()
      .optional()
      .describe(
        'Directory of the JSON Lines files. Default: `<data_dir>/audit`. Created 0750 if missing: the files are ' +
          '0640, so a log-shipping group can read the log; others never can, and only the broker writes.',
      ),
    signing_key_file: z
      .string()
      .optional()
      .describe(
        'Ed25519 private key (PKCS#8 PEM, mode 0600) that signs checkpoints. Default: `<data_dir>/audit-signing.key`, generated on first start with its public key beside it (`audit-signing.pub`). A configured file must exist; a relative path is from the working directory, as `data_dir` is.',
      ),
    fsync: z
      .enum(['always', 'interval', 'never'])
      .default('always')
      .describe(
        'always: fsync after every batch before it counts as written; interval: at most every `fsync_interval`; never: leave it to the OS',
      ),
    fsync_interval: duration('With `fsync: interval`, the longest time written records stay unsynced.', '1s'),
    batch_delay: duration(
      'Group commit: the longest a record waits for others before its batch is written (bounded delay).',
      '5ms',
    ),
    batch_max_records: z.number().int().min(1).default(1024).describe('Records per write at most.'),
    queue_max: z
      .number()
      .int()
      .min(1)
      .default(65536)
      .describe('Bound of the queue between the broker and the writer; events beyond it are dropped and counted.'),
    on_failure: z
      .enum(['fail-closed', 'continue'])
      .default('fail-closed')
      .describe(
        'fail-closed: while the log cannot be written the broker refuses new connections and security-relevant actions; continue: keep serving, raise an alarm (log and $SYS) and count dropped events',
      ),
    retry_initial: duration('First retry delay after a failed write; doubles up to `retry_max`.', '100ms'),
    retry_max: duration('Longest delay between retries of a failing write.', '5s'),
    checkpoint_interval: duration(
      'How often a signed checkpoint is appended (also at rotation and shutdown). Records after the last checkpoint are not yet signed.',
      '1m',
    ),
    rotate_max_bytes: size(
      'Start a new file once the current one has reached this size (a file exceeds it by at most one batch).',
      '64MiB',
    ),
    rotate_max_age: duration('Start a new file once the current one is older than this.', '24h'),
    retention_max_files: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe('Keep at most this many files; the oldest whole files are deleted first. 0: no limit.'),
    retention_max_age: duration('Delete whole files whose newest record is older than this. 0: keep forever.', 0),
    record_publish_allowed: allowedRecording,
    record_subscribe_allowed: allowedRecording,
    allowed_sample_every: z
      .number()
      .int()
      .min(1)
      .default(100)
      .describe('With `sampled`, record one allowed decision in this many.'),
    include_payload: z
      .boolean()
      .default(false)
      .describe('Record PUBLISH payloads (base64) in denial records. Off by default: payloads can hold secrets.'),
    refusals: auditRefusalsSchema
      .prefault({})
      .describe(
        'Bounds the records of refusals a client can repeat at no cost before it has proved anything (`tls.handshake_refused`, `proxy.header_refused`, `connection.malformed_connect`, `connection.connect_timeout`, `guard.blocked` and `guard.throttle_refused` before authentication, `authn.denied` for a CONNECT refused before any authenticator ran, and `metrics.scrape_refused`) and their log lines: a flood of connection attempts cannot fill the disk, yet every refusal is counted. See docs/audit.md, "Repeated refusals".',
      ),
    mirror: auditMirrorSchema
      .optional()
      .describe(
        'Also write every record to PostgreSQL (JSONB plus indexed columns), through a bounded queue: a slow or failing database never blocks or loses the file log. See docs/audit.md.',
      ),
  })
  .strict()
  .describe('Tamper-evident audit log: see docs/audit.md');

export type AuditConfigInput = z.input<typeof auditConfigSchema>;
export type AuditConfig = z.output<typeof auditConfigSchema>;
