import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../../audit/events.js';
import { PskStore, parsePskFile } from '../../../../authn/psk/index.js';

const KEY = '00112233445566778899aabbccddeeff';

describe('parsePskFile', () => {
  it('reads identity:hexkey lines, skipping comments and blank lines, tolerating CRLF', () => {
    const result = parsePskFile(
      `# devices\n\nsensor-1:${KEY}\r\n  # indented comment\nsensor 2:${KEY.toUpperCase()}\n`,
      'psk.txt',
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect([...result.keys.keys()]).toEqual(['sensor-1', 'sensor 2']);
    expect(result.keys.get('sensor-1')?.toString('hex')).toBe(KEY);
    expect(result.warnings).toEqual([]);
  });

  it('keeps everything after the first colon as the key, so identities cannot contain a colon', () => {
    const result = parsePskFile(`a:b:${KEY}\n`, 'psk.txt');
    expect(result.ok).toBe(false);
    if (!result.ok)
      expect(result.errors[0]?.describe()).toBe(
        'psk.txt:1:3: PSK key is not hexadecimal (use only 0-9 and a-f, without 0x or spaces)',
      );
  });

  it.each([
    ['no-colon-here', '1:1: expected identity:hexkey'],
    [`:${KEY}`, '1:1: empty PSK identity'],
    [` padded:${KEY}`, '1:1: PSK identity has leading or trailing spaces'],
    ['id:', '1:4: empty PSK key'],
    ['id:0x1234', '1:4: PSK key is not hexadecimal'],
    ['id: abc', '1:5: PSK key has an odd number of hex digits'],
    [`${'x'.repeat(129)}:${KEY}`, '1:1: PSK identity longer than 128 bytes'],
    [`id:${'ab'.repeat(513)}`, '1:4: PSK key longer than 512 bytes'],
    [`id:${KEY}\n# c\nid:${KEY}`, '3:1: duplicate PSK identity (first defined on line 1)'],
  ])('rejects %j at %s', (text, expected) => {
    const result = parsePskFile(text, 'f');
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors[0]?.describe()).toContain(`f:${expected}`);
    expect(result.errors[0]?.code).toBe('BULWARK_ERR_PASSWORD_FILE');
    // Key material never appears in an error.
    expect(result.errors.map((e) => e.describe()).join('\n')).not.toContain(KEY);
  });

  it('accepts but warns about keys shorter than 128 bits', () => {
    const result = parsePskFile('id:0011223344556677', 'psk.txt');
    expect(result.ok && result.warnings).toEqual(['psk.txt:1:4: PSK key shorter than 16 bytes (128 bits)']);
  });
});

describe('PskStore', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'bulwark-psk-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses to start on a broken file and names the position', async () => {
    const file = join(dir, 'broken.psk');
    writeFileSync(file, `ok:${KEY}\nbad line\n`);
    const store = new PskStore({ file, watch: false, debounceMs: 0, onEvent: () => undefined });
    await expect(store.start()).rejects.toMatchObject({
      code: 'BULWARK_ERR_PASSWORD_FILE',
      position: { file, line: 2, column: 1 },
    });
  });

  it('swaps keys on reload, keeps the previous keys when the new file is broken, and reports both', async () => {
    const file = join(dir, 'keys.psk');
    writeFileSync(file, `one:${KEY}\n`);
    const events: AuditEvent[] = [];
    const store = new PskStore({ file, watch: false, debounceMs: 0, onEvent: (e) => events.push(e) });
    await store.start();
    expect(store.has('one')).toBe(true);

    writeFileSync(file, `two:${KEY}\n`);
    expect(await store.reload()).toEqual({ kind: 'reloaded', identities: 1, warnings: [] });
    expect(store.has('one')).toBe(false);
    expect(store.lookup('two')?.toString('hex')).toBe(KEY);

    writeFileSync(file, `three:${KEY}\nthree:${KEY}\n`);
    const failed = await store.reload();
    expect(failed.kind).toBe('failed');
    expect(store.has('two')).toBe(true);
    expect(store.has('three')).toBe(false);

    expect(events.map((e) => e.event.action)).toEqual([
      'credentials.reloaded',
      'credentials.reloaded',
      'credentials.reload_failed',
    ]);
    // The fields docs/audit.md lists: policy.file and hashes on success, policy.error on refusal.
    expect(events[1]?.policy).toEqual({
      file,
      old_hash: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
      new_hash: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
    });
    expect(events[1]?.policy?.old_hash).not.toBe(events[1]?.policy?.new_hash);
    expect(events[2]?.policy?.file).toBe(file);
    expect(events[2]?.policy?.error).toContain(`${file}:2:1: duplicate PSK identity`);
    expect(events[2]?.labels?.kept_identities).toBe('1');
    expect(JSON.stringify(events)).not.toContain(KEY);
    expect(await store.reload()).toEqual({ kind: 'failed', errors: expect.any(Array) });
  });

  it('picks up a file replaced by rename while watching', async () => {
    const file = join(dir, 'watched.psk');
    writeFileSync(file, `before:${KEY}\n`);
    let resolveReload: () => void = () => undefined;
    const reloaded = new Promise<void>((resolve) => {
      resolveReload = resolve;
    });
    const store = new PskStore({
      file,
      watch: true,
      debounceMs: 10,
      onEvent: (e) => {
        if (e.event.action === 'credentials.reloaded' && e.labels?.identities === '2') resolveReload();
      },
    });
    await store.start();
    writeFileSync(join(dir, 'watched.psk.tmp'), `before:${KEY}\nafter:${KEY}\n`);
    await rename(join(dir, 'watched.psk.tmp'), file);
    await reloaded;
    expect(store.has('after')).toBe(true);
    await store.stop();
  });
});
