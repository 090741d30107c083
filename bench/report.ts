import type { BrokerKind } from './brokers.js';
import type { Measurement, MetricSpec, Scenario } from './scenario.js';
import { median, ratio } from './stats.js';

/** Waiting for a CPU above this share of the window means other processes distorted the run. */
export const CONTENDED = 0.1;

export interface RoundRecord {
  round: number;
  scenario: string;
  broker: BrokerKind;
  measurement: Measurement;
}

export interface MetricSummary {
  key: string;
  label: string;
  unit: string;
  better: 'higher' | 'lower';
  medians: Partial<Record<BrokerKind, number>>;
  /** Bulwark over Mosquitto (or over the Bulwark baseline metric when there is no Mosquitto counterpart). */
  ratio?: number;
  ratioAgainst?: string;
  /** Bulwark over aedes (same metric, or the `compareTo` one), when aedes ran: a field of its own, so `ratio` keeps
   * meaning what it meant in older result files. */
  ratioAedes?: number;
  /** Bulwark over the external broker (`--against external:PORT`), when it ran; like `ratioAedes`. */
  ratioExternal?: number;
  /**
   * Bulwark over Mosquitto within each round, then the median. The two brokers run back to back in every round, so
   * this pairs runs made under the same machine conditions; it is reported beside `ratio`, which it does not replace.
   */
  ratioPerRound?: number;
}

export interface ScenarioSummary {
  name: string;
  description: string;
  metrics: MetricSummary[];
  lost: Partial<Record<BrokerKind, number>>;
  duplicates: Partial<Record<BrokerKind, number>>;
  brokerCpu: Partial<Record<BrokerKind, number>>;
  loadgenCpu: Partial<Record<BrokerKind, number>>;
  /** Share of the window spent waiting for a CPU (other processes on the machine). */
  brokerWait: Partial<Record<BrokerKind, number>>;
  loadgenWait: Partial<Record<BrokerKind, number>>;
  notes: string[];
}

/** Medians over rounds per broker and metric, plus the ratios. Losses are totals over all rounds. */
export function summarize(
  scenarios: readonly Scenario[],
  brokers: readonly BrokerKind[],
  records: readonly RoundRecord[],
  names: Partial<Record<BrokerKind, string>> = {},
): ScenarioSummary[] {
  return scenarios.map((s) => {
    const mine = records.filter((r) => r.scenario === s.name);
    const of = (b: BrokerKind): Measurement[] => mine.filter((r) => r.broker === b).map((r) => r.measurement);
    const notes = new Set<string>();
    const lost: ScenarioSummary['lost'] = {};
    const duplicates: ScenarioSummary['duplicates'] = {};
    const brokerCpu: ScenarioSummary['brokerCpu'] = {};
    const loadgenCpu: ScenarioSummary['loadgenCpu'] = {};
    const brokerWait: ScenarioSummary['brokerWait'] = {};
    const loadgenWait: ScenarioSummary['loadgenWait'] = {};
    for (const b of brokers) {
      const ms = of(b);
      if (ms.length === 0) continue;
      lost[b] = ms.reduce((sum, m) => sum + m.lost, 0);
      duplicates[b] = ms.reduce((sum, m) => sum + m.duplicates, 0);
      const bc = median(ms.map((m) => m.brokerCpu ?? NaN));
      if (bc !== undefined) brokerCpu[b] = bc;
      const lc = median(ms.map((m) => m.loadgenCpu ?? NaN));
      if (lc !== undefined) loadgenCpu[b] = lc;
      const bw = median(ms.map((m) => m.brokerWait ?? NaN));
      if (bw !== undefined) brokerWait[b] = bw;
      const lw = median(ms.map((m) => m.loadgenWait ?? NaN));
      if (lw !== undefined) loadgenWait[b] = lw;
      for (const m of ms) {
        const name = names[b] ?? b;
        if (m.skipped) notes.add(`${name}: skipped: ${m.skipped}`);
        if (m.error) notes.add(`${name}: error: ${m.error}`);
        for (const n of m.notes) notes.add(`${name}: ${n}`);
      }
    }
    const medianOf = (b: BrokerKind, key: string): number | undefined =>
      median(of(b).map((m) => m.metrics[key] ?? NaN));
    const metrics = s.metrics.map((spec: MetricSpec): MetricSummary => {
      const medians: MetricSummary['medians'] = {};
      for (const b of brokers) {
        const v = medianOf(b, spec.key);
        if (v !== undefined) medians[b] = v;
      }
      const out: MetricSummary = { key: spec.key, label: spec.label, unit: spec.unit, better: spec.better, medians };
      const mosquitto = medianOf('mosquitto', spec.compareTo ?? spec.key);
      const r = ratio(medians.bulwark, mosquitto);
      if (r !== undefined) {
        out.ratio = r;
        out.ratioAgainst = 'mosquitto';
      } else if (spec.baselineKey) {
        // Paired: each round's variant over the same round's baseline, then the median. The machine's speed drifts
        // between rounds, and a ratio of medians taken from different rounds carried that drift into the verdict.
        const baselineKey = spec.baselineKey;
        const rb = median(of('bulwark').map((m) => ratio(m.metrics[spec.key], m.metrics[baselineKey]) ?? NaN));
        if (rb !== undefined) {
          out.ratio = rb;
          out.ratioAgainst = `bulwark ${baselineKey}, per round`;
        }
      }
      if (out.ratioAgainst === 'mosquitto') {
        const mosquittoKey = spec.compareTo ?? spec.key;
        const perRound = mine
          .filter((r) => r.broker === 'bulwark')
          .map((b) => {
            const m = mine.find((r) => r.broker === 'mosquitto' && r.round === b.round);
            return ratio(b.measurement.metrics[spec.key], m?.measurement.metrics[mosquittoKey]) ?? NaN;
          });
        const rp = median(perRound);
        if (rp !== undefined) out.ratioPerRound = rp;
      }
      const ra = ratio(medians.bulwark, medianOf('aedes', spec.compareTo ?? spec.key));
      if (ra !== undefined) out.ratioAedes = ra;
      const re = ratio(medians.bulwark, medianOf('external', spec.compareTo ?? spec.key));
      if (re !== undefined) out.ratioExternal = re;
      return out;
    });
    return {
      name: s.name,
      description: s.description,
      metrics,
      lost,
      duplicates,
      brokerCpu,
      loadgenCpu,
      brokerWait,
      loadgenWait,
      notes: [...notes],
    };
  });
}

