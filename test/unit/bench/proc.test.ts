import { spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { allowedCores, listeningPids, processCommand, processCpuMs } from '../../../bench/proc.js';

describe('processCpuMs', () => {
  it('measures a process in finer steps than the 10 ms clock tick, all its threads included', () => {
    const before = processCpuMs(process.pid)!;
    const start = process.cpuUsage();
    // About 3 ms of CPU: less than one clock tick, which /proc/PID/stat would report as 0 or 10 ms.
    while (process.cpuUsage(start).user < 3000);
    const spent = processCpuMs(process.pid)! - before;
    expect(spent).toBeGreaterThanOrEqual(2.5);
    expect(spent).toBeLessThan(1000);
    expect(spent % 10).not.toBe(0);
  });

  it('is undefined for a process that does not exist', () => {
    expect(processCpuMs(2 ** 22 + 1)).toBeUndefined();
  });
});

describe('listeningPids: the process behind a port, for an external broker', () => {
  async function listen(host: string): Promise<net.Server> {
    const server = net.createServer();
    server.listen(0, host);
    await once(server, 'listening');
    return server;
  }

  it.each(['127.0.0.1', '::1'])(
    'finds this process listening on %s, and nothing on a port no one listens on',
    async (host) => {
      const server = await listen(host);
      const port = (server.address() as net.AddressInfo).port;
      try {
        expect(listeningPids(port)).toEqual([process.pid]);
      } finally {
        server.close();
        await once(server, 'close');
      }
      // The same port, closed: the socket is gone from /proc/net/tcp*.
      expect(listeningPids(port)).toEqual([]);
    },
  );

  it('ignores a connection to the port that is not the listening socket', async () => {
    const server = await listen('127.0.0.1');
    const port = (server.address() as net.AddressInfo).port;
    // A child holds a connected socket whose local or remote end is the port; only the listener counts.
    const child = spawn(process.execPath, [
      '-e',
      `const s = require('net').connect(${port}, '127.0.0.1', () => process.stdout.write('up')); setTimeout(() => {}, 60000);`,
    ]);
    try {
      await once(child.stdout, 'data');
      expect(listeningPids(port)).toEqual([process.pid]);
    } finally {
      child.kill();
      server.close();
    }
  });
});

describe('processCommand and allowedCores', () => {
  it('name a process and the cores it may run on, and are undefined once it is gone', async () => {
    const child = spawn('taskset', ['-c', '0', 'sleep', '30']);
    await once(child, 'spawn');
    // taskset execs sleep in place: give it the moment to do so.
    const until = Date.now() + 5000;
    while (processCommand(child.pid!) !== 'sleep' && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(processCommand(child.pid!)).toBe('sleep');
    expect(allowedCores(child.pid!)).toEqual([0]);
    child.kill();
    await once(child, 'exit');
    expect(processCommand(2 ** 22 + 1)).toBeUndefined();
    expect(allowedCores(2 ** 22 + 1)).toBeUndefined();
  });

  it('reads every core of a range list', () => {
    const cores = allowedCores(process.pid);
    // This process may run anywhere it was let: at least one core, each listed once, in order.
    expect(cores?.length).toBeGreaterThan(0);
    expect([...new Set(cores)].sort((a, b) => a - b)).toEqual(cores);
  });
});
