import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../helpers/free-port.js';

const repoRoot = resolve(import.meta.dirname, '../../..');

/** Starts the compiled launcher and resolves once it accepts TCP connections. */
async function launch(args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(repoRoot, 'dist/bench/aedes-broker.js'), String(port), ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((res) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        res(true);
      });
      s.once('error', () => res(false));
    });
    if (up) return { child, port };
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error('aedes launcher did not listen');
}

/** CONNACK return code of an MQTT 3.1.1 connect (0 accepted). */
function connackCode(port: number, username?: string, password?: string): Promise<number> {
  return new Promise((res, rej) => {
    const client = mqtt.connect({
      host: '127.0.0.1',
      port,
      protocolVersion: 4,
      reconnectPeriod: 0,
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
    });
    client.once('connect', () => {
      client.end(true);
      res(0);
    });
    client.once('error', (error) => {
      client.end(true);
      const code = (error as { code?: unknown }).code;
      if (typeof code === 'number') res(code);
      else rej(error);
    });
  });
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((res) => {
    if (child.exitCode !== null) res(child.exitCode);
    else child.once('exit', (code) => res(code));
  });
}

/** The aedes broker the bench runs beside Bulwark (compiled by the test command's build). */
describe('bench aedes launcher', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aedes-launcher-'));
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('admits anonymous clients without a password file and exits with 0 on SIGTERM', async () => {
    const { child, port } = await launch([]);
    children.push(child);
    expect(await connackCode(port)).toBe(0);
    child.kill('SIGTERM');
    expect(await exitOf(child)).toBe(0);
  });

  it("with Mosquitto's password file admits the right password and refuses a wrong one or none, as Mosquitto does", async () => {
    const file = join(dir, 'passwords');
    const password = `pw-${Math.random().toString(36).slice(2)}`;
    writeFileSync(file, '');
    execFileSync('mosquitto_passwd', ['-b', file, 'alice', password], { stdio: 'ignore' });
    const { child, port } = await launch(['--password-file', file]);
    children.push(child);
    expect(await connackCode(port, 'alice', password)).toBe(0);
    expect(await connackCode(port, 'alice', `${password}-wrong`)).toBe(4);
    expect(await connackCode(port, 'mallory', password)).toBe(4);
    expect(await connackCode(port)).toBe(4);
  });
});
