import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthzDecision, Authorizer } from '../../../authz/types.js';
import { configSchema } from '../../../src/config/schema.js';
import { connectInRounds } from '../../../src/warmup/loopback-clients.js';
import { keptConnectShapes, warmUpConnectPath } from '../../../src/warmup/warmup.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { until } from '../../helpers/until.js';

const root = mkdtempSync(join(tmpdir(), 'bulwark-warmup-test-'));

describe('start-up warm-up', () => {
  const previousTmp = process.env.TMPDIR;
  const privateTmp = mkdtempSync(join(root, 'tmp-'));
  // os.tmpdir() follows TMPDIR: the warm-up's own directory lands where this test can see that it is gone.
  beforeAll(() => void (process.env.TMPDIR = privateTmp));
  afterAll(() => {
    if (previousTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previousTmp;
  });

  it("accepts every client on its own brokers, however strict the running guard, and touches none of the running broker's files", async () => {
    const data = mkdtempSync(join(root, 'data-'));
    const config = configSchema.parse({
      data_dir: data,
      log_level: 'silent',
      listeners: [{ name: 'real', transport: 'tcp', host: '127.0.0.1', port: 0 }],
      audit: { directory: join(data, 'audit-here'), signing_key_file: join(data, 'audit.key') },
      // The running broker would ban 127.0.0.1 after two connects a minute: the warm-up must not inherit that.
      guard: {
        flapping: { address: { max_attempts: 2 }, network: { max_attempts: 2 } },
        blocklist: { file: join(data, 'bans.json') },
      },
      persistence: { durability: 'sync' },
    });
    const openBefore = readdirSync('/proc/self/fd').length;
    // The brokers' directories, as they come and go: the second half's third broker has one of its own.
    const brokerDirs = new Set<string>();
    const watch = setInterval(() => {
      try {
        for (const warmup of readdirSync(privateTmp))
          for (const name of readdirSync(join(privateTmp, warmup), { withFileTypes: true }))
            if (name.isDirectory()) brokerDirs.add(name.name);
      } catch {
        // Removed while being listed: the end of the warm-up.
      }
    }, 2);
    const result = await warmUpConnectPath(config, 600).finally(() => clearInterval(watch));
    expect([...brokerDirs].sort()).toEqual(['a', 'b', 'c']);
    expect(result).toMatchObject({ attempted: 600, accepted: 600 });
    // Every socket, file and log destination the throwaway brokers opened is closed again.
    expect(readdirSync('/proc/self/fd').length).toBe(openBefore);
    expect(result.error).toBeUndefined();
    expect(readdirSync(data)).toEqual([]);
    expect(readdirSync(privateTmp)).toEqual([]);
    // What it keeps: one CONNECT of each version its clients sent, so V8 keeps the code compiled for their shapes.
    const kept = keptConnectShapes();
    expect(kept.map((packet) => packet.cmd === 'connect' && packet.protocolVersion)).toEqual([4, 5]);
    for (const packet of kept) {
      expect(packet).toMatchObject({ clientId: 'bulwark-warmup-0', clean: true });
      expect(packet).not.toHaveProperty('password');
    }
  });

  it('reports a temporary directory it cannot create as its error instead of throwing', async () => {
    const config = configSchema.parse({ listeners: [{ port: 0 }], data_dir: join(root, 'unused') });
    process.env.TMPDIR = join(root, 'does-not-exist');
    try {
      const result = await warmUpConnectPath(config, 100);
      expect(result).toMatchObject({ accepted: 0, attempted: 0 });
      expect(result.error).toContain('ENOENT');
    } finally {
      process.env.TMPDIR = privateTmp;
    }
  });

  it('does nothing for 0', async () => {
    const config = configSchema.parse({ listeners: [{ port: 0 }], data_dir: join(root, 'unused') });
    expect(await warmUpConnectPath(config, 0)).toEqual({ accepted: 0, attempted: 0, ms: 0 });
    expect(existsSync(join(root, 'unused'))).toBe(false);
  });
});

describe('loopback warm-up clients', () => {
  let allowing: TestBroker;
  let refusing: TestBroker;
  beforeAll(async () => {
    allowing = await startBroker();
    refusing = await startBroker({ authorizer: denyEverything });
  });
  afterAll(async () => {
    await allowing.stop();
    await refusing.stop();
  });

  it('holds a round until every client has its CONNACK, then leaves both ways, ending every session', async () => {
    // Sessions open whenever a client leaves: sampled in the audit call itself, so no timer can miss the peak.
    const openAtLeaving: number[] = [];
    const record = allowing.audit.record.bind(allowing.audit);
    allowing.audit.record = (event) => {
      if (event.event.action === 'client.disconnected') openAtLeaving.push(allowing.server.broker.sessions.size);
      record(event);
    };
    const result = await connectInRounds([allowing.port], 120, 40, performance.now() + 10_000);
    expect(result).toEqual({ attempted: 120, accepted: 120 });
    // Rounds of 40: a whole round was held at once, never more than one round.
    expect(Math.max(...openAtLeaving)).toBeGreaterThanOrEqual(40);
    expect(Math.max(...openAtLeaving)).toBeLessThanOrEqual(41);
    await until(() => allowing.server.broker.sessions.size === 0 || undefined, 'sessions ended');
    // Half the clients sent DISCONNECT (normal end), half closed their socket: both ways were taken.
    const ends = allowing.audit.events.filter((e) => e.event.action === 'client.disconnected');
    expect(ends.length).toBe(120);
    const reasons = new Set(ends.map((e) => e.event.reason));
    expect(reasons.size).toBeGreaterThanOrEqual(2);
    // From sixteen loopback addresses in turn, as a wave comes from many (all of 127.0.0.0/8 is loopback on Linux).
    const sources = new Set(ends.map((e) => e.client?.ip));
    expect([...sources].sort()).toEqual(Array.from({ length: 16 }, (_, i) => `127.0.0.${2 + i}`).sort());
  });

  it('connects from the default source, every client accepted, where the sources cannot be bound', async () => {
    const before = allowing.audit.events.length;
    // 192.0.2.1 (TEST-NET-1) is no address of this host: the bind fails with EADDRNOTAVAIL, as 127.0.0.2 does on macOS.
    const result = await connectInRounds([allowing.port], 40, 20, performance.now() + 10_000, ['192.0.2.1']);
    expect(result).toEqual({ attempted: 40, accepted: 40 });
    await until(
      () =>
        allowing.audit.events.slice(before).filter((e) => e.event.action === 'client.disconnected').length === 40 ||
        undefined,
      'every client left',
    );
    const sources = new Set(
      allowing.audit.events
        .slice(before)
        .filter((e) => e.event.action === 'authn.allowed')
        .map((e) => e.client?.ip),
    );
    expect([...sources]).toEqual(['127.0.0.1']);
  });

  it('counts a refused client as tried, not accepted', async () => {
    const result = await connectInRounds([refusing.port], 20, 10, performance.now() + 10_000);
    expect(result).toEqual({ attempted: 20, accepted: 0 });
  });

  it('starts nothing after its deadline', async () => {
    const result = await connectInRounds([allowing.port], 20, 10, performance.now() - 1);
    expect(result).toEqual({ attempted: 0, accepted: 0 });
  });
});

const denyEverything: Authorizer = {
  check(): AuthzDecision {
    return { allowed: false, reason: 'test: nothing is allowed' };
  },
  onChange() {},
  invalidate() {},
};
