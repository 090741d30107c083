import { z } from 'zod';
import { defineAuthenticatorType } from '../registry.js';
import { X509Authenticator } from './authenticator.js';

export const x509SettingsSchema = z
  .object({
    identity_source: z
      .enum(['cn', 'dn', 'san_dns', 'san_uri', 'san_email', 'fingerprint'])
      .default('cn')
      .describe(
        'Which part of the client certificate names the client: `cn` (subject common name), `dn` (full subject, RFC 4514, e.g. `CN=dev1,OU=sensors,O=Acme`), `san_dns`, `san_uri` (e.g. a SPIFFE id), `san_email` (first matching SAN entry), or `fingerprint` (SHA-256, colon-separated upper-case hex).',
      ),
    san_prefix: z
      .string()
      .min(1)
      .optional()
      .describe(
        'For `san_*` sources: use the first SAN entry starting with this prefix (e.g. `spiffe://example.org/`); a certificate without one is denied.',
      ),
    use_as_username: z
      .boolean()
      .default(true)
      .describe(
        'The mapped identity becomes the username that policies and the audit log see. With `false` the identity has no username unless `require_username_match` proved the CONNECT username equal to it: a certificate does not vouch for a username the client merely wrote.',
      ),
    require_client_id_match: z
      .boolean()
      .default(false)
      .describe('Deny unless the MQTT client id equals the mapped identity.'),
    require_username_match: z
      .boolean()
      .default(false)
      .describe('Deny unless the MQTT username the client sent equals the mapped identity.'),
    groups_from_ou: z
      .boolean()
      .default(false)
      .describe('Each organizational unit (OU) of the subject becomes a group of the identity.'),
  })
  .strict();

export type X509Settings = z.output<typeof x509SettingsSchema>;

export const x509Type = defineAuthenticatorType({
  type: 'x509',
  settings: x509SettingsSchema,
  create: (s, id) =>
    new X509Authenticator({
      id,
      identitySource: s.identity_source,
      sanPrefix: s.san_prefix,
      useAsUsername: s.use_as_username,
      requireClientIdMatch: s.require_client_id_match,
      requireUsernameMatch: s.require_username_match,
      groupsFromOu: s.groups_from_ou,
    }),
});
