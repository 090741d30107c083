import type { AuditSink } from '../audit/events.js';
import { createBuiltinRegistry } from '../authn/builtin.js';
import type { AuthenticationChain } from '../authn/chain.js';
import { createVerificationServices, type VerificationConfig } from '../authn/config.js';
import { ldapType } from '../authn/ldap/type.js';
import { pskType } from '../authn/psk/index.js';
import type { AuthenticatorContext, ChainConfig } from '../authn/registry.js';
import type { VerificationServices } from '../authn/verify/services.js';
import { scramType } from '../authn/scram/type.js';
import { x509Type } from '../authn/x509/index.js';
import type { BrokerConfig, ListenerConfig } from './config/schema.js';
import type { Logger } from './log.js';

/** Every authenticator type the broker knows; the configuration schema is generated from it. */
export const authenticatorRegistry = createBuiltinRegistry([x509Type, pskType, ldapType, scramType]);

/**
 * The chains of one broker: the global chain, built once and shared by every listener without its own, and one
 * per listener that has an `authentication` section. They share one set of verification pools, cache and breakers.
 */
export class AuthenticationChains {
  private readonly global: AuthenticationChain;
  private readonly perListener = new Map<ListenerConfig, AuthenticationChain>();
  /** Shared by every chain: its breakers say which backends are failing fast (metrics). */
  readonly verification: VerificationServices;

  constructor(config: BrokerConfig, audit: AuditSink, log: Logger, baseDir: string) {
    // The section's schema is generated from the registry, so its static type is loose; it was validated already.
    const { verification, ...globalChain } = config.authentication as unknown as ChainConfig & {
      verification: VerificationConfig;
    };
    this.verification = createVerificationServices(verification, (e) => audit.record(e));
    const context: AuthenticatorContext = {
      verification: this.verification,
      onEvent: (e) => audit.record(e),
      logger: log,
      baseDir,
      dataDir: config.data_dir,
    };
    this.global = authenticatorRegistry.buildChain(globalChain, context);
    for (const listener of config.listeners) {
      if (listener.authentication) {
        this.perListener.set(
          listener,
          authenticatorRegistry.buildChain(listener.authentication as unknown as ChainConfig, context),
        );
      }
    }
  }

  chainFor(listener: ListenerConfig): AuthenticationChain {
    return this.perListener.get(listener) ?? this.global;
  }

  /** Loads password files and opens pools; a missing or broken file stops start-up with its position. */
  async start(): Promise<void> {
    await this.global.start();
    for (const chain of this.perListener.values()) await chain.start();
  }

  async stop(): Promise<void> {
    await this.global.stop();
    for (const chain of this.perListener.values()) await chain.stop();
  }
}

/** Whether a listener's chain admits anonymous clients, for the start-up line. */
export function allowsAnonymous(config: BrokerConfig, listener: ListenerConfig): boolean {
  const chain = (listener.authentication ?? config.authentication) as unknown as ChainConfig;
  return chain.anonymous;
}
