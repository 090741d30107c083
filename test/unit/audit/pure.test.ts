import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Secret } from '../../../authn/secret.js';
import { canonicalJson, canonicalJsonWith, canonicalString } from '../../../audit/canonical.js';
import { auditConfigSchema, parseDurationSetting, parseSize } from '../../../audit/config.js';
import { auditFileName, parseAuditFileName, readFileTail } from '../../../audit/files.js';
import { csvCell, printable } from '../../../audit/format.js';
import { parseQueryTime } from '../../../audit/query.js';
import { encodeRecord, splitLine, GENESIS_HASH } from '../../../audit/record.js';
import { createAllowedDecisionFilter } from '../../../audit/sampler.js';
import { isValidTopicFilter, topicMatches } from '../../../audit/topic-filter.js';
import { removeTempDirs, tempDir } from '../../integration/audit/harness.js';
import { afterAll } from 'vitest';
import { seededInts } from '../../helpers/seeded.js';

afterAll(() => removeTempDirs());

describe('canonical JSON', () => {
  it.each([
    [{ b: 1, a: [true, null, 'x'], '@t': 's' }, '{"@t":"s","a":[true,null,"x"],"b":1}'],
    [{ z: { y: 2, x: 1 }, u: undefined }, '{"z":{"x":1,"y":2}}'],
    [{ n: 1e21, f: 0.1, neg: -0, inf: Number.POSITIVE_INFINITY }, '{"f":0.1,"inf":null,"n":1e+21,"neg":0}'],
    [{ s: 'line\nbreak "q" \u2028 é' }, '{"s":"line\\nbreak \\"q\\" \u2028 é"}'],
    [{ secret: new Secret('hunter2') }, '{"secret":"[redacted]"}'],
    [{ é: 1, e: 2, E: 3 }, '{"E":3,"e":2,"é":1}'],
  ])('canonicalises %j', (value, expected) => {
    expect(canonicalJson(value)).toBe(expected);
  });
});

describe('canonical strings', () => {
  it('writes every UTF-16 code unit, alone and between ASCII, exactly as JSON.stringify does', () => {
    const differing: number[] = [];
    for (let unit = 0; unit <= 0xffff; unit++) {
      const char = String.fromCharCode(unit);
      for (const value of [char, `client-${char}-7`])
        if (canonicalString(value) !== JSON.stringify(value)) differing.push(unit);
    }
    expect(differing).toEqual([]);
  });

  it.each(['', 'plain', 'idle-22844-1', '127.0.0.1', 'a"b', 'back\\slash', 'é', '\ud83d\ude00', '\ud800', '~\u007f'])(
    'writes %j as JSON.stringify does',
    (value) => {
      expect(canonicalString(value)).toBe(JSON.stringify(value));
    },
  );
});

describe('canonical JSON with added members', () => {
  it.each([
    [
      { event: { action: 'x' }, z: 1 },
      { '@timestamp': 't', seq: 3, prev_hash: 'h' },
    ],
    [
      { seq: 'from the event', a: undefined, b: [1, { d: 2, c: 1 }] },
      { seq: 7, a: 'extra' },
    ],
    [{}, { only: true }],
    [{ only: null }, {}],
    [JSON.parse('{"__proto__":{"a":2,"b":1},"z":1}') as Record<string, unknown>, { seq: 1 }],
    [{ '10': 'ten', '9': 'nine', a: 1 }, { seq: 2 }],
  ])('serialises %j with %j exactly as the spread object', (value, extra) => {
    expect(canonicalJsonWith(value, extra)).toBe(canonicalJson({ ...value, ...extra }));
  });
});

describe('canonical member order', () => {
  /** The reference: members re-inserted in the order the built-in sort gives their names. */
  function reference(value: Record<string, number>): string {
    const sorted: Record<string, number> = {};
    for (const k of Object.keys(value).sort()) sorted[k] = value[k] as number;
    return JSON.stringify(sorted);
  }

  it('orders names exactly as Array.prototype.sort does, for small and large objects', () => {
    // Deterministic pseudo-random names over ASCII, Latin-1, a BMP character and a surrogate pair.
    // (No digits: integer-like names are ordered first by JSON.stringify itself, which the reference relies on.)
    const alphabet = ['a', 'b', 'B', '_', '@', 'é', 'ü', '中', '\u{1f600}', 'aa', 'ab'];
    let seed = 7;
    const next = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (const size of [0, 1, 2, 3, 8, 20, 32, 33, 60]) {
      for (let round = 0; round < 20; round++) {
        const value: Record<string, number> = {};
        while (Object.keys(value).length < size) {
          let name = '';
          for (let len = 1 + next(4); len > 0; len--) name += alphabet[next(alphabet.length)];
          value[name] = next(1000);
        }
        expect(canonicalJson(value)).toBe(reference(value));
      }
    }
  });
});

