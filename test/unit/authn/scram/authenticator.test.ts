import { pbkdf2Sync, createHmac, createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ScramAuthenticator } from '../../../../authn/scram/authenticator.js';
import { deriveScramCredential, type ScramCredential, type ScramMechanism } from '../../../../authn/scram/mechanism.js';
import type { AuthnOutcome, ConnectAttempt } from '../../../../authn/types.js';
import { ScramClient, type ScramClientOptions } from '../../../helpers/scram-client.js';
import { attempt, MemoryStore, signal } from './fixtures.js';

const MECHS: Array<{ mechanism: ScramMechanism; hash: 'SHA-256' | 'SHA-512' }> = [
  { mechanism: 'SCRAM-SHA-256', hash: 'SHA-256' },
  { mechanism: 'SCRAM-SHA-512', hash: 'SHA-512' },
];

async function storeWith(users: Record<string, string>): Promise<MemoryStore> {
  const store = new MemoryStore();
  for (const [name, password] of Object.entries(users)) {
    for (const { mechanism } of MECHS) store.put(name, await deriveScramCredential(password, mechanism, 4096));
  }
  return store;
}

interface Run {
  first: AuthnOutcome;
  final?: AuthnOutcome;
  client: ScramClient;
}

/** One CONNECT → AUTH → CONNACK exchange as the chain would drive it. */
async function exchange(
  auth: ScramAuthenticator,
  mechanism: ScramMechanism,
  clientOpts: Omit<ScramClientOptions, 'hash'>,
  options: {
    attemptExtra?: Partial<ConnectAttempt>;
    tamper?: (finalMessage: Buffer) => Buffer;
    finalOverrides?: { nonce?: string; channelBinding?: string };
  } = {},
): Promise<Run> {
  const hash = mechanism === 'SCRAM-SHA-256' ? 'SHA-256' : 'SHA-512';
  const client = new ScramClient({ hash, ...clientOpts });
  const connect = attempt(mechanism, client.clientFirst(), options.attemptExtra);
  const first = await auth.authenticate(connect, signal());
  if (first.kind !== 'continue') return { first, client };
  let finalMessage = client.clientFinal(first.data, options.finalOverrides);
  if (options.tamper) finalMessage = options.tamper(finalMessage);
  const final = await auth.step(
    { attempt: connect, method: mechanism, data: finalMessage, state: first.state, reauthentication: false },
    signal(),
  );
  return { first, final, client };
}

