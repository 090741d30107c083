import { join, resolve } from 'node:path';
import { startBulwark, type BrokerHandle } from '../../bench/brokers.js';
import { freePort } from './free-port.js';

export const repoRoot = resolve(import.meta.dirname, '../..');

/** A Bulwark process as the benchmark starts it (built `dist/`, the bench's configuration), unpinned, under `dir`. */
export async function startBenchBulwark(dir: string): Promise<BrokerHandle> {
  const started = await startBulwark({
    repoRoot,
    dir: join(dir, 'broker'),
    port: await freePort(),
    config: {},
    placement: { cpu: undefined },
  });
  if (!started.ok) throw new Error(started.reason);
  return started.broker;
}