describe('canonical JSON of nested values, sorted or not', () => {
  /** An independent reference: toJSON first, members sorted at every level, JSON.stringify for the scalars. */
  function reference(value: unknown): string | undefined {
    if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
      return reference((value as { toJSON: () => unknown }).toJSON());
    }
    if (typeof value === 'bigint') return JSON.stringify(value.toString());
    if (typeof value === 'function' || typeof value === 'symbol' || value === undefined) return undefined;
    if (value === null || typeof value !== 'object') return JSON.stringify(value);
    if (Array.isArray(value)) return `[${value.map((v: unknown) => reference(v) ?? 'null').join(',')}]`;
    const record = value as Record<string, unknown>;
    const members = Object.keys(record)
      .sort()
      .flatMap((k) => {
        const v = reference(record[k]);
        return v === undefined ? [] : [`${JSON.stringify(k)}:${v}`];
      });
    return `{${members.join(',')}}`;
  }

  it('matches the reference for objects built in sorted order (written natively) and in any other order', () => {
    const next = seededInts(11);
    const names = ['a', 'b', 'B', '_', '@', 'é', '中', '\u{1f600}', 'ab', '1', '10', '9', ''];
    const scalars: unknown[] = [
      'x',
      'q"\\\n\u2028',
      0,
      -0,
      1e21,
      0.1,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      true,
      null,
      undefined,
      10n,
      () => 1,
      new Secret('hunter2'),
      new Date(0),
      { toJSON: () => ({ b: 1, a: [2, { d: 1, c: 2 }] }) },
      new (class Replaced {
        toJSON(): unknown {
          return { z: 1, y: { x: 2, w: 3 } };
        }
      })(),
    ];
    let sortedObjects = 0;
    const build = (depth: number): unknown => {
      const kind = depth > 2 ? 0 : next(4);
      if (kind === 0) return scalars[next(scalars.length)];
      if (kind === 1) return Array.from({ length: next(4) }, () => build(depth + 1));
      const keys = [...new Set(Array.from({ length: next(6) }, () => names[next(names.length)] as string))];
      // Half the objects get their members in sorted order, the shape the writer serialises with JSON.stringify.
      if (next(2) === 0) {
        keys.sort();
        sortedObjects++;
      }
      const o: Record<string, unknown> = {};
      for (const k of keys) o[k] = build(depth + 1);
      return o;
    };
    for (let i = 0; i < 3000; i++) {
      const value = build(0);
      expect(canonicalJson(value)).toBe(reference(value) ?? 'null');
      const extra = { '@timestamp': 't', seq: i, prev_hash: 'h' };
      // A record's event is a plain object: its own toJSON would be a member here, not a replacement.
      const plain = typeof (value as { toJSON?: unknown } | null)?.toJSON !== 'function';
      if (value !== null && typeof value === 'object' && !Array.isArray(value) && plain) {
        expect(canonicalJsonWith(value as Record<string, unknown>, extra)).toBe(reference({ ...value, ...extra }));
      }
    }
    expect(sortedObjects).toBeGreaterThan(1000);
  });
});

describe('record lines', () => {
  it('puts the hash last so the hashed body is the line minus its suffix', () => {
    const { line, hash } = encodeRecord(
      { event: { action: 'broker.started', outcome: 'success' } },
      '2026-01-01T00:00:00.000Z',
      1,
      GENESIS_HASH,
    );
    expect(line.endsWith(`,"hash":"${hash}"}\n`)).toBe(true);
    expect(splitLine(line.trimEnd())).toEqual({
      body: canonicalJson(JSON.parse(line.replace(`,"hash":"${hash}"`, ''))),
      hash,
    });
    expect(splitLine('{"a":1}')).toBeUndefined();
  });
});

describe('topic filters for queries', () => {
  it.each([
    ['a/+/c', 'a/b/c', true],
    ['a/+/c', 'a/b/d', false],
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['#', '$SYS/x', false],
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '$SYS/x', true],
    ['a/b', 'a/b/c', false],
    ['a/+', 'a/+', true],
  ])('%s matches %s: %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });
  it('refuses malformed filters', () => {
    expect(['a/#/b', 'a#', 'a/b+', ''].map(isValidTopicFilter)).toEqual([false, false, false, false]);
    expect(['a/+/#', '#', '+'].map(isValidTopicFilter)).toEqual([true, true, true]);
  });
});

