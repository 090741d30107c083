import { defineAuthenticatorType } from '../registry.js';
import { ldapSettingsSchema } from './config.js';
import { createLdapAuthenticator } from './create.js';

/**
 * The `ldap` authenticator type for the registry (`createBuiltinRegistry([ldapType])`). Directory work runs
 * through the broker's circuit breaker for the URL: after repeated failures CONNECTs fail fast with
 * serverUnavailable, and a half-open probe brings the step back when the directory answers again.
 */
export const ldapType = defineAuthenticatorType({
  type: 'ldap',
  settings: ldapSettingsSchema,
  create: (settings, id, context) =>
    createLdapAuthenticator(settings, id, context.baseDir, { breaker: context.verification.breaker(settings.url) }),
});
