import { describe, expect, it } from 'vitest';
import { Secret } from '../../../authn/secret.js';
import { CircuitBreaker, CircuitOpenError } from '../../../authn/verify/breaker.js';
import { VerificationCache } from '../../../authn/verify/cache.js';
import { Coalescer } from '../../../authn/verify/coalesce.js';
import { raceAbort } from '../../../authn/verify/race-abort.js';
import { ConcurrencyPool, PoolSaturatedError } from '../../../authn/verify/pool.js';
import { VerificationServices, DEFAULT_VERIFICATION } from '../../../authn/verify/services.js';
import { verifyPasswordBounded } from '../../../authn/verify/verify-password.js';
import bcrypt from 'bcryptjs';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('bounded concurrency pool', () => {
  it('never runs more tasks at once than its concurrency', async () => {
    const pool = new ConcurrencyPool('t', 2, 10);
    let running = 0;
    let peak = 0;
    const gates = Array.from({ length: 5 }, () => deferred<void>());
    const runs = gates.map((g) =>
      pool.run(async () => {
        running++;
        peak = Math.max(peak, running);
        await g.promise;
        running--;
      }),
    );
    await Promise.resolve();
    expect(pool.active).toBe(2);
    expect(pool.queued).toBe(3);
    for (const g of gates) g.resolve();
    await Promise.all(runs);
    expect(peak).toBe(2);
    expect(pool.active).toBe(0);
  });

  it('refuses at once when the queue is full', async () => {
    const pool = new ConcurrencyPool('t', 1, 1);
    const gate = deferred<void>();
    const first = pool.run(() => gate.promise);
    const second = pool.run(() => Promise.resolve());
    await expect(pool.run(() => Promise.resolve())).rejects.toBeInstanceOf(PoolSaturatedError);
    gate.resolve();
    await Promise.all([first, second]);
  });

  it('a queued task whose signal aborts leaves the queue', async () => {
    const pool = new ConcurrencyPool('t', 1, 5);
    const gate = deferred<void>();
    const first = pool.run(() => gate.promise);
    const ac = new AbortController();
    let ran = false;
    const queued = pool.run(async () => {
      ran = true;
    }, ac.signal);
    ac.abort(new Error('gave up'));
    await expect(queued).rejects.toThrow('gave up');
    expect(pool.queued).toBe(0);
    gate.resolve();
    await first;
    expect(ran).toBe(false);
  });
});

