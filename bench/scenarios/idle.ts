import { absorbCpu, loadgen, saturationNote, withBroker } from '../harness.js';
import { openFileLimit, processRssBytes } from '../proc.js';
import { emptyMeasurement, type Scenario } from '../scenario.js';

/** Descriptors kept back for listeners, log files, the data directory and the orchestrator's own probes. */
const FD_MARGIN = 256;

export const idleScenario: Scenario = {
  name: 'idle-connections',
  description: '10,000 idle clients (50,000 with --big): connect rate and resident memory per connection',
  brokers: ['bulwark', 'mosquitto', 'aedes'],
  metrics: [
    { key: 'connectRate', label: 'connect rate', unit: 'conn/s', better: 'higher' },
    { key: 'rssPerConnectionKiB', label: 'RSS per connection', unit: 'KiB', better: 'lower', decimals: 2 },
    { key: 'connections', label: 'connections held', unit: 'conn', better: 'higher' },
  ],
  run: (kind, ctx) =>
    withBroker(kind, ctx, {}, async (broker) => {
      const m = emptyMeasurement();
      const wanted = ctx.quick ? 500 : ctx.big ? 50_000 : 10_000;
      // Each loopback connection costs one descriptor in the load generator and one in the broker.
      const limit = Math.min(openFileLimit(broker.pid)?.hard ?? Infinity, openFileLimit()?.hard ?? Infinity);
      const connections = Math.min(wanted, limit - FD_MARGIN);
      if (connections < wanted)
        m.notes.push(`open-file limit ${limit} (hard, cannot be raised here): ${connections} of ${wanted} connections`);
      await new Promise((r) => setTimeout(r, 300));
      const before = processRssBytes(broker.pid);
      let during: number | undefined;
      let held = 0;
      const run = await loadgen(
        { kind: 'idle', port: broker.port, connections, concurrency: 128 },
        ctx,
        broker,
        async (n) => {
          held = n;
          // Let the broker settle (lazy buffers, a GC) before reading its resident memory.
          await new Promise((r) => setTimeout(r, ctx.quick ? 300 : 1500));
          during = processRssBytes(broker.pid);
        },
      );
      if (run.error || !run.result || run.result.kind !== 'idle') return { ...m, error: run.error ?? 'no result' };
      const r = run.result;
      m.metrics.connectRate = r.connectRate;
      m.metrics.connections = held;
      if (before !== undefined && during !== undefined && held > 0)
        m.metrics.rssPerConnectionKiB = (during - before) / 1024 / held;
      m.lost = r.failed;
      m.loadgenCpu = r.loadgenCpu;
      absorbCpu(m, run);
      m.notes.push(...saturationNote(r.loadgenCpu), ...r.errors);
      return m;
    }),
};
