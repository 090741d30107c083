import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../helpers/free-port.js';

const repoRoot = resolve(import.meta.dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'bulwark-lazy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Packages (from node_modules) in the CommonJS module cache when the process exits, one line on stderr. */
const PRELOAD = `
import { createRequire } from 'node:module';
const cache = createRequire(import.meta.url).cache;
process.on('exit', () => {
  const packages = new Set();
  for (const file of Object.keys(cache)) {
    const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(file);
    if (m) packages.add(m[1]);
  }
  process.stderr.write('LOADED ' + JSON.stringify([...packages]) + '\\n');
});
`;

describe('start-up footprint', () => {
  it('a broker without SQL backends, an audit mirror, CRLs or OCSP stapling never loads pg, mysql2 or @peculiar/x509', async () => {
    const preload = join(dir, 'loaded.mjs');
    writeFileSync(preload, PRELOAD);
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [`--import=${preload}`, join(repoRoot, 'dist/src/cli/main.js'), 'start', '-p', String(port), '--data-dir', dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    const ready = new Promise<void>((res) => {
      const onData = (d: Buffer): void => {
        output += d.toString();
        if (output.includes('bulwark: ready')) res();
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
    });
    // 'close', not 'exit': the LOADED line is written at exit, and may not have been read when 'exit' is emitted.
    const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
    await ready;
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const line = /^LOADED (.*)$/m.exec(output);
    const packages = JSON.parse(line?.[1] ?? '[]') as string[];
    // The hook sees the broker's CommonJS dependencies at all (mqtt-packet is on every broker's path)...
    expect(packages).toContain('mqtt-packet');
    // ...and the SQL drivers and the X.509/ASN.1 stack are not among them.
    expect(packages).not.toContain('pg');
    expect(packages).not.toContain('mysql2');
    expect(packages).not.toContain('@peculiar/x509');
    expect(packages).not.toContain('@peculiar/asn1-ocsp');
  }, 30_000);
});
