import type { Server } from 'node:net';
import type { ConnectAuthenticator } from '../authn/types.js';
import type { ListenerConfig } from './config/schema.js';

/** A listener as the broker runs it: its configuration, its authentication chain and its server. */
export interface ListenerRuntime {
  readonly name: string;
  readonly config: ListenerConfig;
  readonly authenticator: ConnectAuthenticator;
  server: Server | undefined;
  /** The bound address once listening (port 0 resolves here). */
  address: { host: string; port: number } | undefined;
}

export function listenerName(config: ListenerConfig): string {
  return config.name ?? `${config.transport}:${config.port}`;
}
