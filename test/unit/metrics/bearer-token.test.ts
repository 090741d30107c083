import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { bearerMatches, readBearerToken } from '../../../src/metrics/bearer-token.js';
import { isLoopbackHost } from '../../../src/metrics/config.js';

const TOKEN = 'Zq0-token-with-enough-length';
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function file(content: string, mode = 0o600): string {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-token-'));
  dirs.push(dir);
  const path = join(dir, 'token');
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

describe('metrics bearer token', () => {
  it('reads one line, a trailing newline (LF or CRLF) ignored, relative to the base directory', () => {
    const path = file(`${TOKEN}\r\n`);
    const token = readBearerToken('token', join(path, '..'));
    expect(bearerMatches(`Bearer ${TOKEN}`, token)).toBe(true);
    expect(String(token)).toBe('[redacted]');
  });

  it('matches only the Bearer scheme with the exact token', () => {
    const token = readBearerToken(file(TOKEN), '/');
    expect(bearerMatches(undefined, token)).toBe(false);
    expect(bearerMatches('', token)).toBe(false);
    expect(bearerMatches(`bearer ${TOKEN}`, token)).toBe(true);
    expect(bearerMatches(`Basic ${TOKEN}`, token)).toBe(false);
    expect(bearerMatches(`Bearer ${TOKEN}x`, token)).toBe(false);
    expect(bearerMatches(`Bearer ${TOKEN.slice(1)}`, token)).toBe(false);
    expect(bearerMatches(`Bearer ${TOKEN} extra`, token)).toBe(false);
  });

  it.each([
    ['short', 'the token must be 16 to 4096 characters'],
    ['x'.repeat(4097), 'the token must be 16 to 4096 characters'],
    ['with a space inside the token', 'one line of visible ASCII'],
    [`${TOKEN}\n${TOKEN}\n`, 'one line of visible ASCII'],
  ])('refuses %j without quoting it', (content, message) => {
    const path = file(content);
    expect(() => readBearerToken(path, '/')).toThrow(message);
    try {
      readBearerToken(path, '/');
    } catch (error) {
      expect((error as Error).message).not.toContain(content.trim());
    }
  });

  it('refuses a file group or others may read, and a missing one, naming the setting', () => {
    expect(() => readBearerToken(file(TOKEN, 0o640), '/')).toThrow(/metrics\.bearer_token_file .*\(mode 640\)/);
    expect(() => readBearerToken('/nonexistent/token', '/')).toThrow(
      'metrics.bearer_token_file /nonexistent/token: cannot read (ENOENT)',
    );
  });

  it('tells loopback hosts from the rest', () => {
    for (const host of ['127.0.0.1', '127.255.0.9', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost'])
      expect([host, isLoopbackHost(host)]).toEqual([host, true]);
    for (const host of ['0.0.0.0', '::', '10.0.0.1', '::ffff:10.0.0.1', 'example.org', '128.0.0.1'])
      expect([host, isLoopbackHost(host)]).toEqual([host, false]);
  });
});
