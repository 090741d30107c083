import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startCliBroker } from '../../helpers/cli.js';
import { freePort } from '../../helpers/free-port.js';

const dir = mkdtempSync(join(tmpdir(), 'bulwark-ws-reset-'));
const stops: (() => void)[] = [];

afterAll(() => {
  for (const stop of stops) stop();
});

/** Sends `request` and resets the connection at once, so the broker's answer meets a connection that is gone. */
async function sendAndReset(port: number, request: string): Promise<void> {
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  socket.write(request);
  socket.resetAndDestroy();
}

function upgrade(path: string, protocol: string | undefined): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
    (protocol === undefined ? '' : `Sec-WebSocket-Protocol: ${protocol}\r\n`) +
    '\r\n'
  );
}

describe('a refused WebSocket upgrade whose client resets the connection', () => {
  it.each([
    ['another path', upgrade('/other', 'mqtt')],
    ['no MQTT subprotocol', upgrade('/mqtt', undefined)],
  ])('with %s does not take the broker process down', async (name, request) => {
    const port = await freePort();
    const config = join(dir, `${name.replace(/\W/g, '-')}.yaml`);
    writeFileSync(
      config,
      [
        `data_dir: ${join(dir, `data-${port}`)}`,
        'warmup_connects: 0',
        'authentication:',
        '  anonymous: true',
        'persistence:',
        '  durability: none',
        'listeners:',
        '  - name: ws',
        '    transport: ws',
        '    host: 127.0.0.1',
        `    port: ${port}`,
        '',
      ].join('\n'),
    );
    const { child, output } = await startCliBroker(['-c', config], dir);
    let exited: number | null | undefined;
    child.on('exit', (code) => (exited = code));
    stops.push(() => child.kill('SIGKILL'));
    // The broker's write of its refusal fails with ECONNRESET (or EPIPE) on some of these; one unhandled socket
    // error event is enough to end the process.
    for (let i = 0; i < 100; i++) await sendAndReset(port, request);
    // A full WebSocket round trip afterwards proves the process kept serving through all of them.
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(upgrade('/mqtt', 'mqtt')));
      socket.once('data', (chunk: Buffer) => {
        resolve(chunk.toString('latin1').split('\r\n')[0] ?? '');
        socket.destroy();
      });
      socket.on('error', reject);
    });
    expect(answer).toBe('HTTP/1.1 101 Switching Protocols');
    expect(exited, output()).toBeUndefined();
    child.kill('SIGTERM');
  });
});
