import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  absorbCpu,
  type BrokerVariant,
  cpuPerConnectMetric,
  cpuPerMessageUs,
  loadgen,
  saturationNote,
  unsaturatedNote,
  withBroker,
} from '../harness.js';
import { openFileLimit, processRssBytes } from '../proc.js';
import type { BrokerHandle, BrokerKind } from '../brokers.js';
import { emptyMeasurement, type BenchContext, type Measurement, type Scenario } from '../scenario.js';

/** Descriptors kept back for listeners, log files, the data directory and the orchestrator's own probes. */
const FD_MARGIN = 256;

/**
 * How long a broker is left alone before its resident memory counts as settled. A garbage-collected broker (Bulwark,
 * aedes) keeps the garbage of its start and of a connect burst until V8's memory reducer runs. The reducer arms
 * itself at a full collection, looks again 8 s later, and collects (up to three compacting collections half a second
 * apart) only if allocation over the last seconds was low; a collection late in a burst makes it look again another
 * 8 s later. So it runs between about 5 and 17 s after a burst; 20 s covers it. Mosquitto's memory does not move.
 */
const SETTLE_MS = 20_000;
const SETTLE_QUICK_MS = 1_000;
/** The earlier reading: the memory a burst leaves right after it, garbage and all. */
const AFTER_BURST_MS = 1_500;
const AFTER_BURST_QUICK_MS = 300;
/**
 * Connects in flight at once. Below Mosquitto's listen backlog of 100: at 128, a burst now and then overflowed it,
 * and each dropped handshake waited for the client's one-second SYN retry (TcpExtListenOverflows rose by a dozen
 * in exactly the rounds where Mosquitto and the load generator both idled at about 35%). Bulwark listens with 511.
 */
const IDLE_CONCURRENCY = 64;
/** Between the bursts: the broker has closed the first burst's connections before the second starts. */
const WARM_GAP_MS = 2_000;

export const idleScenario: Scenario = {
  name: 'idle-connections',
  description:
    '10,000 idle clients (50,000 with --big): connect rate of a first and a second burst, resident memory per connection after the first; for Bulwark also the second burst with its audit log off',
  brokers: ['bulwark', 'mosquitto', 'aedes', 'external'],
  metrics: [
    { key: 'connectRate', label: 'connect rate, first burst after start', unit: 'conn/s', better: 'higher' },
    { key: 'connectRateWarm', label: 'connect rate, second burst', unit: 'conn/s', better: 'higher' },
    cpuPerConnectMetric('cpuPerConnectUs', 'broker CPU per connect, first burst'),
    cpuPerConnectMetric('cpuPerConnectWarmUs', 'broker CPU per connect, second burst'),
    {
      key: 'rssPerConnectionKiB',
      label: 'RSS per connection, 1.5 s after the burst',
      unit: 'KiB',
      better: 'lower',
      decimals: 2,
    },
    {
      key: 'rssSettledPerConnectionKiB',
      label: 'RSS per connection, settled',
      unit: 'KiB',
      better: 'lower',
      decimals: 2,
    },
    { key: 'connections', label: 'connections held', unit: 'conn', better: 'higher' },
    {
      key: 'connectRateWarmAuditOff',
      label: 'connect rate, second burst, Bulwark with audit.enabled: false',
      unit: 'conn/s',
      better: 'higher',
      compareTo: 'connectRateWarm',
    },
    cpuPerConnectMetric(
      'cpuPerConnectWarmAuditOffUs',
      'broker CPU per connect, second burst, Bulwark with audit.enabled: false',
      'cpuPerConnectWarmUs',
    ),
  ],
  run: async (kind, ctx) => {
    const m = await bursts(kind, ctx, {});
    if (kind === 'bulwark' && !m.error && !m.skipped) await withoutAuditLog(ctx, m);
    return m;
  },
};

/**
 * Bulwark records every connect in its audit log (a canonical JSON record, its hash, a share of a write and an
 * fdatasync); Mosquitto runs with `connection_messages false` and writes nothing. The same sequence of bursts
 * against a Bulwark with the log off says what that record costs, beside the comparison of the brokers as they
 * ship. Only its second burst is reported.
 */
async function withoutAuditLog(ctx: BenchContext, into: Measurement): Promise<void> {
  const off = await bursts('bulwark', ctx, { bulwark: { audit: { enabled: false } } }, (broker) =>
    // The configuration key is the broker's own; a broker that still wrote its log would make this row a lie.
    existsSync(join(broker.dir, 'data', 'audit')) ? 'the audit log was written anyway' : undefined,
  );
  const rate = off.metrics.connectRateWarm;
  if (off.error || rate === undefined) {
    into.notes.push(`audit log off: ${off.error ?? 'no second burst'}`);
    return;
  }
  into.metrics.connectRateWarmAuditOff = rate;
  const cpu = off.metrics.cpuPerConnectWarmUs;
  if (cpu !== undefined) into.metrics.cpuPerConnectWarmAuditOffUs = cpu;
  into.lost += off.lost;
}

