import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChainAuthorizer } from '../../../authz/authorizer.js';
import { PolicyManager, policyEventToAudit, type PolicyEvent } from '../../../authz/policy-manager.js';
import { PolicyFileSource } from '../../../authz/sources/file.js';
import type { AuthzDecision } from '../../../authz/types.js';
import { request } from './helpers.js';

const grant = (topic: string, extraCases = ''): string => `version: 1
rules:
  - name: grant
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['${topic}']
cases:
  - name: the grant works
    publish: ${topic.replace('/#', '/x')}
    expect: allow
${extraCases}`;

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'bulwark-authz-'));
  file = join(dir, 'site.policy.yaml');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function manager(events: PolicyEvent[], debounceMs = 0): PolicyManager {
  return new PolicyManager({ files: [file], onEvent: (e) => events.push(e), debounceMs });
}

function sync(d: AuthzDecision | Promise<AuthzDecision>): AuthzDecision {
  if (d instanceof Promise) throw new Error('expected a synchronous decision');
  return d;
}

describe('policy manager', () => {
  it('denies everything before the first successful load', () => {
    const m = manager([]);
    expect(m.current.decide(request('publish', 'a/x'))).toBeUndefined();
  });

  it('loads, swaps, notifies listeners and records old and new hashes', async () => {
    writeFileSync(file, grant('a/#'));
    const events: PolicyEvent[] = [];
    const m = manager(events);
    let swaps = 0;
    m.onChange(() => swaps++);
    const first = await m.load();
    expect(first).toMatchObject({ ok: true, changed: true });
    expect(m.current.decide(request('publish', 'a/x'))?.allowed).toBe(true);
    writeFileSync(file, grant('b/#'));
    const second = await m.reload('sighup');
    expect(second.ok && second.changed).toBe(true);
    expect(m.current.decide(request('publish', 'a/x'))).toBeUndefined();
    expect(m.current.decide(request('publish', 'b/x'))?.allowed).toBe(true);
    expect(m.explain(request('publish', 'b/x')).considered[0]).toMatchObject({
      matched: true,
      rule: { name: 'grant' },
    });
    expect(swaps).toBe(2);
    expect(events.map((e) => e.action)).toEqual(['policy.reloaded', 'policy.reloaded']);
    expect(events[1]).toMatchObject({ trigger: 'sighup', oldHash: events[0]?.newHash });
    expect(events[1]?.newHash).not.toBe(events[0]?.newHash);
  });

  it('a reload with a syntax error keeps the running policy and reports file:line:column', async () => {
    writeFileSync(file, grant('a/#'));
    const events: PolicyEvent[] = [];
    const m = manager(events);
    await m.load();
    const running = m.current;
    writeFileSync(file, "rules:\n  - name: broken\n    allow: publish\n    subjects: all\n    topics: ['a/#/b']\n");
    const result = await m.reload('cli');
    expect(result.ok).toBe(false);
    expect(m.current).toBe(running);
    expect(m.current.decide(request('publish', 'a/x'))?.allowed).toBe(true);
    const failed = events[1];
    expect(failed?.action).toBe('policy.reload_failed');
    if (failed?.action !== 'policy.reload_failed') throw new Error('unreachable');
    expect(failed.error).toBe(
      `${file}:5:14: error: rule "broken": '#' must be the last level in "a/#/b" ([MQTT-4.7.1-2])`,
    );
    expect(failed.oldHash).toBe(running.hash);
  });

  it('a reload whose own cases fail keeps the running policy', async () => {
    writeFileSync(file, grant('a/#'));
    const events: PolicyEvent[] = [];
    const m = manager(events);
    await m.load();
    const running = m.current;
    const failingCase = '  - name: b is open too\n    publish: b/x\n    expect: allow\n';
    writeFileSync(file, grant('c/#', failingCase));
    const result = await m.reload();
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.message).toMatch(/case "b is open too" failed: expected allow, got deny by default deny/);
    expect(result.message).toContain(`${file}:11:5`);
    expect(m.current).toBe(running);
  });

  it('a deleted policy file keeps the running policy', async () => {
    writeFileSync(file, grant('a/#'));
    const m = manager([]);
    await m.load();
    rmSync(file);
    const result = await m.reload();
    expect(result.ok).toBe(false);
    expect(m.current.decide(request('publish', 'a/x'))?.allowed).toBe(true);
  });

  it('a reload of unchanged content swaps nothing and records nothing', async () => {
    writeFileSync(file, grant('a/#'));
    const events: PolicyEvent[] = [];
    const m = manager(events);
    await m.load();
    const running = m.current;
    expect(await m.reload()).toMatchObject({ ok: true, changed: false });
    expect(m.current).toBe(running);
    expect(events).toHaveLength(1);
  });

  it('a sibling cases file takes part in validation and in the hash', async () => {
    writeFileSync(file, grant('a/#'));
    const casesFile = join(dir, 'site.cases.yaml');
    writeFileSync(casesFile, 'cases:\n  - name: b is closed\n    publish: b/x\n    expect: deny\n');
    const m = manager([]);
    expect((await m.load()).ok).toBe(true);
    writeFileSync(casesFile, 'cases:\n  - name: b is open\n    publish: b/x\n    expect: allow\n');
    const result = await m.reload();
    expect(result.ok).toBe(false);
  });

  it('reloads on its own when the file changes, after the debounce', async () => {
    writeFileSync(file, grant('a/#'));
    const events: PolicyEvent[] = [];
    let resolveNext: (e: PolicyEvent) => void = () => undefined;
    const m = new PolicyManager({
      files: [file],
      debounceMs: 20,
      onEvent: (e) => {
        events.push(e);
        resolveNext(e);
      },
    });
    await m.load();
    m.watch();
    try {
      const next = new Promise<PolicyEvent>((res) => (resolveNext = res));
      writeFileSync(file, grant('b/#'));
      const event = await next;
      expect(event).toMatchObject({ action: 'policy.reloaded', trigger: 'watch' });
      expect(m.current.decide(request('publish', 'b/x'))?.allowed).toBe(true);
    } finally {
      m.close();
    }
  });

  it('a swap takes effect in the authorizer immediately, cached decisions included', async () => {
    writeFileSync(file, grant('a/#'));
    const m = manager([]);
    await m.load();
    const chain = new ChainAuthorizer([
      { source: new PolicyFileSource(m), onError: 'deny', timeoutMs: 100, cacheable: true },
    ]);
    let changes = 0;
    chain.onChange(() => changes++);
    const req = request('subscribe', 'a/#');
    expect(sync(chain.check(req)).allowed).toBe(true);
    writeFileSync(file, grant('b/#'));
    await m.reload();
    expect(changes).toBe(1);
    expect(sync(chain.check(req)).allowed).toBe(false);
  });

  it('turns events into audit records', () => {
    const audit = policyEventToAudit({
      action: 'policy.reload_failed',
      trigger: 'watch',
      files: ['p.yaml'],
      oldHash: 'old',
      newHash: 'new',
      error: 'p.yaml:1:1: error: x',
      errors: ['p.yaml:1:1: error: x'],
    });
    expect(audit).toMatchObject({
      event: { action: 'policy.reload_failed', outcome: 'failure', reason: 'p.yaml:1:1: error: x' },
      policy: { file: 'p.yaml', old_hash: 'old', new_hash: 'new', error: 'p.yaml:1:1: error: x' },
    });
  });
});