function fmt(v: number | undefined, decimals = 0): string {
  if (v === undefined) return '-';
  return decimals > 0 ? v.toFixed(decimals) : Math.round(v).toLocaleString('en-US');
}

function pct(v: number | undefined, wait?: number): string {
  if (v === undefined) return '-';
  return `${Math.round(v * 100)}%${wait !== undefined && wait >= 0.05 ? ` (w${Math.round(wait * 100)}%)` : ''}`;
}

/** The brokers with a ratio column of their own after Mosquitto's, and the field holding it. */
const SECOND_RATIOS = [
  ['aedes', 'ratioAedes'],
  ['external', 'ratioExternal'],
] as const;

/**
 * A plain-text table: one row per scenario metric, then the notes. `names` labels brokers whose column is not
 * headed by their kind (the external broker's `--external-name`).
 */
export function renderTable(
  summaries: readonly ScenarioSummary[],
  brokers: readonly BrokerKind[],
  specs: readonly Scenario[],
  names: Partial<Record<BrokerKind, string>> = {},
): string {
  const name = (b: BrokerKind): string => names[b] ?? b;
  const seconds = SECOND_RATIOS.filter(([b]) => brokers.includes(b));
  const header = [
    'scenario',
    'metric',
    ...brokers.map((b) => `${name(b)} (median)`),
    'ratio',
    ...seconds.map(([b]) => `vs ${name(b)}`),
    'lost',
    'broker CPU',
    'loadgen CPU',
  ];
  const rows: string[][] = [];
  for (const s of summaries) {
    const spec = specs.find((x) => x.name === s.name);
    s.metrics.forEach((m, i) => {
      const decimals = spec?.metrics.find((x) => x.key === m.key)?.decimals ?? 0;
      rows.push([
        i === 0 ? s.name : '',
        `${m.label} [${m.unit}]`,
        ...brokers.map((b) => fmt(m.medians[b], decimals)),
        m.ratio === undefined
          ? '-'
          : `${m.ratio.toFixed(2)}×${m.ratioAgainst === 'mosquitto' ? '' : ` ${m.ratioAgainst}`}` +
            // Shown only where pairing the rounds changes the figure (with one round it never does).
            (m.ratioPerRound === undefined || m.ratioPerRound.toFixed(2) === m.ratio.toFixed(2)
              ? ''
              : ` (${m.ratioPerRound.toFixed(2)}× per round)`),
        ...seconds.map(([, field]) => {
          const r = m[field];
          return r === undefined ? '-' : `${r.toFixed(2)}×`;
        }),
        i === 0 ? brokers.map((b) => fmt(s.lost[b])).join(' / ') : '',
        i === 0 ? brokers.map((b) => pct(s.brokerCpu[b], s.brokerWait[b])).join(' / ') : '',
        i === 0 ? brokers.map((b) => pct(s.loadgenCpu[b], s.loadgenWait[b])).join(' / ') : '',
      ]);
    });
  }
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, c) => cell.padEnd(widths[c] as number))
      .join('  ')
      .trimEnd();
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  const notes = summaries.flatMap((s) => s.notes.map((n) => `  ${s.name}: ${n}`));
  const waits = summaries.flatMap((s) => [...Object.values(s.brokerWait), ...Object.values(s.loadgenWait)]);
  const worst = Math.max(0, ...waits);
  if (worst >= CONTENDED)
    notes.unshift(
      `  CPU contended: broker or load generator waited up to ${Math.round(worst * 100)}% of a window for a core ` +
        '(other processes on the machine); absolute numbers are low and noisy, compare ratios only',
    );
  if (notes.length > 0) out.push('', 'notes:', ...notes);
  out.push(
    '',
    `lost / CPU columns list ${brokers.map(name).join(' / ')}; lost sums all rounds (idle-connections: failed connects; ` +
      'connect-auth: refused or failed); CPU is a share of one core, (wN%) the share spent waiting for a core',
  );
  return out.join('\n');
}
