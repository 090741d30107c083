import { describe, expect, it } from 'vitest';
import type { BrokerKind } from '../../../bench/brokers.js';
import { renderTable, summarize, type RoundRecord } from '../../../bench/report.js';
import { emptyMeasurement, type Scenario } from '../../../bench/scenario.js';

const flow: Scenario = {
  name: 'fanin-qos2',
  description: 'fan-in',
  brokers: ['bulwark', 'mosquitto', 'aedes'],
  metrics: [{ key: 'rate', label: 'throughput', unit: 'msg/s', better: 'higher' }],
  run: () => Promise.resolve(emptyMeasurement()),
};
const bulwarkOnly: Scenario = { ...flow, name: 'authz', brokers: ['bulwark'] };

function record(scenario: string, broker: BrokerKind, round: number, rate: number): RoundRecord {
  return { round, scenario, broker, measurement: { ...emptyMeasurement(), metrics: { rate } } };
}

describe('bench report with aedes', () => {
  const brokers: BrokerKind[] = ['bulwark', 'mosquitto', 'aedes'];
  const records = [
    ...[300, 100, 200].map((r, i) => record('fanin-qos2', 'bulwark', i + 1, r)),
    ...[150, 50, 100].map((r, i) => record('fanin-qos2', 'mosquitto', i + 1, r)),
    ...[40, 80, 60].map((r, i) => record('fanin-qos2', 'aedes', i + 1, r)),
    record('authz', 'bulwark', 1, 500),
  ];
  const [fanin, authz] = summarize([flow, bulwarkOnly], brokers, records);

  it('keeps the Bulwark/Mosquitto ratio where it was and puts Bulwark/aedes beside it', () => {
    const rate = fanin?.metrics[0];
    expect(rate?.medians).toEqual({ bulwark: 200, mosquitto: 100, aedes: 60 });
    expect(rate?.ratio).toBe(2);
    expect(rate?.ratioAgainst).toBe('mosquitto');
    expect(rate?.ratioAedes).toBeCloseTo(200 / 60);
  });

  it('leaves aedes out of a Bulwark-only scenario', () => {
    expect(authz?.metrics[0]?.medians).toEqual({ bulwark: 500 });
    expect(authz?.metrics[0]?.ratioAedes).toBeUndefined();
    expect(authz?.lost.aedes).toBeUndefined();
  });

  it('shows an aedes median column and a "vs aedes" ratio column only when aedes ran', () => {
    const table = renderTable(
      [fanin, authz].filter((s) => s !== undefined),
      brokers,
      [flow, bulwarkOnly],
    );
    const [header, , faninRow] = table.split('\n');
    expect(header).toMatch(/aedes \(median\).*ratio\s+vs aedes/);
    expect(faninRow).toContain('3.33×');
    const without = renderTable(summarize([flow], ['bulwark', 'mosquitto'], records), ['bulwark', 'mosquitto'], [flow]);
    expect(without).not.toContain('aedes');
  });
});

describe('bench report with an external broker', () => {
  const brokers: BrokerKind[] = ['bulwark', 'mosquitto', 'external'];
  const records = [
    ...[300, 100, 200].map((r, i) => record('fanin-qos2', 'bulwark', i + 1, r)),
    ...[150, 50, 100].map((r, i) => record('fanin-qos2', 'mosquitto', i + 1, r)),
    ...[400, 800, 500].map((r, i) => record('fanin-qos2', 'external', i + 1, r)),
    {
      round: 1,
      scenario: 'authz',
      broker: 'external' as const,
      measurement: { ...emptyMeasurement(), skipped: 'not for this broker' },
    },
  ];
  const names = { external: 'emqx' };
  const summaries = summarize([flow, { ...bulwarkOnly, brokers: ['bulwark', 'external'] }], brokers, records, names);

  it('puts Bulwark over the external broker beside the Mosquitto ratio, which keeps its meaning', () => {
    const rate = summaries[0]?.metrics[0];
    expect(rate?.medians).toEqual({ bulwark: 200, mosquitto: 100, external: 500 });
    expect(rate?.ratio).toBe(2);
    expect(rate?.ratioExternal).toBeCloseTo(0.4);
    expect(rate?.ratioAedes).toBeUndefined();
  });

  it('heads its columns and its notes with the name it was given', () => {
    expect(summaries[1]?.notes).toEqual(['emqx: skipped: not for this broker']);
    const table = renderTable(summaries, brokers, [flow, bulwarkOnly], names);
    const [header, , faninRow] = table.split('\n');
    expect(header).toMatch(/emqx \(median\).*ratio\s+vs emqx\s+lost/);
    expect(header).not.toContain('external');
    expect(header).not.toContain('aedes');
    expect(faninRow).toMatch(/2\.00×\s+0\.40×/);
    expect(table).toContain('lost / CPU columns list bulwark / mosquitto / emqx');
  });
});

describe('bench report of a variant against its baseline', () => {
  const authz: Scenario = {
    name: 'authz',
    description: 'rules',
    brokers: ['bulwark'],
    metrics: [
      { key: 'plain', label: 'default', unit: 'msg/s', better: 'higher' },
      { key: 'rules', label: 'rules', unit: 'msg/s', better: 'higher', baselineKey: 'plain' },
    ],
    run: () => Promise.resolve(emptyMeasurement()),
  };
  const round = (n: number, plain: number, rules: number): RoundRecord => ({
    round: n,
    scenario: 'authz',
    broker: 'bulwark',
    measurement: { ...emptyMeasurement(), metrics: { plain, rules } },
  });

  it('takes the median of each round against its own baseline, not the ratio of medians from different rounds', () => {
    // Per round: 0.9, 0.95, 0.333; the ratio of the medians (190 / 200) would say 0.95.
    const [summary] = summarize([authz], ['bulwark'], [round(1, 100, 90), round(2, 200, 190), round(3, 300, 100)]);
    const rules = summary?.metrics[1];
    expect(rules?.ratio).toBeCloseTo(0.9, 10);
    expect(rules?.ratioAgainst).toBe('bulwark plain, per round');
  });
});

describe('bench report of Bulwark against Mosquitto round by round', () => {
  const latency: Scenario = {
    name: 'latency-qos1',
    description: 'latency',
    brokers: ['bulwark', 'mosquitto'],
    metrics: [{ key: 'p99', label: 'p99', unit: 'ms', better: 'lower', decimals: 3 }],
    run: () => Promise.resolve(emptyMeasurement()),
  };
  const at = (broker: BrokerKind, round: number, p99: number): RoundRecord => ({
    round,
    scenario: 'latency-qos1',
    broker,
    measurement: { ...emptyMeasurement(), metrics: { p99 } },
  });
  // Round 2 was a noisy moment for both; round 1 for Bulwark only.
  const records = [at('bulwark', 1, 2.4), at('mosquitto', 1, 1.5), at('bulwark', 2, 3.5), at('mosquitto', 2, 11)];
  records.push(at('bulwark', 3, 1.5), at('mosquitto', 3, 1.55));
  const [summary] = summarize([latency], ['bulwark', 'mosquitto'], records);

  it('keeps the ratio of medians and adds the median of the per-round ratios beside it', () => {
    const p99 = summary?.metrics[0];
    expect(p99?.ratio).toBeCloseTo(2.4 / 1.55, 10);
    expect(p99?.ratioPerRound).toBeCloseTo(1.5 / 1.55, 10);
    const table = renderTable(summary ? [summary] : [], ['bulwark', 'mosquitto'], [latency]);
    expect(table).toContain('1.55× (0.97× per round)');
  });
});
