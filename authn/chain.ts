import { performance } from 'node:perf_hooks';
import type { ReasonName } from '../src/protocol/reason-codes.js';
import {
  isEnhanced,
  type Authenticator,
  type AuthnOutcome,
  type ChainExchangeState,
  type ClientDetail,
  type ChainResult,
  type ConnectAttempt,
  type ConnectAuthenticator,
  type EnhancedAuthenticator,
  type Identity,
  type StepRecord,
  NO_ATTRIBUTES,
  NO_GROUPS,
} from './types.js';

/** What a step needs to see in the CONNECT before it is consulted; a step whose precondition fails is skipped. */
export type PresenceRequirement = 'certificate' | 'password' | 'jwt' | 'username';

export interface Precondition {
  /** Only for CONNECTs arriving on one of these listeners. */
  listeners?: readonly string[];
  /** Only when the username matches (a username is then required). */
  usernamePattern?: RegExp;
  /** Only when every listed credential is present. `jwt`: the password looks like a compact JWS. */
  requires?: readonly PresenceRequirement[];
}

export interface ChainStep {
  authenticator: Authenticator;
  /** `deny` (default): a throw or timeout denies with serverUnavailable. `next`: it counts as `ignore`. */
  onError: 'deny' | 'next';
  timeoutMs: number;
  when?: Precondition;
}

export interface ChainOptions {
  steps: readonly ChainStep[];
  /** When every step ignores: allow as anonymous (true) or deny notAuthorized (false, the default). */
  anonymous: boolean;
}