describe('SCRAM authenticator', () => {
  for (const { mechanism } of MECHS) {
    it(`allows a ${mechanism} exchange with the right password and proves itself to the client`, async () => {
      const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'correct horse' }) });
      const run = await exchange(auth, mechanism, { username: 'alice', password: 'correct horse' });
      expect(run.first.kind).toBe('continue');
      expect(run.final?.kind).toBe('allow');
      if (run.final?.kind !== 'allow') return;
      expect(run.final.identity).toMatchObject({
        username: 'alice',
        clientId: 'client-1',
        authenticator: 'scram',
        anonymous: false,
        attributes: { 'scram.mechanism': mechanism },
      });
      expect(run.client.verifyServerFinal(run.final.authData)).toBe(true);
    });

    it(`denies a ${mechanism} exchange with a wrong password as notAuthorized`, async () => {
      const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'correct horse' }) });
      const run = await exchange(auth, mechanism, { username: 'alice', password: 'wrong horse' });
      expect(run.final).toMatchObject({ kind: 'deny', reason: 'notAuthorized' });
    });
  }

  it('verifies the RFC 7677 client-final and answers the RFC server-final', async () => {
    const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
    const store = new MemoryStore().put('user', await deriveScramCredential('pencil', 'SCRAM-SHA-256', 4096, salt));
    const auth = new ScramAuthenticator({ store, serverNonce: () => '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0' });
    const connect = attempt('SCRAM-SHA-256', Buffer.from('n,,n=user,r=rOprNGfwEbeRWgbNEkqO'));
    const first = await auth.authenticate(connect, signal());
    expect(first.kind === 'continue' && first.data.toString()).toBe(
      'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
    );
    const state = first.kind === 'continue' ? first.state : undefined;
    const data = Buffer.from(
      'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
    );
    const final = await auth.step(
      { attempt: connect, method: 'SCRAM-SHA-256', data, state, reauthentication: false },
      signal(),
    );
    expect(final.kind === 'allow' && final.authData?.toString()).toBe('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
  });

  it('answers an unknown user with a stable, plausible challenge and the same refusal as a wrong password', async () => {
    const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'pw-alice' }) });
    const ghost1 = await exchange(auth, 'SCRAM-SHA-256', { username: 'ghost', password: 'x' });
    const ghost2 = await exchange(auth, 'SCRAM-SHA-256', { username: 'ghost', password: 'y' });
    const wrong = await exchange(auth, 'SCRAM-SHA-256', { username: 'alice', password: 'nope' });
    const fields = (o: AuthnOutcome): Map<string, string> =>
      new Map(
        (o.kind === 'continue' ? o.data.toString() : '').split(',').map((kv) => [kv.slice(0, 1), kv.slice(2)] as const),
      );
    const [g1, g2, w] = [fields(ghost1.first), fields(ghost2.first), fields(wrong.first)];
    expect(g1.get('s')).toBe(g2.get('s'));
    expect(Buffer.from(g1.get('s') ?? '', 'base64').length).toBe(Buffer.from(w.get('s') ?? '', 'base64').length);
    expect(g1.get('i')).toBe(w.get('i'));
    // The refusal the client could see is the same; only the name tried, which abuse protection counts, differs.
    expect({ ...ghost1.final, attemptedUsername: 'alice' }).toEqual(wrong.final);
    expect(ghost1.final).toMatchObject({ kind: 'deny', attemptedUsername: 'ghost' });
  });

  it('reports the SCRAM user name as the name tried, from the server-first message on, without a CONNECT User Name', async () => {
    const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'pw-alice' }) });
    const wrong = await exchange(auth, 'SCRAM-SHA-256', { username: 'alice', password: 'nope' });
    expect(wrong.first).toMatchObject({ kind: 'continue', attemptedUsername: 'alice' });
    expect(wrong.final).toMatchObject({ kind: 'deny', attemptedUsername: 'alice' });
  });

  it('refuses a client-final whose nonce differs from the combined nonce', async () => {
    const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'pw' }) });
    const run = await exchange(
      auth,
      'SCRAM-SHA-256',
      { username: 'alice', password: 'pw' },
      {
        finalOverrides: { nonce: 'someone-elses-nonce' },
      },
    );
    expect(run.final).toMatchObject({ kind: 'deny', reason: 'notAuthorized', detail: expect.stringMatching(/nonce/) });
  });

  it('refuses a client-final whose channel binding does not echo the gs2-header', async () => {
    const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'pw' }) });
    const run = await exchange(
      auth,
      'SCRAM-SHA-256',
      { username: 'alice', password: 'pw' },
      {
        finalOverrides: { channelBinding: Buffer.from('y,,').toString('base64') },
      },
    );
    expect(run.final).toMatchObject({ kind: 'deny', detail: expect.stringMatching(/channel binding/) });
  });

  it('refuses a proof with one flipped bit', async () => {
    const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'pw' }) });
    const run = await exchange(
      auth,
      'SCRAM-SHA-512',
      { username: 'alice', password: 'pw' },
      {
        tamper: (m) => {
          const text = m.toString();
          const at = text.lastIndexOf('p=') + 2;
          const proof = Buffer.from(text.slice(at), 'base64');
          proof[5] = (proof[5] ?? 0) ^ 0x10;
          return Buffer.from(text.slice(0, at) + proof.toString('base64'));
        },
      },
    );
    expect(run.final).toMatchObject({ kind: 'deny', reason: 'notAuthorized' });
  });

  it('decodes =2C and =3D in user names', async () => {
    const auth = new ScramAuthenticator({ store: await storeWith({ 'ops,team=blue': 'pw' }) });
    const run = await exchange(auth, 'SCRAM-SHA-256', { username: 'ops,team=blue', password: 'pw' });
    expect(run.first.kind === 'continue' && run.first.data.length).toBeGreaterThan(0);
    expect(run.final?.kind === 'allow' && run.final.identity.username).toBe('ops,team=blue');
  });

  it('refuses a stored credential below the minimum iteration count even with the right password', async () => {
    const salt = Buffer.from('0123456789abcdef');
    const salted = pbkdf2Sync('pw', salt, 1000, 32, 'sha256');
    const weak: ScramCredential = {
      mechanism: 'SCRAM-SHA-256',
      salt,
      iterations: 1000,
      storedKey: createHash('sha256').update(createHmac('sha256', salted).update('Client Key').digest()).digest(),
      serverKey: createHmac('sha256', salted).update('Server Key').digest(),
    };
    const auth = new ScramAuthenticator({ store: new MemoryStore().put('old', weak) });
    const run = await exchange(auth, 'SCRAM-SHA-256', { username: 'old', password: 'pw' });
    expect(run.first.kind === 'continue' && run.first.data.toString()).toMatch(/,i=4096$/);
    expect(run.final).toMatchObject({ kind: 'deny', reason: 'notAuthorized' });
  });

  it('refuses a CONNECT whose user name differs from the SCRAM user name', async () => {
    const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'pw' }) });
    const run = await exchange(
      auth,
      'SCRAM-SHA-256',
      { username: 'alice', password: 'pw' },
      {
        attemptExtra: { username: 'mallory' },
      },
    );
    expect(run.first).toMatchObject({ kind: 'deny', reason: 'notAuthorized' });
  });

  it('refuses an authorization identity other than the user', async () => {
    const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'pw', root: 'x' }) });
    const run = await exchange(auth, 'SCRAM-SHA-256', { username: 'alice', password: 'pw', authzid: 'root' });
    expect(run.first).toMatchObject({ kind: 'deny', detail: expect.stringMatching(/authorization identity/) });
    const same = await exchange(auth, 'SCRAM-SHA-256', { username: 'alice', password: 'pw', authzid: 'alice' });
    expect(same.final?.kind).toBe('allow');
  });

  it('ignores authentication methods it does not implement', async () => {
    const auth = new ScramAuthenticator({ store: new MemoryStore(), mechanisms: ['SCRAM-SHA-512'] });
    expect((await auth.authenticate(attempt('SCRAM-SHA-256', Buffer.from('n,,n=a,r=b')), signal())).kind).toBe(
      'ignore',
    );
    expect((await auth.authenticate(attempt('KERBEROS', Buffer.from('x')), signal())).kind).toBe('ignore');
  });

  it('runs a re-authentication that starts with step() and no pending state', async () => {
    const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'pw' }) });
    const client = new ScramClient({ hash: 'SHA-256', username: 'alice', password: 'pw' });
    const connected = attempt('SCRAM-SHA-256', undefined, { username: 'alice' });
    const first = await auth.step(
      {
        attempt: connected,
        method: 'SCRAM-SHA-256',
        data: client.clientFirst(),
        state: undefined,
        reauthentication: true,
      },
      signal(),
    );
    expect(first.kind).toBe('continue');
    if (first.kind !== 'continue') return;
    const final = await auth.step(
      {
        attempt: connected,
        method: 'SCRAM-SHA-256',
        data: client.clientFinal(first.data),
        state: first.state,
        reauthentication: true,
      },
      signal(),
    );
    expect(final.kind === 'allow' && client.verifyServerFinal(final.authData)).toBe(true);
  });

  it('starts a fresh exchange when re-authentication arrives with the state of the finished one', async () => {
    const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'pw' }) });
    const first = await exchange(auth, 'SCRAM-SHA-256', { username: 'alice', password: 'pw' });
    if (first.first.kind !== 'continue') throw new Error('expected continue');
    const staleState = first.first.state;
    const client = new ScramClient({ hash: 'SHA-256', username: 'alice', password: 'pw' });
    const connected = attempt('SCRAM-SHA-256', undefined, { username: 'alice' });
    const again = await auth.step(
      {
        attempt: connected,
        method: 'SCRAM-SHA-256',
        data: client.clientFirst(),
        state: staleState,
        reauthentication: true,
      },
      signal(),
    );
    if (again.kind !== 'continue') throw new Error('expected continue');
    expect(again.data.toString()).toMatch(/^r=.*,s=.*,i=4096$/);
    const final = await auth.step(
      {
        attempt: connected,
        method: 'SCRAM-SHA-256',
        data: client.clientFinal(again.data),
        state: again.state,
        reauthentication: true,
      },
      signal(),
    );
    expect(final.kind === 'allow' && client.verifyServerFinal(final.authData)).toBe(true);
  });

  it('refuses a pending exchange continued under a different method', async () => {
    const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'pw' }) });
    const client = new ScramClient({ hash: 'SHA-256', username: 'alice', password: 'pw' });
    const connect = attempt('SCRAM-SHA-256', client.clientFirst());
    const first = await auth.authenticate(connect, signal());
    if (first.kind !== 'continue') throw new Error('expected continue');
    const final = await auth.step(
      {
        attempt: connect,
        method: 'SCRAM-SHA-512',
        data: client.clientFinal(first.data),
        state: first.state,
        reauthentication: false,
      },
      signal(),
    );
    expect(final.kind).toBe('deny');
  });
});

