import type { ScramCredential, ScramMechanism } from './mechanism.js';

/**
 * Where SCRAM credentials live. `lookup` is called once per exchange (CONNECT or re-authentication),
 * concurrently for many clients; `undefined` means "no such user or no credential for this mechanism" and the
 * authenticator answers with a fake challenge so the two cases look the same to the client. A throw is a
 * backend failure (the chain turns it into serverUnavailable).
 */
export interface ScramCredentialStore {
  /** `file`, `postgres`, `mysql`; for audit details. */
  readonly kind: string;
  lookup(username: string, mechanism: ScramMechanism, signal: AbortSignal): Promise<ScramCredential | undefined>;
  /**
   * The iteration count most of the stored credentials of `mechanism` use, where the store can tell (a file): what
   * unknown users are told by default, so that the count does not give them away.
   */
  typicalIterations?(mechanism: ScramMechanism): number | undefined;
  /** The salt length (bytes) most of the stored credentials of `mechanism` use, where the store can tell. */
  typicalSaltLength?(mechanism: ScramMechanism): number | undefined;
  start?(): Promise<void>;
  stop?(): Promise<void>;
  /** Reads and checks what `start` would read, keeping nothing and contacting nothing (a file store only). */
  check?(): Promise<void>;
}
