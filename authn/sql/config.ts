import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { BulwarkError } from '../../src/errors.js';
import { defineAuthenticatorType, type AuthenticatorContext } from '../registry.js';
import { HASH_ALGORITHMS } from '../verify/password-hash.js';
import { SqlAuthenticator } from './authenticator.js';
import type { SqlBackend, SqlConnectionSettings } from './backend.js';
import { MysqlBackend } from './mysql-backend.js';
import { PostgresBackend } from './postgres-backend.js';
import { compileQuery } from './query-template.js';

/** TLS to a SQL backend; shared by the SQL authenticators and the SQL policy sources. */
export const databaseTlsSchema = z
  .object({
    ca_file: z.string().optional().describe('CA bundle to verify the database certificate.'),
    server_name: z.string().optional().describe('Expected server name (SNI/verification).'),
    reject_unauthorized: z.boolean().default(true).describe('Refuse an unverified database certificate.'),
  })
  .strict();

const sqlSettingsShape = (defaultPort: number) => ({
  host: z.string().min(1).default('127.0.0.1').describe('Database host.'),
  port: z.number().int().min(1).max(65_535).default(defaultPort).describe('Database port.'),
  database: z.string().min(1).describe('Database name.'),
  user: z.string().min(1).describe('Database user (give it SELECT on the credential table only).'),
  password_file: z
    .string()
    .optional()
    .describe('File holding the database password (first line). Preferred over `password`, which sits in the config.'),
  password: z.string().optional().describe('Database password inline; prefer `password_file`.'),
  pool_size: z.number().int().min(1).max(256).default(8).describe('Connections kept per step.'),
  connect_timeout_ms: z.number().int().min(1).max(60_000).default(2_000).describe('Connection establishment deadline.'),
  query_timeout_ms: z
    .number()
    .int()
    .min(1)
    .max(60_000)
    .default(2_000)
    .describe('Per-query deadline; the connection is discarded on expiry.'),
  tls: databaseTlsSchema.optional().describe('Connect over TLS.'),
  query: z
    .string()
    .min(1)
    // The same check as at start, so that `bulwark config check` names the query's line.
    .superRefine((query, ctx) => {
      try {
        compileQuery(query, 'postgres');
      } catch (error) {
        if (!(error instanceof BulwarkError)) throw error;
        const hint = error.hint === undefined ? '' : ` (${error.hint})`;
        ctx.addIssue({ code: 'custom', message: `${error.message}${hint}` });
      }
    })
    .describe(
      'Parameterised query with ${username}, ${clientid}, ${peerhost}, ${cert_cn}; returns password_hash and optionally algorithm, salt, is_superuser, groups. The first row is used.',
    ),
  password_hash: z
    .object({
      algorithm: z
        .enum(HASH_ALGORITHMS)
        .default('auto')
        .describe('Hash algorithm when the row has no `algorithm` column.'),
      salt_position: z
        .enum(['prefix', 'suffix'])
        .default('prefix')
        .describe('sha256/sha512: salt before or after the password.'),
      encoding: z.enum(['hex', 'base64']).default('hex').describe('Encoding of bare sha*/pbkdf2 digests.'),
      iterations: z
        .number()
        .int()
        .min(1)
        .max(10_000_000)
        .default(100_000)
        .describe('PBKDF2 iterations when not part of the hash.'),
    })
    .strict()
    .prefault({})
    .describe('How to read stored hashes.'),
  unknown_user: z
    .enum(['ignore', 'deny'])
    .default('ignore')
    .describe('No row: `ignore` asks the next step, `deny` refuses with badUserNameOrPassword.'),
});

export const postgresSettingsSchema = z.object(sqlSettingsShape(5432)).strict();
export const mysqlSettingsSchema = z.object(sqlSettingsShape(3306)).strict();
type SqlSettings = z.output<typeof postgresSettingsSchema>;

function connection(s: SqlSettings, ctx: AuthenticatorContext): SqlConnectionSettings {
  let password = s.password;
  if (s.password_file !== undefined) {
    const file = isAbsolute(s.password_file) ? s.password_file : resolve(ctx.baseDir, s.password_file);
    try {
      password = readFileSync(file, 'utf8').split(/\r?\n/)[0] ?? '';
    } catch (error) {
      throw new BulwarkError(
        'BULWARK_ERR_CONFIG_INVALID',
        `cannot read password_file: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
        {
          file,
          line: 1,
          column: 1,
        },
      );
    }
  }
  return {
    host: s.host,
    port: s.port,
    database: s.database,
    user: s.user,
    password,
    poolSize: s.pool_size,
    connectTimeoutMs: s.connect_timeout_ms,
    queryTimeoutMs: s.query_timeout_ms,
    tls: s.tls
      ? {
          caFile: s.tls.ca_file && (isAbsolute(s.tls.ca_file) ? s.tls.ca_file : resolve(ctx.baseDir, s.tls.ca_file)),
          serverName: s.tls.server_name,
          rejectUnauthorized: s.tls.reject_unauthorized,
        }
      : undefined,
  };
}

function create(type: 'postgres' | 'mysql', s: SqlSettings, id: string, ctx: AuthenticatorContext): SqlAuthenticator {
  const conn = connection(s, ctx);
  const backend: SqlBackend = type === 'postgres' ? new PostgresBackend(conn) : new MysqlBackend(conn);
  return new SqlAuthenticator({
    id,
    type,
    backend,
    backendName: `${type}://${s.user}@${s.host}:${s.port}/${s.database}`,
    query: compileQuery(s.query, type),
    hash: {
      algorithm: s.password_hash.algorithm,
      saltPosition: s.password_hash.salt_position,
      encoding: s.password_hash.encoding,
      iterations: s.password_hash.iterations,
    },
    unknownUser: s.unknown_user,
    lookupDeadlineMs: s.connect_timeout_ms + s.query_timeout_ms,
    verification: ctx.verification,
  });
}

export const postgresType = defineAuthenticatorType({
  type: 'postgres',
  settings: postgresSettingsSchema,
  create: (s, id, ctx) => create('postgres', s, id, ctx),
});

export const mysqlType = defineAuthenticatorType({
  type: 'mysql',
  settings: mysqlSettingsSchema,
  create: (s, id, ctx) => create('mysql', s, id, ctx),
});
