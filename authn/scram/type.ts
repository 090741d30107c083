import { defineAuthenticatorType } from '../registry.js';
import { scramSettingsSchema } from './config.js';
import { createScramAuthenticator } from './create.js';

/**
 * The `scram` authenticator type for the registry (`createBuiltinRegistry([scramType])`). SQL stores run
 * their queries through the broker's circuit breaker for that database, so a dead database fails fast.
 */
export const scramType = defineAuthenticatorType({
  type: 'scram',
  settings: scramSettingsSchema,
  create: (settings, id, context) => {
    const store = settings.store;
    const breaker =
      store.type === 'file'
        ? undefined
        : context.verification.breaker(`${store.type}://${store.user}@${store.host}:${store.port}/${store.database}`);
    return createScramAuthenticator(
      settings,
      id,
      context.baseDir,
      breaker ? <T>(task: () => Promise<T>): Promise<T> => breaker.run(task) : undefined,
      context.dataDir,
    );
  },
});