describe('coalescing of identical in-flight lookups', () => {
  it('runs one task for concurrent callers with the same key', async () => {
    const c = new Coalescer<number>();
    let calls = 0;
    const gate = deferred<number>();
    const task = () => {
      calls++;
      return gate.promise;
    };
    const all = [c.run('k', task), c.run('k', task), c.run('k', task)];
    gate.resolve(7);
    expect(await Promise.all(all)).toEqual([7, 7, 7]);
    expect(calls).toBe(1);
    expect(c.size).toBe(0);
  });

  it('different keys are not coalesced', async () => {
    const c = new Coalescer<string>();
    let calls = 0;
    await Promise.all([c.run('a', async () => `${++calls}`), c.run('b', async () => `${++calls}`)]);
    expect(calls).toBe(2);
  });

  it('one caller aborting does not cancel the shared work for the others', async () => {
    const c = new Coalescer<string>();
    const gate = deferred<string>();
    const ac = new AbortController();
    const impatient = c.run('k', () => gate.promise, ac.signal);
    const patient = c.run('k', () => gate.promise);
    ac.abort(new Error('timeout'));
    gate.resolve('done');
    await expect(impatient).rejects.toThrow('timeout');
    await expect(patient).resolves.toBe('done');
  });

  it('a caller whose signal is already aborted gives up at once, and the work failing later is not left unhandled', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const c = new Coalescer<string>();
      const gate = deferred<string>();
      const ac = new AbortController();
      ac.abort(new Error('step timed out'));
      let started = 0;
      const late = c.run(
        'k',
        () => {
          started++;
          return gate.promise;
        },
        ac.signal,
      );
      await expect(late).rejects.toThrow('step timed out');
      gate.reject(new Error('backend down'));
      // Node reports an unhandled rejection after the microtasks of the turn that rejected it.
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      expect(started).toBe(1);
      expect(c.size).toBe(0);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('racing a promise against an abort signal', () => {
  it('settles with the promise when it answers first, and with the abort reason when the signal fires first', async () => {
    const first = new AbortController();
    await expect(raceAbort(Promise.resolve('answer'), first.signal)).resolves.toBe('answer');
    const second = new AbortController();
    const slow = deferred<string>();
    const raced = raceAbort(slow.promise, second.signal);
    second.abort(new Error('gave up'));
    await expect(raced).rejects.toThrow('gave up');
    slow.resolve('too late');
    await expect(slow.promise).resolves.toBe('too late');
  });

  it('an abort without an Error reason still rejects with an Error', async () => {
    const ac = new AbortController();
    ac.abort('plain string');
    await expect(raceAbort(new Promise<never>(() => undefined), ac.signal)).rejects.toThrow('aborted');
  });
});

describe('verification cache', () => {
  const parts = (password: string, credentialVersion = 'h1') => ({
    authenticator: 'pw',
    username: 'alice',
    secret: new Secret(password),
    credentialVersion,
  });

  it('a changed password never hits the entry made for the old one', () => {
    const cache = new VerificationCache<true>({ maxEntries: 10, ttlMs: 60_000 });
    cache.set(cache.key(parts('old-password')), true);
    expect(cache.get(cache.key(parts('old-password')))).toBe(true);
    expect(cache.get(cache.key(parts('new-password')))).toBeUndefined();
  });

  it('a changed stored credential never hits the entry made for the old one', () => {
    const cache = new VerificationCache<true>({ maxEntries: 10, ttlMs: 60_000 });
    cache.set(cache.key(parts('pw', 'hash-before')), true);
    expect(cache.get(cache.key(parts('pw', 'hash-after')))).toBeUndefined();
  });

  it('keys contain no plaintext and differ between processes (random HMAC key)', () => {
    const a = new VerificationCache<true>({ maxEntries: 10, ttlMs: 60_000 });
    const b = new VerificationCache<true>({ maxEntries: 10, ttlMs: 60_000 });
    const ka = a.key(parts('hunter2-plaintext'));
    expect(ka).not.toContain('hunter2');
    expect(ka).not.toBe(b.key(parts('hunter2-plaintext')));
  });

  it('field boundaries cannot be shifted to forge a key', () => {
    const cache = new VerificationCache<true>({ maxEntries: 10, ttlMs: 60_000 });
    const k1 = cache.key({ authenticator: 'a', username: 'bc', secret: new Secret('x'), credentialVersion: 'v' });
    const k2 = cache.key({ authenticator: 'ab', username: 'c', secret: new Secret('x'), credentialVersion: 'v' });
    expect(k1).not.toBe(k2);
  });

  it('is bounded: the least recently used entry is evicted', () => {
    const cache = new VerificationCache<true>({ maxEntries: 2, ttlMs: 60_000 });
    const keys = ['a', 'b', 'c'].map((p) => cache.key(parts(p)));
    for (const k of keys) cache.set(k, true);
    expect(cache.size).toBe(2);
    expect(cache.get(keys[0] ?? '')).toBeUndefined();
  });

  it('a zero-sized cache is disabled', () => {
    const cache = new VerificationCache<true>({ maxEntries: 0, ttlMs: 60_000 });
    const k = cache.key(parts('x'));
    cache.set(k, true);
    expect(cache.get(k)).toBeUndefined();
  });
});

describe('bounded password verification', () => {
  it('caches a success, refuses a changed password, and skips hashing for a cached success', async () => {
    const services = new VerificationServices({ ...DEFAULT_VERIFICATION });
    const hash = await bcrypt.hash('first-secret', 4);
    const v = (pw: string, h = hash) =>
      verifyPasswordBounded(services, {
        authenticator: 'pw',
        username: 'alice',
        password: new Secret(pw),
        credential: { hash: h, algorithm: 'auto' },
        signal: new AbortController().signal,
      });
    expect(await v('first-secret')).toEqual({ kind: 'match', cached: false });
    expect(await v('first-secret')).toEqual({ kind: 'match', cached: true });
    expect((await v('wrong')).kind).toBe('mismatch');
    const changed = await bcrypt.hash('second-secret', 4);
    expect((await v('first-secret', changed)).kind).toBe('mismatch');
    expect(await v('second-secret', changed)).toEqual({ kind: 'match', cached: false });
  });

  it('a refusal is never cached', async () => {
    const services = new VerificationServices({ ...DEFAULT_VERIFICATION });
    const hash = await bcrypt.hash('right', 4);
    await verifyPasswordBounded(services, {
      authenticator: 'pw',
      username: 'u',
      password: new Secret('wrong'),
      credential: { hash, algorithm: 'auto' },
      signal: new AbortController().signal,
    });
    expect(services.cache.size).toBe(0);
  });
});

describe('circuit breaker', () => {
  it('opens after the threshold, fails fast, then lets one probe through and closes on success', async () => {
    let now = 0;
    const states: string[] = [];
    const b = new CircuitBreaker('db', {
      failureThreshold: 2,
      resetTimeoutMs: 1_000,
      now: () => now,
      onStateChange: (s) => states.push(s),
    });
    const fail = () => Promise.reject(new Error('down'));
    await expect(b.run(fail)).rejects.toThrow('down');
    expect(b.state).toBe('closed');
    await expect(b.run(fail)).rejects.toThrow('down');
    expect(b.state).toBe('open');
    let called = false;
    await expect(
      b.run(async () => {
        called = true;
      }),
    ).rejects.toBeInstanceOf(CircuitOpenError);
    expect(called).toBe(false);
    now = 1_000;
    expect(b.state).toBe('half-open');
    await expect(b.run(async () => 'up')).resolves.toBe('up');
    expect(b.state).toBe('closed');
    expect(states).toEqual(['open', 'closed']);
  });

  it('a failed probe opens the breaker again for another reset period', async () => {
    let now = 0;
    const b = new CircuitBreaker('db', { failureThreshold: 1, resetTimeoutMs: 100, now: () => now });
    await expect(b.run(() => Promise.reject(new Error('down')))).rejects.toThrow();
    now = 100;
    await expect(b.run(() => Promise.reject(new Error('still down')))).rejects.toThrow('still down');
    now = 150;
    await expect(b.run(async () => 1)).rejects.toBeInstanceOf(CircuitOpenError);
  });

  it('reports transitions only: late failures and failed probes neither report the opening again nor extend it', async () => {
    let now = 0;
    const states: string[] = [];
    const b = new CircuitBreaker('db', {
      failureThreshold: 2,
      resetTimeoutMs: 1_000,
      now: () => now,
      onStateChange: (s) => states.push(s),
    });
    // Five calls in flight when the backend goes down; they fail one after another over 900 ms.
    const stragglers = Array.from({ length: 5 }, () => deferred<never>());
    const running = stragglers.map((d) => b.run(() => d.promise).catch(() => undefined));
    for (const d of stragglers) {
      d.reject(new Error('down'));
      await Promise.resolve();
      await Promise.resolve();
      now += 225;
    }
    await Promise.all(running);
    expect(states).toEqual(['open']);
    // Opened by the second failure (at 225 ms): the late ones did not restart the period.
    now = 225 + 1_000;
    expect(b.state).toBe('half-open');
    await expect(b.run(() => Promise.reject(new Error('still down')))).rejects.toThrow('still down');
    expect(b.state).toBe('open');
    expect(states).toEqual(['open']);
    now += 1_000;
    await expect(b.run(async () => 'up')).resolves.toBe('up');
    expect(states).toEqual(['open', 'closed']);
  });

  it('only one probe runs while half-open', async () => {
    let now = 0;
    const b = new CircuitBreaker('db', { failureThreshold: 1, resetTimeoutMs: 10, now: () => now });
    await expect(b.run(() => Promise.reject(new Error('down')))).rejects.toThrow();
    now = 10;
    const gate = deferred<string>();
    const probe = b.run(() => gate.promise);
    await expect(b.run(async () => 'second')).rejects.toBeInstanceOf(CircuitOpenError);
    gate.resolve('ok');
    await expect(probe).resolves.toBe('ok');
  });
});
