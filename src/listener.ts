import type { Server } from 'node:net';
import type { ConnectAuthenticator } from '../authn/types.js';
import type { ListenerConfig } from './config/schema.js';
import type { HandleServer } from './transport/handle-server.js';

/** A `net` server, or a plain TCP listener on Node's handles (`socket_layer: direct`). */
export type ListeningServer = Server | HandleServer;

/** A listener as the broker runs it: its configuration, its authentication chain and its server. */
export interface ListenerRuntime {
  readonly name: string;
  readonly config: ListenerConfig;
  readonly authenticator: ConnectAuthenticator;
  server: ListeningServer | undefined;
  /** The bound address once listening (port 0 resolves here). */
  address: { host: string; port: number } | undefined;
}

export function listenerName(config: ListenerConfig): string {
  return config.name ?? `${config.transport}:${config.port}`;
}