/** A first burst held for the memory readings, then, once it is closed, a second: what both cost the broker. */
function bursts(
  kind: BrokerKind,
  ctx: BenchContext,
  variant: BrokerVariant,
  check?: (broker: BrokerHandle) => string | undefined,
): Promise<Measurement> {
  return withBroker(kind, ctx, variant, async (broker) => {
    const m = emptyMeasurement();
    const wanted = ctx.quick ? 500 : ctx.big ? 50_000 : 10_000;
    // Each loopback connection costs one descriptor in the load generator and one in the broker.
    const brokerLimit = broker.pid === undefined ? undefined : openFileLimit(broker.pid)?.hard;
    const limit = Math.min(brokerLimit ?? Infinity, openFileLimit()?.hard ?? Infinity);
    const connections = Math.min(wanted, limit - FD_MARGIN);
    if (connections < wanted)
      m.notes.push(`open-file limit ${limit} (hard, cannot be raised here): ${connections} of ${wanted} connections`);
    const settleMs = ctx.quick ? SETTLE_QUICK_MS : SETTLE_MS;
    const afterBurstMs = ctx.quick ? AFTER_BURST_QUICK_MS : AFTER_BURST_MS;
    // Both readings are against the settled broker, so neither counts the garbage of its start as connections.
    await sleep(settleMs);
    const rss = (): number | undefined => (broker.pid === undefined ? undefined : processRssBytes(broker.pid));
    const before = rss();
    let during: number | undefined;
    let settled: number | undefined;
    let held = 0;
    const burst = { kind: 'idle', port: broker.port, connections, concurrency: IDLE_CONCURRENCY } as const;
    const run = await loadgen(burst, ctx, broker, async (n) => {
      held = n;
      await sleep(afterBurstMs);
      during = rss();
      await sleep(settleMs - afterBurstMs);
      settled = rss();
    });
    if (run.error || !run.result || run.result.kind !== 'idle') return { ...m, error: run.error ?? 'no result' };
    const r = run.result;
    // A broker the bench did not start has had its first burst long before: this one is not "after start".
    if (kind === 'external')
      m.notes.push(
        'first burst: not after a start (the bench does not start this broker)',
        // An allocator that kept the memory of earlier runs serves the burst from it and reads as using none.
        'RSS per connection: the growth of a broker that was not restarted and may hold the memory of earlier runs, so a lower bound',
      );
    else {
      m.metrics.connectRate = r.connectRate;
      // What a connect cost the broker, all its threads: unlike the rate, not bounded by a saturated load generator.
      const cpu = cpuPerMessageUs(r.connectRate, run.brokerCpu);
      if (cpu !== undefined) m.metrics.cpuPerConnectUs = cpu;
    }
    m.metrics.connections = held;
    if (before !== undefined && during !== undefined && held > 0)
      m.metrics.rssPerConnectionKiB = (during - before) / 1024 / held;
    if (before !== undefined && settled !== undefined && held > 0)
      m.metrics.rssSettledPerConnectionKiB = (settled - before) / 1024 / held;
    m.lost = r.failed;
    m.loadgenCpu = r.loadgenCpu;
    absorbCpu(m, run);
    m.notes.push(...saturationNote(r.loadgenCpu), ...unsaturatedNote(m.brokerCpu, r.loadgenCpu), ...r.errors);
    // The same burst again once the first is closed: a JIT-compiled broker whose heap has already grown to
    // hold the clients. The first burst pays for compiling the connect path and growing the heap, as a burst
    // right after a restart does; the second is what every later reconnect wave costs.
    await sleep(WARM_GAP_MS);
    const warm = await loadgen(burst, ctx, broker);
    if (warm.error || !warm.result || warm.result.kind !== 'idle') {
      m.notes.push(`second burst: ${warm.error ?? 'no result'}`);
      return m;
    }
    m.metrics.connectRateWarm = warm.result.connectRate;
    const warmCpu = cpuPerMessageUs(warm.result.connectRate, warm.brokerCpu);
    if (warmCpu !== undefined) m.metrics.cpuPerConnectWarmUs = warmCpu;
    m.lost += warm.result.failed;
    m.notes.push(...warm.result.errors.map((e) => `second burst: ${e}`));
    const failed = check?.(broker);
    return failed === undefined ? m : { ...m, error: failed };
  });
}
