import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../audit/canonical.js';
import { chainHash, encodeRecord, GENESIS_HASH } from '../../../audit/record.js';
import { scanBlock } from '../../../audit/verify-scan.js';

const PREV = 'ab'.repeat(32);

/** A line whose stated hash is right for its bytes as given, canonical or not. */
function lineFor(body: string, prev = PREV): string {
  const hash = chainHash(prev, body);
  return `${body.slice(0, -1)},"hash":"${hash}"}`;
}

/** The exact verifier's definition: the body is the canonical JSON of the record without its hash. */
function isCanonicalBody(body: string): boolean {
  try {
    return canonicalJson(JSON.parse(body)) === body;
  } catch {
    return false;
  }
}

function scanOne(line: string): 'run' | 'slow' {
  const buf = Buffer.from(`${line}\n`, 'utf8');
  const result = scanBlock(buf, 0, buf.length);
  expect(result.lines).toBe(1);
  return (result.items[0] as { kind: 'run' | 'slow' }).kind;
}

const EVENT = '"event":{"action":"authz.publish_denied","outcome":"failure"}';
const TAIL = `"mqtt":{"qos":1,"topic":"a/b"},"prev_hash":"${PREV}","seq":7`;
const base = `${EVENT},${TAIL}`;
/** A record with a `labels` member in its sorted place, holding the given JSON text. */
const withLabels = (labels: string): string => `{"@timestamp":"t",${EVENT},"labels":${labels},${TAIL}}`;

describe('the fast verify scan accepts only canonical, hash-correct ordinary records', () => {
  const cases: Array<[string, string]> = [
    ['a canonical record', `{"@timestamp":"2026-11-26T00:00:00.000Z",${base}}`],
    ['non-ASCII text written as UTF-8', `{"@timestamp":"t","client":{"id":"Zürich-東京-🚀"},${base}}`],
    ['the short escapes JSON.stringify writes', withLabels('{"a":"q\\"b\\\\c\\nd\\te"}')],
    ['arrays, booleans, null and negative integers', withLabels('{"a":[1,-2,true,false,null,{}]}')],
    ['whitespace between members', `{"@timestamp":"t", ${base}}`],
    [
      'members out of order',
      `{"@timestamp":"t","mqtt":{"topic":"a/b","qos":1},"event":{"action":"x","outcome":"y"},"prev_hash":"${PREV}","seq":7}`,
    ],
    ['a duplicate member', `{"@timestamp":"t","@timestamp":"u",${base}}`],
    ['a number with a fraction', withLabels('{"n":1.0}')],
    ['a number with an exponent', withLabels('{"n":1e3}')],
    ['negative zero', withLabels('{"n":-0}')],
    ['a leading zero', withLabels('{"n":007}')],
    ['a \\u escape JSON.stringify would not write', withLabels('{"n":"\\u00e9"}')],
    ['an escaped solidus', withLabels('{"n":"a\\/b"}')],
    ['a raw control character', withLabels('{"n":"a\tb"}')],
    ['a hash member inside the body', `{"@timestamp":"t",${base.replace('"mqtt"', `"hash":"${PREV}","mqtt"`)}}`],
    ['no event.action', `{"@timestamp":"t","event":{"outcome":"failure"},"prev_hash":"${PREV}","seq":7}`],
    ['no seq', `{"@timestamp":"t","event":{"action":"a"},"prev_hash":"${PREV}"}`],
    ['a short prev_hash', `{"@timestamp":"t","event":{"action":"a"},"prev_hash":"abc","seq":7}`],
    ['a 16-digit integer', withLabels('{"n":1234567890123456}')],
    // Canonical, but a key sorting before @timestamp is not a record the exact path reads.
    ['a member sorting before @timestamp', `{"!x":1,"@timestamp":"t",${base}}`],
  ];

  for (const [name, body] of cases) {
    it(`${name}: fast only if the exact definition calls it canonical`, () => {
      const kind = scanOne(lineFor(body));
      if (!isCanonicalBody(body)) expect(kind).toBe('slow');
    });
  }

  it('accepts every canonical case above except those it leaves to the exact path on purpose', () => {
    const fast = cases.filter(([, body]) => scanOne(lineFor(body)) === 'run').map(([name]) => name);
    expect(fast).toEqual([
      'a canonical record',
      'non-ASCII text written as UTF-8',
      'the short escapes JSON.stringify writes',
      'arrays, booleans, null and negative integers',
    ]);
  });

  it('a canonical record with a wrong hash is slow', () => {
    const line = lineFor(`{"@timestamp":"t",${base}}`).replace('"a/b"', '"a/c"');
    expect(scanOne(line)).toBe('slow');
  });

  it('invalid UTF-8 bytes inside a string are slow', () => {
    const body = withLabels('{"n":"aXb"}');
    const buf = Buffer.from(`${lineFor(body)}\n`, 'utf8');
    buf[buf.indexOf('aXb') + 1] = 0xc0;
    expect((scanBlock(buf, 0, buf.length).items[0] as { kind: string }).kind).toBe('slow');
  });

  it("the writer's own audit.* records are left to the exact path", () => {
    const { line } = encodeRecord(
      { event: { action: 'audit.checkpoint', outcome: 'success' }, audit: { reason: 'interval' } },
      '2026-11-26T00:00:00.000Z',
      3,
      PREV,
    );
    expect(scanOne(line.trimEnd())).toBe('slow');
  });

  it('CRLF line ends and empty lines are slow', () => {
    const line = lineFor(`{"@timestamp":"t",${base}}`);
    expect(scanOne(`${line}\r`)).toBe('slow');
    expect(scanOne('')).toBe('slow');
  });
});

