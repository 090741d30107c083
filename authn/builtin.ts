import { jwtType } from './jwt/config.js';
import { passwordFileType } from './password-file/config.js';
import { AuthenticatorRegistry, type AuthenticatorTypeDefinition } from './registry.js';
import { mysqlType, postgresType } from './sql/config.js';

/**
 * A registry with this folder's authenticator types (`password-file`, `jwt`, `postgres`, `mysql`) plus
 * `extra` ones (e.g. `x509Type`, `pskType`, `ldapType`, `scramType` from their folders).
 */
export function createBuiltinRegistry(extra: readonly AuthenticatorTypeDefinition[] = []): AuthenticatorRegistry {
  const registry = new AuthenticatorRegistry()
    .register(passwordFileType)
    .register(jwtType)
    .register(postgresType)
    .register(mysqlType);
  for (const d of extra) registry.register(d);
  return registry;
}
