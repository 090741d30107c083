import type { BrokerKind } from '../brokers.js';
import { absorbCpu, loadgen, saturationNote, withBroker, type BrokerVariant } from '../harness.js';
import type { FlowJob } from '../loadgen/jobs.js';
import { emptyMeasurement, type BenchContext, type Measurement, type Scenario } from '../scenario.js';

export interface FlowShape {
  shape: 'fanin' | 'fanout';
  publishers: number;
  subscribers: number;
  qos: 0 | 1 | 2;
}

export function flowJob(shape: FlowShape, port: number, ctx: BenchContext): FlowJob {
  return {
    kind: 'flow',
    port,
    ...shape,
    payloadBytes: 64,
    // End-to-end window per publisher: total outstanding (8 × 200) stays under both brokers' 10,000-message
    // queue, so a correct broker never has a reason to drop.
    window: shape.shape === 'fanin' ? 200 : 100,
    inflight: 32,
    ...ctx.durations,
  };
}

/** Runs one flow on a broker that is already configured by `variant`; the measurement's `rate` metric. */
export async function measureFlow(
  kind: BrokerKind,
  ctx: BenchContext,
  shape: FlowShape,
  variant: BrokerVariant = {},
): Promise<Measurement> {
  return withBroker(kind, ctx, variant, async (broker) => {
    const run = await loadgen(flowJob(shape, broker.port, ctx), ctx, broker);
    const m = emptyMeasurement();
    if (run.error || !run.result || run.result.kind !== 'flow') return { ...m, error: run.error ?? 'no result' };
    const r = run.result;
    m.metrics.rate = r.rate;
    m.lost = r.lost;
    m.duplicates = r.duplicates;
    m.loadgenCpu = r.loadgenCpu;
    absorbCpu(m, run);
    m.notes.push(...saturationNote(r.loadgenCpu), ...r.errors);
    return m;
  });
}

function flowScenario(name: string, description: string, shape: FlowShape, unit: string): Scenario {
  return {
    name,
    description,
    brokers: ['bulwark', 'mosquitto', 'aedes', 'external'],
    metrics: [{ key: 'rate', label: 'throughput', unit, better: 'higher' }],
    run: (kind, ctx) => measureFlow(kind, ctx, shape),
  };
}

export const flowScenarios: Scenario[] = [
  flowScenario(
    'fanin-qos0',
    '8 publishers → 1 subscriber on a wildcard, 64-byte payloads, QoS 0',
    { shape: 'fanin', publishers: 8, subscribers: 1, qos: 0 },
    'msg/s',
  ),
  flowScenario(
    'fanin-qos1',
    '8 publishers → 1 subscriber on a wildcard, 64-byte payloads, QoS 1 (32 in flight per publisher)',
    { shape: 'fanin', publishers: 8, subscribers: 1, qos: 1 },
    'msg/s',
  ),
  flowScenario(
    'fanin-qos2',
    '8 publishers → 1 subscriber on a wildcard, 64-byte payloads, QoS 2 (32 in flight per publisher)',
    { shape: 'fanin', publishers: 8, subscribers: 1, qos: 2 },
    'msg/s',
  ),
  flowScenario(
    'fanout-qos0',
    '1 publisher → 50 subscribers on one topic, 64-byte payloads, QoS 0',
    { shape: 'fanout', publishers: 1, subscribers: 50, qos: 0 },
    'deliveries/s',
  ),
];

/**
 * QoS 1 fan-in into a persistent subscriber under each durability mode (issue 3): `none` keeps nothing, `periodic`
 * writes at once and flushes on an interval, `sync` acknowledges only after fdatasync (group commit).
 */
export const durabilityScenario: Scenario = {
  name: 'durability-qos1',
  description: 'Fan-in QoS 1 into a persistent-session subscriber, per persistence.durability mode',
  brokers: ['bulwark'],
  metrics: [
    { key: 'none', label: 'durability none', unit: 'msg/s', better: 'higher' },
    { key: 'periodic', label: 'durability periodic (vs none)', unit: 'msg/s', better: 'higher', baselineKey: 'none' },
    { key: 'sync', label: 'durability sync (vs none)', unit: 'msg/s', better: 'higher', baselineKey: 'none' },
  ],
  run: async (kind, ctx) => {
    const m = emptyMeasurement();
    for (const mode of ['none', 'periodic', 'sync'] as const) {
      const one = await withBroker(kind, ctx, { bulwark: { persistence: { durability: mode } } }, async (broker) => {
        const job = {
          ...flowJob({ shape: 'fanin', publishers: 8, subscribers: 1, qos: 1 }, broker.port, ctx),
          persistentSubscribers: true,
        };
        const run = await loadgen(job, ctx, broker);
        const r = emptyMeasurement();
        if (run.error || !run.result || run.result.kind !== 'flow') return { ...r, error: run.error ?? 'no result' };
        r.metrics[mode] = run.result.rate;
        r.lost = run.result.lost;
        r.duplicates = run.result.duplicates;
        return r;
      });
      if (one.error) m.notes.push(`${mode}: ${one.error}`);
      Object.assign(m.metrics, one.metrics);
      m.lost += one.lost;
      m.duplicates += one.duplicates;
    }
    return m;
  },
};
