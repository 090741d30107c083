import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseMosquittoPasswords, verifyMosquittoPassword } from '../../../bench/mosquitto-passwords.js';

/** The aedes launcher checks the very password file Mosquitto checks, written by Debian's mosquitto_passwd. */
describe('Mosquitto password files (the aedes launcher reads them)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mosquitto-passwords-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const password = `pw-${Math.random().toString(36).slice(2)}`;

  function written(): string {
    const file = join(dir, 'passwords');
    writeFileSync(file, '');
    execFileSync('mosquitto_passwd', ['-b', file, 'alice', password], { stdio: 'ignore' });
    execFileSync('mosquitto_passwd', ['-b', file, 'bob', `${password}-bob`], { stdio: 'ignore' });
    return readFileSync(file, 'utf8');
  }

  it("accepts the password mosquitto_passwd stored and refuses another user's or a wrong one", async () => {
    const users = parseMosquittoPasswords(written());
    expect([...users.keys()]).toEqual(['alice', 'bob']);
    const alice = users.get('alice');
    if (!alice) throw new Error('alice missing');
    expect(await verifyMosquittoPassword(alice, Buffer.from(password))).toBe(true);
    expect(await verifyMosquittoPassword(alice, Buffer.from(`${password}-bob`))).toBe(false);
    expect(await verifyMosquittoPassword(alice, Buffer.from(`${password}x`))).toBe(false);
  });

  it('refuses a line that is not a $7$ PBKDF2 entry, naming the line', () => {
    expect(() => parseMosquittoPasswords('# users\n\ncarol:$6$c2FsdA==$aGFzaA==\n')).toThrow(/line 3/);
    expect(() => parseMosquittoPasswords('no-colon-here\n')).toThrow(/line 1/);
  });
});
