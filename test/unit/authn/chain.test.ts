import { describe, expect, it } from 'vitest';
import { AuthenticationChain, type ChainStep } from '../../../authn/chain.js';
import { Secret } from '../../../authn/secret.js';
import type {
  AuthnOutcome,
  ChainResult,
  ConnectAttempt,
  EnhancedAuthenticator,
  StepRecord,
} from '../../../authn/types.js';
import { attempt, FakeAuthenticator, FakeEnhanced, type Script } from './fakes.js';

function chainOf(scripts: Script[], opts: { anonymous?: boolean; onError?: ('deny' | 'next')[] } = {}) {
  const fakes = scripts.map((s, i) => new FakeAuthenticator(`step-${i}`, s));
  const steps: ChainStep[] = fakes.map((a, i) => ({
    authenticator: a,
    onError: opts.onError?.[i] ?? 'deny',
    timeoutMs: 30,
  }));
  return { chain: new AuthenticationChain({ steps, anonymous: opts.anonymous ?? false }), fakes };
}

const answers = (r: ChainResult): StepRecord['answer'][] => r.steps.map((s) => s.answer);

describe('authentication chain algebra', () => {
  const cases: {
    name: string;
    scripts: Script[];
    anonymous?: boolean;
    onError?: ('deny' | 'next')[];
    kind: 'allow' | 'deny';
    reason?: string;
    decidedBy: string;
    consulted: StepRecord['answer'][];
  }[] = [
    {
      name: 'first allow ends the chain',
      scripts: ['allow', 'deny'],
      kind: 'allow',
      decidedBy: 'step-0',
      consulted: ['allow'],
    },
    {
      name: 'first deny ends the chain',
      scripts: ['deny', 'allow'],
      kind: 'deny',
      reason: 'badUserNameOrPassword',
      decidedBy: 'step-0',
      consulted: ['deny'],
    },
    {
      name: 'ignore asks the next step',
      scripts: ['ignore', 'allow'],
      kind: 'allow',
      decidedBy: 'step-1',
      consulted: ['ignore', 'allow'],
    },
    {
      name: 'every step ignoring denies notAuthorized',
      scripts: ['ignore', 'ignore'],
      kind: 'deny',
      reason: 'notAuthorized',
      decidedBy: 'chain',
      consulted: ['ignore', 'ignore'],
    },
    {
      name: 'an empty chain denies notAuthorized',
      scripts: [],
      kind: 'deny',
      reason: 'notAuthorized',
      decidedBy: 'chain',
      consulted: [],
    },
    {
      name: 'every step ignoring allows anonymous when configured',
      scripts: ['ignore'],
      anonymous: true,
      kind: 'allow',
      decidedBy: 'anonymous',
      consulted: ['ignore'],
    },
    {
      name: 'anonymous does not override an explicit deny',
      scripts: ['deny'],
      anonymous: true,
      kind: 'deny',
      reason: 'badUserNameOrPassword',
      decidedBy: 'step-0',
      consulted: ['deny'],
    },
    {
      name: 'a throwing step denies serverUnavailable and stops the chain',
      scripts: ['throw', 'allow'],
      kind: 'deny',
      reason: 'serverUnavailable',
      decidedBy: 'step-0',
      consulted: ['error'],
    },
    {
      name: 'a hanging step times out into serverUnavailable',
      scripts: ['hang', 'allow'],
      kind: 'deny',
      reason: 'serverUnavailable',
      decidedBy: 'step-0',
      consulted: ['timeout'],
    },
    {
      name: 'on_error next turns a throw into asking the next step',
      scripts: ['throw', 'allow'],
      onError: ['next', 'deny'],
      kind: 'allow',
      decidedBy: 'step-1',
      consulted: ['error', 'allow'],
    },
    {
      name: 'on_error next turns a timeout into asking the next step',
      scripts: ['hang', 'allow'],
      onError: ['next', 'deny'],
      kind: 'allow',
      decidedBy: 'step-1',
      consulted: ['timeout', 'allow'],
    },
    {
      name: 'on_error next on the last step still ends in the nobody-answered deny',
      scripts: ['throw'],
      onError: ['next'],
      kind: 'deny',
      reason: 'notAuthorized',
      decidedBy: 'chain',
      consulted: ['error'],
    },
    {
      name: 'a continue outside an enhanced exchange is a step failure',
      scripts: ['continue'],
      kind: 'deny',
      reason: 'serverUnavailable',
      decidedBy: 'step-0',
      consulted: ['error'],
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const { chain, fakes } = chainOf(c.scripts, {
        ...(c.anonymous ? { anonymous: true } : {}),
        ...(c.onError ? { onError: c.onError } : {}),
      });
      const r = await chain.authenticate(attempt());
      expect(r.kind).toBe(c.kind);
      expect(answers(r)).toEqual(c.consulted);
      if (r.kind === 'deny') {
        expect(r.reason).toBe(c.reason);
        expect(r.decidedBy).toBe(c.decidedBy);
      }
      if (r.kind === 'allow') expect(r.identity.authenticator).toBe(c.decidedBy);
      // Steps after the deciding one are never called.
      expect(fakes.map((f) => f.calls)).toEqual(fakes.map((_, i) => (i < c.consulted.length ? 1 : 0)));
    });
  }

  it('anonymous identity carries no unverified username, groups or privileges', async () => {
    const { chain } = chainOf(['ignore'], { anonymous: true });
    const r = await chain.authenticate(attempt({ username: 'root' }));
    expect(r.kind === 'allow' && r.identity).toMatchObject({
      anonymous: true,
      username: undefined,
      groups: [],
      superuser: false,
      clientId: 'client-1',
    });
  });

  it('records a duration and the step detail for every step consulted', async () => {
    const { chain } = chainOf(['ignore', 'deny']);
    const r = await chain.authenticate(attempt());
    expect(r.steps).toHaveLength(2);
    expect(r.steps[0]).toMatchObject({ id: 'step-0', type: 'fake', answer: 'ignore', detail: 'step-0 not mine' });
    for (const s of r.steps) expect(s.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('an error detail names the failure and is cut short', async () => {
    const { chain } = chainOf(['throw']);
    const r = await chain.authenticate(attempt());
    expect(r.kind === 'deny' && r.detail).toContain('step-0 backend exploded');
  });

  it('duplicate step ids are refused when the chain is built', () => {
    const a = new FakeAuthenticator('same', 'allow');
    expect(
      () =>
        new AuthenticationChain({
          steps: [a, a].map((x) => ({ authenticator: x, onError: 'deny', timeoutMs: 10 })),
          anonymous: false,
        }),
    ).toThrow(/duplicate/);
  });
});

describe('quick answers', () => {
  /** A step that knows some answers without waiting, as the password file does for a cached verification. */
  class QuickFake extends FakeAuthenticator {
    quickCalls = 0;
    constructor(
      id: string,
      script: 'allow' | 'deny' | 'ignore',
      private readonly quick: 'allow' | 'ignore' | undefined,
    ) {
      super(id, script);
    }
    quickAnswer(a: ReturnType<typeof attempt>): AuthnOutcome | undefined {
      this.quickCalls++;
      if (this.quick === 'ignore') return { kind: 'ignore', detail: 'not mine' };
      if (this.quick === 'allow')
        return {
          kind: 'allow',
          identity: {
            clientId: a.clientId,
            username: a.username,
            groups: [],
            attributes: {},
            superuser: false,
            anonymous: false,
            authenticator: 'x',
          },
        };
      return undefined;
    }
  }
  const chainOfQuick = (...fakes: FakeAuthenticator[]) =>
    new AuthenticationChain({
      steps: fakes.map((authenticator) => ({ authenticator, onError: 'deny' as const, timeoutMs: 30 })),
      anonymous: false,
    });

  it('a quick answer decides without a promise and without running the step', () => {
    const quick = new QuickFake('cached', 'deny', 'allow');
    const result = chainOfQuick(quick).authenticate(attempt({ username: 'u' }));
    expect(result).not.toBeInstanceOf(Promise);
    const r = result as ChainResult;
    expect(r.kind).toBe('allow');
    expect(r.kind === 'allow' && r.identity.authenticator).toBe('cached');
    expect(r.steps.map((s) => [s.id, s.answer])).toEqual([['cached', 'allow']]);
    expect(r.steps[0]!.durationMs).toBeGreaterThanOrEqual(0);
    expect(quick.calls).toBe(0);
  });

  it('a quick ignore goes on to the next step synchronously; a step without a quick answer runs in full', async () => {
    const first = new QuickFake('first', 'ignore', 'ignore');
    const second = new QuickFake('second', 'allow', undefined);
    const result = chainOfQuick(first, second).authenticate(attempt({ username: 'u' }));
    expect(result).toBeInstanceOf(Promise);
    const r = await result;
    expect(answers(r)).toEqual(['ignore', 'allow']);
    expect([first.calls, second.quickCalls, second.calls]).toEqual([0, 1, 1]);
  });

  it('a step skipped by its preconditions is not asked for a quick answer', () => {
    const guarded = new QuickFake('guarded', 'allow', 'allow');
    const chain = new AuthenticationChain({
      steps: [{ authenticator: guarded, onError: 'deny', timeoutMs: 30, when: { requires: ['certificate'] } }],
      anonymous: true,
    });
    const r = chain.authenticate(attempt({ username: 'u' })) as ChainResult;
    expect(answers(r)).toEqual(['skipped']);
    expect(r.kind === 'allow' && r.identity.anonymous).toBe(true);
    expect(guarded.quickCalls).toBe(0);
  });
});

describe('step preconditions', () => {
  const run = async (when: ChainStep['when'], overrides: Parameters<typeof attempt>[0] = {}) => {
    const a = new FakeAuthenticator('guarded', 'allow');
    const chain = new AuthenticationChain({
      steps: [{ authenticator: a, onError: 'deny', timeoutMs: 50, ...(when ? { when } : {}) }],
      anonymous: false,
    });
    return chain.authenticate(attempt(overrides));
  };
  const jwtish = new Secret('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl');

  const cases: {
    name: string;
    when: ChainStep['when'];
    overrides?: Parameters<typeof attempt>[0];
    consulted: boolean;
  }[] = [
    { name: 'a listener in scope runs the step', when: { listeners: ['tcp'] }, consulted: true },
    { name: 'a listener out of scope skips the step', when: { listeners: ['tls'] }, consulted: false },
    { name: 'a matching username pattern runs the step', when: { usernamePattern: /^al/ }, consulted: true },
    { name: 'a non-matching username pattern skips the step', when: { usernamePattern: /^dev-/ }, consulted: false },
    {
      name: 'a username pattern skips clients without a username',
      when: { usernamePattern: /.*/ },
      overrides: { username: undefined },
      consulted: false,
    },
    { name: 'requiring a certificate skips plain clients', when: { requires: ['certificate'] }, consulted: false },
    {
      name: 'requiring a password skips clients without one',
      when: { requires: ['password'] },
      overrides: { password: undefined },
      consulted: false,
    },
    { name: 'requiring a JWT skips ordinary passwords', when: { requires: ['jwt'] }, consulted: false },
    {
      name: 'requiring a JWT runs the step for a JWT-shaped password',
      when: { requires: ['jwt'] },
      overrides: { password: jwtish },
      consulted: true,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const r = await run(c.when, c.overrides);
      expect(r.steps[0]?.answer).toBe(c.consulted ? 'allow' : 'skipped');
      expect(r.kind).toBe(c.consulted ? 'allow' : 'deny');
    });
  }

  it('checks a step precondition once, also for a step that has to wait', async () => {
    let tests = 0;
    const pattern = /^al/;
    const counted = Object.assign(pattern, {
      test(text: string): boolean {
        tests++;
        return RegExp.prototype.test.call(pattern, text);
      },
    });
    const r = await run({ usernamePattern: counted });
    expect(r.kind).toBe('allow');
    expect(tests).toBe(1);
  });
});

describe('enhanced authentication routing', () => {
  const build = (steps: ChainStep['authenticator'][]) =>
    new AuthenticationChain({
      steps: steps.map((a) => ({ authenticator: a, onError: 'deny', timeoutMs: 50 })),
      anonymous: true,
    });

  it('routes a CONNECT with an authentication method to the first step listing it', async () => {
    const plain = new FakeAuthenticator('plain', 'allow');
    const other = new FakeEnhanced('other', 'allow', ['OTHER']);
    const scram = new FakeEnhanced('scram', 'continue', ['SCRAM-SHA-256']);
    const chain = build([plain, other, scram]);
    const r = await chain.authenticate(attempt({ authMethod: 'SCRAM-SHA-256', authData: Buffer.from('client-first') }));
    expect(r.kind).toBe('continue');
    expect(plain.calls + other.calls).toBe(0);
    expect(r.kind === 'continue' && r.state).toEqual({ stepId: 'scram', method: 'SCRAM-SHA-256', state: { round: 1 } });
    expect(chain.supportsMethod('SCRAM-SHA-256')).toBe(true);
    expect(chain.supportsMethod('KERBEROS')).toBe(false);
  });

  it('an unknown authentication method is denied badAuthenticationMethod even with anonymous on', async () => {
    const r = await build([new FakeAuthenticator('plain', 'allow')]).authenticate(attempt({ authMethod: 'KERBEROS' }));
    expect(r.kind === 'deny' && r.reason).toBe('badAuthenticationMethod');
  });

  it('continueExchange goes to the step named in the state with its state and the client data', async () => {
    const scram = new FakeEnhanced('scram', 'continue', ['SCRAM-SHA-256'], 'allow');
    const chain = build([new FakeAuthenticator('plain', 'deny'), scram]);
    const r = await chain.continueExchange(
      { stepId: 'scram', method: 'SCRAM-SHA-256', state: { round: 1 } },
      attempt(),
      Buffer.from('client-final'),
      false,
    );
    expect(r.kind === 'allow' && r.identity.authenticator).toBe('scram');
    expect(scram.exchanges[0]).toMatchObject({ method: 'SCRAM-SHA-256', state: { round: 1 }, reauthentication: false });
    expect(scram.exchanges[0]?.data?.toString()).toBe('client-final');
  });

  it('continueExchange to a step that does not exist is denied badAuthenticationMethod', async () => {
    const r = await build([new FakeAuthenticator('plain', 'allow')]).continueExchange(
      { stepId: 'ghost', method: 'X', state: null },
      attempt(),
      undefined,
      true,
    );
    expect(r.kind === 'deny' && r.reason).toBe('badAuthenticationMethod');
  });

  it('carries the name a step reported at continue into a later deny that does not repeat it', async () => {
    const named: EnhancedAuthenticator = {
      id: 'scram',
      type: 'fake',
      methods: ['SCRAM-SHA-256'],
      authenticate: () =>
        Promise.resolve({ kind: 'continue', data: Buffer.from('server-first'), state: {}, attemptedUsername: 'bob' }),
      step: () => Promise.resolve({ kind: 'deny', reason: 'notAuthorized', detail: 'proof did not verify' }),
    };
    const chain = build([named]);
    const first = await chain.authenticate(attempt({ username: undefined, authMethod: 'SCRAM-SHA-256' }));
    expect(first).toMatchObject({ kind: 'continue', attemptedUsername: 'bob', state: { attemptedUsername: 'bob' } });
    if (first.kind !== 'continue') return;
    const last = await chain.continueExchange(first.state, attempt({ username: undefined }), undefined, false);
    expect(last).toMatchObject({ kind: 'deny', reason: 'notAuthorized', attemptedUsername: 'bob' });
  });

  it('a step that throws mid-exchange denies serverUnavailable', async () => {
    const scram = new FakeEnhanced('scram', 'continue', ['SCRAM-SHA-256'], 'throw');
    const r = await build([scram]).continueExchange(
      { stepId: 'scram', method: 'SCRAM-SHA-256', state: {} },
      attempt(),
      undefined,
      false,
    );
    expect(r.kind === 'deny' && r.reason).toBe('serverUnavailable');
    expect(r.steps.map((s) => s.answer)).toEqual(['error']);
  });
});

describe('authentication decision event', () => {
  it('names listener, client, user, peer, every step with answer and duration, and the outcome', async () => {
    const { authnDecisionEvent } = await import('../../../authn/decision-event.js');
    const { chain } = chainOf(['ignore', 'deny']);
    const a = attempt({ listener: 'tls', clientId: 'c-9', username: 'bob', peer: { address: '10.0.0.9', port: 4242 } });
    const r = await chain.authenticate(a);
    if (r.kind === 'continue') throw new Error('unexpected');
    const e = authnDecisionEvent(a, r);
    expect(e).toMatchObject({
      event: { action: 'authn.denied', outcome: 'failure', code: 'badUserNameOrPassword' },
      client: { ip: '10.0.0.9', port: 4242 },
      // Refused: bob is what the client claimed, not an identity.
      mqtt: { client_id: 'c-9', listener: 'tls', reason_code: 0x86, username: 'bob' },
      authn: {
        by: 'step-1',
        steps: [
          { id: 'step-0', answer: 'ignore' },
          { id: 'step-1', answer: 'deny' },
        ],
      },
    });
    expect(e.user).toBeUndefined();
    expect(JSON.stringify(e)).not.toContain('correct horse');
  });

  it('builds every member in canonical order, so the audit writer serialises each with one JSON.stringify', async () => {
    const { authnDecisionEvent } = await import('../../../authn/decision-event.js');
    const { canonicalJson } = await import('../../../audit/canonical.js');
    const cases: [Script[], Partial<ConnectAttempt>][] = [
      [['ignore', 'allow'], {}],
      [['ignore', 'deny'], { authMethod: 'SCRAM-SHA-256' }],
    ];
    for (const [scripts, extra] of cases) {
      const a = attempt({ username: 'bob', ...extra });
      const r = await chainOf(scripts).chain.authenticate(a);
      if (r.kind === 'continue') throw new Error('unexpected');
      const e = authnDecisionEvent(a, r);
      expect(Object.keys(e.authn ?? {}).length).toBeGreaterThan(extra.authMethod ? 2 : 1);
      for (const member of Object.values(e)) expect(JSON.stringify(member)).toBe(canonicalJson(member));
    }
  });
});