describe('the fast verify scan groups chained records into runs', () => {
  function chain(count: number, firstSeq = 1, prev = GENESIS_HASH): { lines: string[]; hashes: string[] } {
    const lines: string[] = [];
    const hashes: string[] = [];
    for (let i = 0; i < count; i++) {
      const { line, hash } = encodeRecord(
        { event: { action: 'authn.denied', outcome: 'failure' }, user: { name: `u${i}` } },
        '2026-11-26T00:00:00.000Z',
        firstSeq + i,
        prev,
      );
      lines.push(line);
      hashes.push(hash);
      prev = hash;
    }
    return { lines, hashes };
  }

  it('consecutive chained records form one run with the chain ends the verifier needs', () => {
    const { lines, hashes } = chain(5);
    const buf = Buffer.from(lines.join(''));
    const result = scanBlock(buf, 0, buf.length);
    // Hashing in place borrows the bytes before each line; they must all be back.
    expect(buf.toString()).toBe(lines.join(''));
    expect(result.lines).toBe(5);
    expect(result.items).toEqual([
      {
        kind: 'run',
        line: 0,
        start: 0,
        count: 5,
        firstSeq: 1,
        firstPrevHash: GENESIS_HASH,
        lastSeq: 5,
        lastHash: hashes[4],
      },
    ]);
  });

  it('a sequence gap, a swapped pair or a broken link splits runs, so the exact path sees the seam', () => {
    const { lines } = chain(6);
    const gap = [...lines.slice(0, 2), ...lines.slice(3)];
    const swapped = [lines[0], lines[2], lines[1], lines[3]];
    const other = chain(1, 3, 'cd'.repeat(32)).lines;
    const relinked = [lines[0], lines[1], ...other];
    const runs = (ls: Array<string | undefined>): number[] => {
      const buf = Buffer.from(ls.join(''));
      return scanBlock(buf, 0, buf.length).items.map((item) => (item.kind === 'run' ? item.count : 0));
    };
    expect(runs(gap)).toEqual([2, 3]);
    expect(runs(swapped)).toEqual([1, 1, 1, 1]);
    expect(runs(relinked)).toEqual([2, 1]);
  });

  it('a slow line in the middle ends a run and is reported with its byte range and index', () => {
    const { lines } = chain(3);
    const text = `${lines[0]}garbage\n${lines[1]}${lines[2]}`;
    const buf = Buffer.from(text);
    const result = scanBlock(buf, 0, buf.length);
    const slow = result.items[1];
    expect(result.items.map((i) => i.kind)).toEqual(['run', 'slow', 'run']);
    expect(slow).toMatchObject({ kind: 'slow', line: 1 });
    if (slow?.kind === 'slow') expect(buf.toString('utf8', slow.start, slow.end)).toBe('garbage');
  });
});