describe('SCRAM malformed messages', () => {
  const firsts: Array<[string, Buffer | undefined, RegExp]> = [
    ['no data', undefined, /missing/],
    ['empty data', Buffer.alloc(0), /empty/],
    ['channel binding requested (p=)', Buffer.from('p=tls-unique,,n=alice,r=abc'), /channel binding/],
    ['channel binding flag y', Buffer.from('y,,n=alice,r=abc'), /channel binding/],
    ['a mandatory extension', Buffer.from('n,,m=ext,n=alice,r=abc'), /mandatory extension/],
    ['a bad =XX escape in the user name', Buffer.from('n,,n=al=2Xice,r=abc'), /username/],
    ['a raw = in the user name', Buffer.from('n,,n=al=ice,r=abc'), /username/],
    ['no nonce', Buffer.from('n,,n=alice'), /nonce/],
    ['a nonce with a control character', Buffer.from('n,,n=alice,r=ab\x01c'), /nonce/],
    ['invalid UTF-8', Buffer.from([0x6e, 0x2c, 0x2c, 0x6e, 0x3d, 0xff, 0x2c, 0x72, 0x3d, 0x61]), /UTF-8/],
    ['a NUL', Buffer.from('n,,n=al\0ice,r=abc'), /NUL/],
    ['an oversized message', Buffer.from(`n,,n=alice,r=${'a'.repeat(5000)}`), /too long/],
    ['a malformed authzid', Buffer.from('n,x=alice,n=alice,r=abc'), /authzid/],
  ];
  for (const [name, data, detail] of firsts) {
    it(`refuses a client-first-message with ${name}`, async () => {
      const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'pw' }) });
      const outcome = await auth.authenticate(attempt('SCRAM-SHA-256', data), signal());
      expect(outcome).toMatchObject({ kind: 'deny', reason: 'notAuthorized', detail: expect.stringMatching(detail) });
    });
  }

  const finals: Array<[string, (good: string) => string, RegExp]> = [
    ['no proof', (g) => g.slice(0, g.lastIndexOf(',p=')), /proof|malformed/],
    ['a proof that is not base64', (g) => g.slice(0, g.lastIndexOf('p=') + 2) + '!!!', /proof/],
    ['a truncated proof', (g) => g.slice(0, g.lastIndexOf('p=') + 2) + 'AAAA', /did not verify/],
    ['fields out of order', (g) => g.split(',').reverse().join(','), /malformed/],
    ['an empty message', () => '', /empty/],
  ];
  for (const [name, mutate, detail] of finals) {
    it(`refuses a client-final-message with ${name}`, async () => {
      const auth = new ScramAuthenticator({ store: await storeWith({ alice: 'pw' }) });
      const run = await exchange(
        auth,
        'SCRAM-SHA-256',
        { username: 'alice', password: 'pw' },
        {
          tamper: (m) => Buffer.from(mutate(m.toString())),
        },
      );
      expect(run.final).toMatchObject({ kind: 'deny', reason: 'notAuthorized', detail: expect.stringMatching(detail) });
    });
  }
});
