import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSlapd } from '../../../helpers/services/slapd.js';
import type { LdapServiceInfo } from '../../../helpers/services/types.js';
import { asRoot, deadline, login, made, make, searchLookup, service, slapd, SLAPD_SEED } from './fixtures.js';

const { alice, bob, carol } = SLAPD_SEED.users;

// SIGSTOP tests use a private slapd, so freezing it cannot disturb test files running in parallel.
let own: LdapServiceInfo | undefined;
let stopOwn: (() => Promise<void>) | undefined;
const ownDir = mkdtempSync(join(tmpdir(), 'bulwark-slapd-stop-'));

beforeAll(async () => {
  if (!slapd) return;
  const started = await startSlapd(ownDir);
  if ('missing' in started) throw new Error(started.missing);
  own = started.info;
  stopOwn = started.stop;
});

afterAll(async () => {
  await Promise.all(made.map((a) => a.stop()));
  await stopOwn?.();
  rmSync(ownDir, { recursive: true, force: true });
});

/** SIGSTOP, then wait until the kernel reports the process stopped, so no request is answered after this returns. */
async function stopProcess(pid: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  for (let i = 0; i < 200; i++) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (/^\d+ \(.*\) T /.test(stat)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`process ${pid} did not stop`);
}

describe.skipIf(!slapd)('ldap authenticator when the directory misbehaves', () => {
  it('throws while the directory is stopped and recovers after it resumes, without a restart', async () => {
    const pid = own?.pid ?? 0;
    const a = make({
      lookup: searchLookup,
      service,
      connection: { url: own?.url ?? '', startTls: false, tls: {}, connectTimeoutMs: 600, operationTimeoutMs: 600 },
    });
    // Warm the pools so the stall hits established connections as well as new ones.
    expect((await a.authenticate(login('alice', alice.password), deadline())).kind).toBe('allow');
    await stopProcess(pid);
    try {
      await expect(a.authenticate(login('bob', bob.password), deadline(3000))).rejects.toThrow();
      await expect(a.authenticate(login('carol', carol.password), deadline(3000))).rejects.toThrow();
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    expect((await a.authenticate(login('bob', bob.password), deadline())).kind).toBe('allow');
  });

  it('gives up when the chain deadline fires before the directory answers', async () => {
    const pid = own?.pid ?? 0;
    const a = make({
      connection: {
        url: own?.url ?? '',
        startTls: false,
        tls: {},
        connectTimeoutMs: 10_000,
        operationTimeoutMs: 10_000,
      },
    });
    await stopProcess(pid);
    try {
      await expect(a.authenticate(login('alice', alice.password), deadline(200))).rejects.toThrow();
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    expect((await a.authenticate(login('alice', alice.password), deadline())).kind).toBe('allow');
  });

  it('throws when nothing listens at the directory address', async () => {
    const a = make({
      connection: {
        url: 'ldap://127.0.0.1:1',
        startTls: false,
        tls: {},
        connectTimeoutMs: 500,
        operationTimeoutMs: 500,
      },
    });
    await expect(a.authenticate(login('alice', alice.password), deadline())).rejects.toThrow();
  });

  it('keeps answering a removed user from cache until the TTL passes, then refuses them', async () => {
    let now = 1_000_000;
    const uid = `temp-${process.pid}-${Date.now()}`;
    const dn = `uid=${uid},${SLAPD_SEED.peopleDn}`;
    await asRoot((c) => c.add(dn, { objectClass: 'inetOrgPerson', uid, cn: uid, sn: uid, userPassword: 'temp-pass' }));
    const a = make({ cache: { maxEntries: 10, bindTtlMs: 60_000, groupTtlMs: 60_000 }, now: () => now });
    // Nothing cached yet: only the directory can answer.
    expect(a.quickAnswer(login(uid, 'temp-pass'))).toBeUndefined();
    const first = await a.authenticate(login(uid, 'temp-pass'), deadline());
    expect(first.kind === 'allow' && first.identity.attributes['ldap.source']).toBe('directory');
    await asRoot((c) => c.del(dn));
    now += 59_000;
    const cached = await a.authenticate(login(uid, 'temp-pass'), deadline());
    expect(cached.kind === 'allow' && cached.identity.attributes['ldap.source']).toBe('cached');
    // The chain gets the same answer without a promise (`quickAnswer`), with the user gone from the directory.
    const quick = a.quickAnswer(login(uid, 'temp-pass'));
    expect(quick?.kind === 'allow' && quick.identity.attributes['ldap.source']).toBe('cached');
    // A different password never hits the cached entry.
    expect(a.quickAnswer(login(uid, 'other-pass'))).toBeUndefined();
    expect((await a.authenticate(login(uid, 'other-pass'), deadline())).kind).toBe('deny');
    now += 2_000;
    expect(a.quickAnswer(login(uid, 'temp-pass'))).toBeUndefined();
    expect(await a.authenticate(login(uid, 'temp-pass'), deadline())).toMatchObject({
      kind: 'deny',
      reason: 'badUserNameOrPassword',
    });
  });

  it('refuses an empty password and a padded user name without waiting, as authenticate does', async () => {
    const a = make();
    for (const attempt of [login('alice', ''), login(' alice', alice.password)]) {
      const quick = a.quickAnswer(attempt);
      expect(quick).toMatchObject({ kind: 'deny', reason: 'badUserNameOrPassword' });
      expect(await a.authenticate(attempt, deadline())).toEqual(quick);
    }
    expect(a.quickAnswer(login(undefined, undefined))).toEqual({ kind: 'ignore', detail: 'no username presented' });
  });

  it('picks up a group change once the group cache expires', async () => {
    let now = 5_000_000;
    const group = `cn=temp-group-${process.pid},${SLAPD_SEED.groupsDn}`;
    await asRoot((c) =>
      c.add(group, {
        objectClass: 'groupOfNames',
        cn: `temp-group-${process.pid}`,
        member: `uid=carol,${SLAPD_SEED.peopleDn}`,
      }),
    );
    try {
      const a = make({
        lookup: searchLookup,
        service,
        groups: {
          baseDn: SLAPD_SEED.groupsDn,
          schemas: ['groupOfNames'],
          nameAttribute: 'cn',
          filter: undefined,
          maxGroups: 50,
        },
        cache: { maxEntries: 10, bindTtlMs: 30_000, groupTtlMs: 30_000 },
        now: () => now,
      });
      const before = await a.authenticate(login('carol', carol.password), deadline());
      expect(before.kind === 'allow' && before.identity.groups).toEqual([`temp-group-${process.pid}`]);
      await asRoot((c) => c.del(group));
      now += 31_000;
      const after = await a.authenticate(login('carol', carol.password), deadline());
      expect(after.kind === 'allow' && after.identity.groups).toEqual([]);
    } finally {
      await asRoot((c) => c.del(group)).catch(() => undefined);
    }
  });

  it('serves a reconnect storm of one user with one directory round trip', async () => {
    // One connection and no waiting room: without coalescing, all but one attempt would fail at once.
    const a = make({ pool: { maxConnections: 1, maxWaiters: 0 } });
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, (_, i) => a.authenticate(login('alice', alice.password, `device-${i}`), deadline())),
    );
    expect(outcomes.map((o) => o.kind)).toEqual(Array(50).fill('allow'));
    expect(new Set(outcomes.map((o) => (o.kind === 'allow' ? o.identity.clientId : '')))).toHaveProperty('size', 50);
  });

  it('bounds the connection pool and fails fast beyond the waiting room', async () => {
    const a = make({ pool: { maxConnections: 1, maxWaiters: 0 } });
    const results = await Promise.allSettled([
      a.authenticate(login('alice', alice.password), deadline()),
      a.authenticate(login('bob', bob.password), deadline()),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const rejected = results.find((r) => r.status === 'rejected');
    expect(rejected?.status === 'rejected' && String(rejected.reason)).toMatch(/pool exhausted/);
  });
});
