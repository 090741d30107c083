import type { ScramCredentialStore } from '../../../../authn/scram/credential-store.js';
import type { ScramCredential, ScramMechanism } from '../../../../authn/scram/mechanism.js';
import type { ConnectAttempt } from '../../../../authn/types.js';

/** An in-memory store implementing the real interface. */
export class MemoryStore implements ScramCredentialStore {
  readonly kind = 'memory';
  readonly entries = new Map<string, ScramCredential>();
  lookups = 0;

  put(username: string, credential: ScramCredential): this {
    this.entries.set(`${credential.mechanism}\n${username}`, credential);
    return this;
  }

  async lookup(username: string, mechanism: ScramMechanism): Promise<ScramCredential | undefined> {
    this.lookups++;
    return this.entries.get(`${mechanism}\n${username}`);
  }
}

export function attempt(method: string, data: Buffer | undefined, extra: Partial<ConnectAttempt> = {}): ConnectAttempt {
  return {
    listener: 'test',
    clientId: 'client-1',
    username: undefined,
    password: undefined,
    protocolVersion: 5,
    peer: { address: '127.0.0.1', port: 50000 },
    tls: undefined,
    authMethod: method,
    authData: data,
    ...extra,
  };
}

export const signal = (): AbortSignal => new AbortController().signal;