const JWS_COMPACT = /^[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*$/;
const MAX_DETAIL = 200;

/** True when a password has the shape of a compact JWS (three base64url segments), without decoding it. */
export function looksLikeJwt(attempt: ConnectAttempt): boolean {
  const pw = attempt.password;
  if (!pw || pw.length < 10 || pw.length > 16_384) return false;
  return JWS_COMPACT.test(pw.revealString());
}

/** Why a step's precondition does not hold, or undefined when it does. Never quotes the credential. */
export function preconditionFailure(when: Precondition | undefined, attempt: ConnectAttempt): string | undefined {
  if (!when) return undefined;
  if (when.listeners && !when.listeners.includes(attempt.listener)) return `listener ${attempt.listener} not in scope`;
  if (when.usernamePattern) {
    if (attempt.username === undefined) return 'no username presented';
    if (!when.usernamePattern.test(attempt.username)) return 'username does not match the step pattern';
  }
  for (const need of when.requires ?? []) {
    if (need === 'certificate' && !attempt.tls?.certificate) return 'no client certificate presented';
    if (need === 'password' && (!attempt.password || attempt.password.isEmpty)) return 'no password presented';
    if (need === 'username' && attempt.username === undefined) return 'no username presented';
    if (need === 'jwt' && !looksLikeJwt(attempt)) return 'password is not a JWT';
  }
  return undefined;
}

type StepRun =
  | { kind: 'outcome'; outcome: AuthnOutcome; durationMs: number }
  | { kind: 'error' | 'timeout'; detail: string; durationMs: number };

class StepTimeoutError extends Error {
  override readonly name = 'StepTimeoutError';
}

/**
 * The ordered authentication chain of one listener, after Mosquitto's plugin chain and EMQX's
 * `do_authenticate`: the first allow or deny ends it, `ignore` asks the next step, every-step-ignored denies
 * unless anonymous is configured, and a crash or timeout is a deny with serverUnavailable (fail closed)
 * unless the operator opted that step into `on_error: next`.
 */
export class AuthenticationChain implements ConnectAuthenticator {
  readonly #steps: readonly ChainStep[];
  readonly #anonymous: boolean;
  readonly usernameIsCredential: boolean;

  constructor(options: ChainOptions) {
    const ids = new Set<string>();
    for (const s of options.steps) {
      if (ids.has(s.authenticator.id)) throw new Error(`duplicate authenticator id "${s.authenticator.id}"`);
      ids.add(s.authenticator.id);
    }
    this.#steps = options.steps;
    this.#anonymous = options.anonymous;
    this.usernameIsCredential = options.steps.some((s) => s.authenticator.usernameIsCredential === true);
  }

  get steps(): readonly ChainStep[] {
    return this.#steps;
  }

  async start(): Promise<void> {
    for (const s of this.#steps) await s.authenticator.start?.();
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.#steps.map((s) => s.authenticator.stop?.()));
  }

  supportsMethod(method: string): boolean {
    return this.#steps.some((s) => isEnhanced(s.authenticator) && s.authenticator.methods.includes(method));
  }

  /**
   * Answers without a promise while the steps do: steps skipped by their preconditions, and steps with a quick
   * answer (a cached verification). From the first step that has to run, the rest of the chain is asynchronous.
   */
  authenticate(attempt: ConnectAttempt): ChainResult | Promise<ChainResult> {
    if (attempt.authMethod !== undefined) return this.#authenticateEnhanced(attempt, attempt.authMethod);
    const records: StepRecord[] = [];
    const steps = this.#steps;
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i]!;
      const skip = preconditionFailure(step.when, attempt);
      if (skip !== undefined) {
        records.push(record(step, 'skipped', 0, skip));
        continue;
      }
      const started = performance.now();
      const outcome = step.authenticator.quickAnswer?.(attempt);
      if (outcome === undefined) return this.#authenticateFrom(i, attempt, records);
      const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
      const decided = this.#decide(step, { kind: 'outcome', outcome, durationMs }, attempt, records, undefined);
      if (decided) return decided;
    }
    return this.#nobodyAnswered(attempt, records);
  }

  /** Runs the chain from step `first`, whose precondition `authenticate` has already found to hold. */
  async #authenticateFrom(first: number, attempt: ConnectAttempt, records: StepRecord[]): Promise<ChainResult> {
    // Indexed: a for-of over an array across an await allocates an iterator result per step, per connect.
    const steps = this.#steps;
    for (let i = first; i < steps.length; i++) {
      const step = steps[i]!;
      const decided = await this.#consult(step, attempt, records, undefined, i === first);
      if (decided) return decided;
    }
    return this.#nobodyAnswered(attempt, records);
  }

  async continueExchange(
    exchange: ChainExchangeState,
    attempt: ConnectAttempt,
    data: Buffer | undefined,
    reauthentication: boolean,
  ): Promise<ChainResult> {
    const records: StepRecord[] = [];
    const step = this.#steps.find((s) => s.authenticator.id === exchange.stepId);
    if (!step || !isEnhanced(step.authenticator) || !step.authenticator.methods.includes(exchange.method)) {
      return deny(
        'badAuthenticationMethod',
        `no step "${exchange.stepId}" for method ${exchange.method}`,
        'chain',
        records,
      );
    }
    const enhanced = step.authenticator;
    const run = await this.#run(step, (signal) =>
      enhanced.step({ attempt, method: exchange.method, data, state: exchange.state, reauthentication }, signal),
    );
    // An exchange in progress cannot move to another step, so `on_error: next` does not apply here.
    if (run.kind !== 'outcome') {
      records.push(record(step, run.kind, run.durationMs, run.detail));
      return deny(
        'serverUnavailable',
        `${step.authenticator.id}: ${run.detail}`,
        step.authenticator.id,
        records,
        exchange.attemptedUsername,
      );
    }
    const result = this.#decide(step, run, attempt, records, exchange.method, exchange.attemptedUsername);
    if (result) return result;
    return deny(
      'notAuthorized',
      `${step.authenticator.id} ignored an exchange it had started`,
      step.authenticator.id,
      records,
      exchange.attemptedUsername,
    );
  }

  async #authenticateEnhanced(attempt: ConnectAttempt, method: string): Promise<ChainResult> {
    const records: StepRecord[] = [];
    const candidates = this.#steps.filter(
      (s): s is ChainStep & { authenticator: EnhancedAuthenticator } =>
        isEnhanced(s.authenticator) && s.authenticator.methods.includes(method),
    );
    // [MQTT-4.12.0-1] an unsupported Authentication Method is refused with 0x8C.
    if (candidates.length === 0) {
      const detail = `authentication method ${sanitize(method)} not supported`;
      // The client's own method name, echoed: it tells a misconfigured client what to fix and nothing more.
      return deny('badAuthenticationMethod', detail, 'chain', records, undefined, detail);
    }
    for (const step of candidates) {
      const decided = await this.#consult(step, attempt, records, method);
      if (decided) return decided;
    }
    // A client that asked for a method must not silently become anonymous.
    return deny('notAuthorized', `no step accepted authentication method ${sanitize(method)}`, 'chain', records);
  }

  /** Asks one step to authenticate; returns the chain's result when the step decided, undefined to go on. */
  async #consult(
    step: ChainStep,
    attempt: ConnectAttempt,
    records: StepRecord[],
    method?: string,
    preconditionHolds = false,
  ): Promise<ChainResult | undefined> {
    const skip = preconditionHolds ? undefined : preconditionFailure(step.when, attempt);
    if (skip !== undefined) {
      records.push(record(step, 'skipped', 0, skip));
      return undefined;
    }
    const run = await this.#run(step, (signal) => step.authenticator.authenticate(attempt, signal));
    if (run.kind !== 'outcome') {
      records.push(record(step, run.kind, run.durationMs, run.detail));
      if (step.onError === 'next') return undefined;
      return deny('serverUnavailable', `${step.authenticator.id}: ${run.detail}`, step.authenticator.id, records);
    }
    return this.#decide(step, run, attempt, records, method);
  }

  #decide(
    step: ChainStep,
    run: Extract<StepRun, { kind: 'outcome' }>,
    attempt: ConnectAttempt,
    records: StepRecord[],
    method: string | undefined,
    /** The name an earlier round of this exchange reported, for a round that does not repeat it. */
    attemptedBefore?: string,
  ): ChainResult | undefined {
    const { outcome, durationMs } = run;
    const id = step.authenticator.id;
    switch (outcome.kind) {
      case 'allow': {
        records.push(record(step, 'allow', durationMs, outcome.detail));
        const identity: Identity = { ...outcome.identity, clientId: attempt.clientId, authenticator: id };
        // SCRAM's server-final message travels to CONNACK (or the AUTH that ends a re-authentication).
        return { kind: 'allow', identity, steps: records, ...(outcome.authData ? { authData: outcome.authData } : {}) };
      }
      case 'deny':
        records.push(record(step, 'deny', durationMs, outcome.detail));
        return deny(
          outcome.reason,
          outcome.detail,
          id,
          records,
          outcome.attemptedUsername ?? attemptedBefore,
          outcome.clientDetail,
        );
      case 'ignore':
        records.push(record(step, 'ignore', durationMs, outcome.detail));
        return undefined;
      case 'continue': {
        if (method === undefined) {
          records.push(record(step, 'error', durationMs, 'continue outside an enhanced exchange'));
          return deny('serverUnavailable', `${id}: continue outside an enhanced exchange`, id, records);
        }
        records.push(record(step, 'continue', durationMs));
        const attemptedUsername = outcome.attemptedUsername ?? attemptedBefore;
        const state: ChainExchangeState = { stepId: id, method, state: outcome.state, attemptedUsername };
        return { kind: 'continue', data: outcome.data, method, state, steps: records, attemptedUsername };
      }
    }
  }

  async #run(step: ChainStep, call: (signal: AbortSignal) => Promise<AuthnOutcome>): Promise<StepRun> {
    const started = performance.now();
    // One controller and one timer, cleared as soon as the step answers. `AbortSignal.timeout` would leave a timer
    // per step pending for the whole timeout: thousands of them in a reconnect storm.
    const controller = new AbortController();
    const signal = controller.signal;
    const elapsed = (): number => Math.round((performance.now() - started) * 1000) / 1000;
    let timer: NodeJS.Timeout | undefined;
    const aborted = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort(new DOMException(`no answer within ${step.timeoutMs} ms`, 'TimeoutError'));
        reject(new StepTimeoutError(`no answer within ${step.timeoutMs} ms`));
      }, step.timeoutMs);
    });
    try {
      const outcome = await Promise.race([call(signal), aborted]);
      return { kind: 'outcome', outcome, durationMs: elapsed() };
    } catch (error) {
      if (error instanceof StepTimeoutError || (signal.aborted && isAbortError(error))) {
        return { kind: 'timeout', detail: `no answer within ${step.timeoutMs} ms`, durationMs: elapsed() };
      }
      return { kind: 'error', detail: describeError(error), durationMs: elapsed() };
    } finally {
      clearTimeout(timer);
      aborted.catch(() => undefined);
    }
  }

  #nobodyAnswered(attempt: ConnectAttempt, records: StepRecord[]): ChainResult {
    if (!this.#anonymous) return deny('notAuthorized', 'no authenticator accepted the client', 'chain', records);
    // The username was not verified by anyone, so it is not handed to policies as an identity.
    const identity: Identity = {
      clientId: attempt.clientId,
      username: undefined,
      groups: NO_GROUPS,
      attributes: NO_ATTRIBUTES,
      superuser: false,
      anonymous: true,
      authenticator: 'anonymous',
    };
    return { kind: 'allow', identity, steps: records };
  }
}

