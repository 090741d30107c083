import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { defineAuthenticatorType } from '../registry.js';
import { OWASP_ARGON2ID } from '../verify/password-hash.js';
import { PasswordFileAuthenticator } from './authenticator.js';

export const argon2ParamsSchema = z
  .object({
    memory_kib: z
      .number()
      .int()
      .min(8_192)
      .max(4_194_304)
      .default(OWASP_ARGON2ID.memoryCost)
      .describe('argon2id memory cost in KiB (OWASP: 19456).'),
    iterations: z
      .number()
      .int()
      .min(1)
      .max(100)
      .default(OWASP_ARGON2ID.timeCost)
      .describe('argon2id time cost (OWASP: 2).'),
    parallelism: z
      .number()
      .int()
      .min(1)
      .max(16)
      .default(OWASP_ARGON2ID.parallelism)
      .describe('argon2id lanes (OWASP: 1).'),
  })
  .strict()
  .prefault({})
  .describe('Parameters for new hashes (`bulwark passwd`, rehash on login).');

export const passwordFileSettingsSchema = z
  .object({
    file: z.string().min(1).describe('Path of the YAML password file (relative to the configuration file).'),
    unknown_user: z
      .enum(['ignore', 'deny'])
      .default('ignore')
      .describe(
        '`ignore`: a username not in the file is "not mine" and the next step is asked. `deny`: the file is authoritative; unknown users are refused after the same hashing work as known ones (no timing oracle).',
      ),
    rehash: z
      .boolean()
      .default(false)
      .describe(
        'After a successful login with an older hash (bcrypt, mosquitto, weaker argon2), rewrite it as argon2id with `argon2` parameters.',
      ),
    argon2: argon2ParamsSchema,
    watch: z.boolean().default(true).describe('Reload the file when it changes.'),
    reload_debounce_ms: z
      .number()
      .int()
      .min(0)
      .max(60_000)
      .default(100)
      .describe('Changes within this window cause one reload.'),
  })
  .strict();

export const passwordFileType = defineAuthenticatorType({
  type: 'password-file',
  settings: passwordFileSettingsSchema,
  create: (s, id, ctx) =>
    new PasswordFileAuthenticator({
      id,
      file: isAbsolute(s.file) ? s.file : resolve(ctx.baseDir, s.file),
      unknownUser: s.unknown_user,
      rehash: s.rehash,
      argon2: { memoryCost: s.argon2.memory_kib, timeCost: s.argon2.iterations, parallelism: s.argon2.parallelism },
      watch: s.watch,
      reloadDebounceMs: s.reload_debounce_ms,
      verification: ctx.verification,
      onEvent: ctx.onEvent,
    }),
});
