import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import { BulwarkError } from '../../../src/errors.js';
import {
  parseBlocklistText,
  readBlocklistFile,
  serializeBlocklist,
  writeFileAtomic,
} from '../../../src/guard/blocklist-store.js';
import { guardConfigSchema } from '../../../src/guard/config.js';
import { Guard } from '../../../src/guard/guard.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'bulwark-guard-store-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function openGuard(now: () => number, events: AuditEvent[] = []) {
  return Guard.open({ config: guardConfigSchema.parse({}), dataDir: dir, now, onEvent: (e) => events.push(e) });
}

describe('block list persistence', () => {
  it('restores every kind of entry after a restart, with its author, reason and times', async () => {
    let t = T0;
    const first = await openGuard(() => t);
    first.ban({ kind: 'client_id', value: 'c1', reason: 'r1', until: null }, 'cli:0@unix-socket');
    first.ban({ kind: 'cidr', value: '2001:db8::/32', reason: 'r2', until: T0 + 3_600_000 }, 'cli:0@unix-socket');
    first.ban({ kind: 'username_regex', value: '^bot', reason: 'r3', until: null }, 'cli:0@unix-socket');
    first.ban({ kind: 'jwt_sub', value: 'svc', reason: 'r4', until: T0 + 60_000 }, 'guard:flapping');
    await first.stop();
    t += 1000;
    const second = await openGuard(() => t);
    expect(second.list()).toEqual(first.list());
    expect(second.checkConnect({ clientId: 'x', username: 'bot7', address: '192.0.2.1' })).toMatchObject({
      kind: 'refuse',
      reason: 'banned',
    });
    expect(statSync(join(dir, 'blocklist.json')).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('drops entries that expired while the broker was down and records their expiry', async () => {
    let t = T0;
    const first = await openGuard(() => t);
    first.ban({ kind: 'username', value: 'short', reason: '', until: T0 + 60_000 }, 'cli:0@unix-socket');
    first.ban({ kind: 'username', value: 'long', reason: '', until: null }, 'cli:0@unix-socket');
    await first.stop();
    t = T0 + 120_000;
    const events: AuditEvent[] = [];
    const second = await openGuard(() => t, events);
    await second.flush();
    expect(second.list().map((e) => e.value)).toEqual(['long']);
    expect(events.map((e) => [e.event.action, e.guard?.key])).toEqual([['guard.ban_expired', 'short']]);
    expect(JSON.parse(readFileSync(join(dir, 'blocklist.json'), 'utf8')).entries).toHaveLength(1);
  });

  it('refuses to start on a corrupt file and names its line and column', async () => {
    writeFileSync(
      join(dir, 'blocklist.json'),
      '{\n  "version": 1,\n  "entries": [\n    {"kind": "planet", "value": "x"}\n  ]\n}\n',
    );
    const error = await openGuard(() => T0).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BulwarkError);
    expect((error as BulwarkError).code).toBe('BULWARK_ERR_STORE_CORRUPT');
    expect((error as BulwarkError).position).toMatchObject({ line: 4 });
  });

  it('treats a missing file as an empty block list', async () => {
    expect(await readBlocklistFile(join(dir, 'absent.json'))).toEqual([]);
  });

  it('writes atomically: the target is replaced whole and no temporary file remains', async () => {
    const target = join(dir, 'sub', 'file.json');
    await writeFileAtomic(target, 'one');
    await writeFileAtomic(target, 'two');
    expect(readFileSync(target, 'utf8')).toBe('two');
    expect(readdirSync(join(dir, 'sub'))).toEqual(['file.json']);
  });
});

describe('import and export format', () => {
  const entries = [
    {
      kind: 'address' as const,
      value: '192.0.2.1',
      by: 'cli:0',
      reason: 'spray',
      created: '2026-01-01T00:00:00.000Z',
      until: null,
    },
    {
      kind: 'client_id_regex' as const,
      value: '^x-',
      by: 'cli:0',
      reason: '',
      created: '2026-01-01T00:00:00.000Z',
      until: '2026-02-01T00:00:00.000Z',
    },
  ];

  it.each(['json', 'yaml'] as const)('round-trips through %s', (format) => {
    expect(parseBlocklistText(serializeBlocklist(entries, format), `f.${format}`)).toEqual(entries);
  });

  it('points at the offending entry of a YAML file', () => {
    const text =
      'version: 1\nentries:\n  - kind: address\n    value: 192.0.2.1\n    by: me\n    created: yesterday\n    until: null\n';
    const error = (() => {
      try {
        parseBlocklistText(text, 'bans.yaml');
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(BulwarkError);
    expect((error as BulwarkError).describe()).toMatch(
      /^bans\.yaml:6:\d+: block list entry invalid at entries\.0\.created/,
    );
  });
});
