import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { defineAuthenticatorType } from '../registry.js';
import { PskAuthenticator } from './authenticator.js';
import { PskStore } from './store.js';

/** The `psk` authenticator step. */
export const pskSettingsSchema = z
  .object({
    use_identity_as_username: z
      .boolean()
      .default(true)
      .describe(
        'The TLS-PSK identity becomes the username that policies and the audit log see (Mosquitto: use_identity_as_username). With `false` the identity has no username: the key does not vouch for a username the client merely wrote.',
      ),
    file: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Optional PSK file (same format as the listener `psk_file`, usually the same file). When set, an identity removed from it is denied on its next CONNECT even if its TLS session is still open.',
      ),
    watch: z.boolean().default(true).describe('Reload `file` when it changes.'),
    reload_debounce_ms: z
      .number()
      .int()
      .min(0)
      .max(60_000)
      .default(100)
      .describe('Changes within this window cause one reload.'),
  })
  .strict();

/** The `psk` part of a TLS listener: where the keys come from. The lead merges it into the listener schema. */
export const pskListenerSchema = z
  .object({
    file: z.string().min(1).describe('Mosquitto-format PSK file: one `identity:hexkey` per line, `#` comments.'),
    identity_hint: z.string().max(128).optional().describe('PSK identity hint sent to clients (TLS 1.2 only).'),
    watch: z
      .boolean()
      .default(true)
      .describe('Reload the file when it changes; a broken file keeps the previous keys and is reported.'),
    reload_debounce_ms: z
      .number()
      .int()
      .min(0)
      .max(60_000)
      .default(100)
      .describe('Changes within this window cause one reload.'),
  })
  .strict()
  .describe('TLS-PSK for this listener (TLS 1.2 PSK suites, TLS 1.3 with SHA-256 suites).');

export type PskSettings = z.output<typeof pskSettingsSchema>;
export type PskListenerSettings = z.output<typeof pskListenerSchema>;

export const pskType = defineAuthenticatorType({
  type: 'psk',
  settings: pskSettingsSchema,
  create: (s, id, ctx) => {
    const store =
      s.file === undefined
        ? undefined
        : new PskStore({
            file: isAbsolute(s.file) ? s.file : resolve(ctx.baseDir, s.file),
            watch: s.watch,
            debounceMs: s.reload_debounce_ms,
            onEvent: ctx.onEvent,
          });
    return new PskAuthenticator({
      id,
      useIdentityAsUsername: s.use_identity_as_username,
      store,
      ownsStore: store !== undefined,
    });
  },
});