describe('output escaping', () => {
  it('escapes terminal control and bidi characters in table cells', () => {
    expect(printable('ok\u001b[31mred\u202e')).toBe('ok\\u001b[31mred\\u202e');
  });
  it('defuses spreadsheet formulas and quotes CSV cells', () => {
    expect(['=1+1', '-2', '@x', 'a,b', 'say "hi"', 'plain'].map(csvCell)).toEqual([
      "'=1+1",
      "'-2",
      "'@x",
      '"a,b"',
      '"say ""hi"""',
      'plain',
    ]);
    expect(csvCell(-2)).toBe('-2');
  });
});

describe('configuration', () => {
  it('defaults to fail-closed, fsync always and 60 s checkpoints', () => {
    expect(auditConfigSchema.parse({})).toMatchObject({
      enabled: true,
      fsync: 'always',
      on_failure: 'fail-closed',
      checkpoint_interval: 60_000,
      rotate_max_bytes: 64 * 1024 * 1024,
      rotate_max_age: 86_400_000,
      retention_max_files: 0,
      include_payload: false,
    });
  });
  it('parses durations and sizes and refuses unknown keys', () => {
    expect(auditConfigSchema.parse({ checkpoint_interval: '5m', rotate_max_bytes: '1MiB' })).toMatchObject({
      checkpoint_interval: 300_000,
      rotate_max_bytes: 1_048_576,
    });
    expect(auditConfigSchema.safeParse({ checkpoint_interval: 'soon' }).success).toBe(false);
    expect(auditConfigSchema.safeParse({ fsync_policy: 'always' }).success).toBe(false);
    expect([
      parseDurationSetting('250ms'),
      parseDurationSetting('2d'),
      parseDurationSetting('1h30m'),
      parseDurationSetting(1500),
      parseDurationSetting('1y'),
      parseDurationSetting(-1),
    ]).toEqual([250, 172_800_000, 5_400_000, 1500, undefined, undefined]);
    expect([parseSize('512KiB'), parseSize('0'), parseSize('1TB')]).toEqual([524_288, undefined, undefined]);
  });
  it('samples allowed decisions exactly one in N', () => {
    const f = createAllowedDecisionFilter({
      record_publish_allowed: 'sampled',
      record_subscribe_allowed: 'none',
      allowed_sample_every: 4,
    });
    expect(Array.from({ length: 8 }, () => f.publish())).toEqual([
      false,
      false,
      false,
      true,
      false,
      false,
      false,
      true,
    ]);
    expect(f.subscribe()).toBe(false);
  });
  it('reads query times as ISO dates or ages', () => {
    const now = Date.parse('2026-11-25T12:00:00Z');
    expect(parseQueryTime('7d', now)).toBe(now - 7 * 86_400_000);
    expect(parseQueryTime('2026-11-01', now)).toBe(Date.parse('2026-11-01T00:00:00Z'));
    expect(parseQueryTime('yesterday', now)).toBeUndefined();
  });
});

describe('audit files', () => {
  it('names files by first sequence and generation', () => {
    expect(auditFileName(42, 1)).toBe('audit-0000000000000042-001.jsonl');
    expect(parseAuditFileName('audit-0000000000000042-001.jsonl')).toMatchObject({ firstSeq: 42, generation: 1 });
    expect(parseAuditFileName('audit-42.jsonl')).toBeUndefined();
  });
  it('finds the torn tail and the last complete lines across read chunks', () => {
    const dir = tempDir();
    const file = join(dir, 'f');
    const long = 'x'.repeat(100_000);
    writeFileSync(file, `one\n${long}\nthree\npartial`);
    expect(readFileTail(file, 2)).toMatchObject({
      lastLines: ['three', long],
      torn: { offset: 4 + 100_001 + 6, length: 7 },
    });
    writeFileSync(file, 'a\n\n');
    expect(readFileTail(file, 3)).toMatchObject({ lastLines: ['', 'a'], torn: undefined });
    writeFileSync(file, 'only-torn');
    expect(readFileTail(file, 1)).toMatchObject({ lastLines: [], torn: { offset: 0, length: 9 } });
    closeSync(openSync(join(dir, 'empty'), 'w'));
    expect(readFileTail(join(dir, 'empty'), 1)).toEqual({ size: 0, torn: undefined, lastLines: [] });
  });
});
