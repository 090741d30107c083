import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerHandle } from '../../../bench/brokers.js';
import { runLoadgen } from '../../../bench/loadgen-process.js';
import { buildNativeLoadgen } from '../../../bench/native-loadgen.js';
import { repoRoot, startBenchBulwark } from '../../helpers/bench-bulwark.js';

/**
 * A broker that accepts the load generator's clients and subscription, then never acknowledges or delivers a
 * PUBLISH: a broker stalled for the whole run.
 */
function startSilentBroker(): Promise<net.Server> {
  const server = net.createServer((socket) => {
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        let remaining = 0;
        let header = 1;
        for (let shift = 0; header < pending.length; shift += 7) {
          const byte = pending[header++]!;
          remaining |= (byte & 0x7f) << shift;
          if (!(byte & 0x80)) break;
        }
        if (pending.length < 2 || pending.length < header + remaining) return;
        const type = pending[0]! >> 4;
        if (type === 1) socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00]));
        if (type === 8) socket.write(Buffer.from([0x90, 0x03, pending[header]!, pending[header + 1]!, 0x01]));
        pending = pending.subarray(header + remaining);
      }
    });
    socket.on('error', () => undefined);
  });
  return new Promise((resolvePromise) => server.listen(0, '127.0.0.1', () => resolvePromise(server)));
}

/**
 * The paired latency scenario deals one schedule out to several brokers. A broker whose in-flight window is full
 * must hold back only its own messages: when it held back the whole schedule, one broker's stall showed up as
 * latency (and silence) on every other broker of the run.
 */
describe('latency in turns', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-paired-'));
  let bulwark: BrokerHandle;
  let silent: net.Server;

  beforeAll(async () => {
    bulwark = await startBenchBulwark(dir);
    silent = await startSilentBroker();
  }, 60_000);

  afterAll(async () => {
    await bulwark?.stop();
    silent?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a broker that never acknowledges loses its own messages and delays none of the other broker', async () => {
    const native = buildNativeLoadgen(repoRoot, dir);
    if (!native.ok) throw new Error(`the C load generator did not build: ${native.reason}`);
    const run = await runLoadgen(
      {
        kind: 'latency',
        port: bulwark.port,
        otherPorts: [(silent.address() as net.AddressInfo).port],
        blockMs: 2,
        rate: 5000,
        payloadBytes: 64,
        inflight: 64,
        warmupMs: 100,
        durationMs: 1000,
        drainMs: 500,
        wait: 'sleep',
      },
      { repoRoot, cpu: undefined, nice: undefined, timeoutMs: 60_000, nativeBinary: native.binary },
    );
    expect(run.error).toBeUndefined();
    const result = run.result?.kind === 'latency' ? run.result : undefined;
    const [served, stalled] = result?.targets ?? [];
    // 1 s of a 5,000 msg/s schedule in turns of 2 ms: 2,500 messages of the window each. Every one of Bulwark's
    // arrived: sampled, or left out as the first message after the other broker's turn.
    expect(served?.lost).toBe(0);
    expect((served?.samples ?? 0) + (served?.afterSwitch ?? 0)).toBe(2500);
    // The silent broker took its in-flight window's worth and no more, and every message it was dealt is lost.
    expect(stalled?.sent).toBe(64);
    expect(stalled?.received).toBe(0);
    expect(stalled?.lost).toBe(served?.sent);
  }, 60_000);
});