function deny(
  reason: ReasonName,
  detail: string,
  decidedBy: string,
  steps: StepRecord[],
  attemptedUsername?: string,
  clientDetail?: ClientDetail,
): ChainResult {
  const result: ChainResult = { kind: 'deny', reason, detail, decidedBy, steps };
  if (attemptedUsername !== undefined) result.attemptedUsername = attemptedUsername;
  if (clientDetail !== undefined) result.clientDetail = sanitize(clientDetail);
  return result;
}

function record(step: ChainStep, answer: StepRecord['answer'], durationMs: number, detail?: string): StepRecord {
  const r: StepRecord = { id: step.authenticator.id, type: step.authenticator.type, answer, durationMs };
  if (detail !== undefined) r.detail = sanitize(detail);
  return r;
}

function isAbortError(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError');
}

/**
 * Error text from libraries reaches the audit log, so it is cut short and stripped of control characters.
 * Our own authenticators never put credentials in messages; the chain cannot know about third parties, which
 * is why only the class name and message are kept, never `cause` chains or stack traces.
 */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const prefix = typeof code === 'string' ? `${error.name} ${code}` : error.name;
    return sanitize(`${prefix}: ${error.message}`);
  }
  return 'non-error thrown';
}

function sanitize(text: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f]/g, ' ');
  return clean.length > MAX_DETAIL ? `${clean.slice(0, MAX_DETAIL)}…` : clean;
}
