import { Secret } from '../../../authn/secret.js';
import type {
  AuthExchange,
  Authenticator,
  AuthnOutcome,
  ConnectAttempt,
  EnhancedAuthenticator,
} from '../../../authn/types.js';

/** A scripted authenticator implementing the real interface (EMQX's fake_provider). */
export type Script = 'allow' | 'deny' | 'ignore' | 'throw' | 'hang' | 'continue';

export class FakeAuthenticator implements Authenticator {
  readonly type = 'fake';
  calls = 0;
  constructor(
    readonly id: string,
    private readonly script: Script,
  ) {}

  authenticate(attempt: ConnectAttempt, signal: AbortSignal): Promise<AuthnOutcome> {
    this.calls++;
    return play(this.id, this.script, attempt, signal);
  }
}

export class FakeEnhanced extends FakeAuthenticator implements EnhancedAuthenticator {
  readonly exchanges: AuthExchange[] = [];
  constructor(
    id: string,
    script: Script,
    readonly methods: readonly string[],
    private readonly stepScript: Script = 'allow',
  ) {
    super(id, script);
  }

  step(exchange: AuthExchange, signal: AbortSignal): Promise<AuthnOutcome> {
    this.exchanges.push(exchange);
    return play(this.id, this.stepScript, exchange.attempt, signal);
  }
}

function play(id: string, script: Script, attempt: ConnectAttempt, signal: AbortSignal): Promise<AuthnOutcome> {
  switch (script) {
    case 'allow':
      return Promise.resolve({
        kind: 'allow',
        identity: {
          clientId: attempt.clientId,
          username: attempt.username,
          groups: ['g'],
          attributes: {},
          superuser: false,
          anonymous: false,
          authenticator: 'whatever-the-step-claims',
        },
      });
    case 'deny':
      return Promise.resolve({ kind: 'deny', reason: 'badUserNameOrPassword', detail: `${id} said no` });
    case 'ignore':
      return Promise.resolve({ kind: 'ignore', detail: `${id} not mine` });
    case 'continue':
      return Promise.resolve({ kind: 'continue', data: Buffer.from('server-first'), state: { round: 1 } });
    case 'throw':
      return Promise.reject(new Error(`${id} backend exploded`));
    case 'hang':
      // Never settles, and ignores the signal on purpose: the chain must not rely on cooperation.
      void signal;
      return new Promise<AuthnOutcome>(() => undefined);
  }
}

export function attempt(overrides: Partial<ConnectAttempt> = {}): ConnectAttempt {
  return {
    listener: 'tcp',
    clientId: 'client-1',
    username: 'alice',
    password: new Secret('correct horse'),
    protocolVersion: 5,
    peer: { address: '127.0.0.1', port: 50000 },
    tls: undefined,
    authMethod: undefined,
    authData: undefined,
    ...overrides,
  };
}
