import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { BrokerHandle, BrokerKind } from '../brokers.js';
import { bulwarkPasswordFile, connectPolicyFile, mosquittoPasswordFile, policyFile } from '../fixtures.js';
import {
  absorbCpu,
  cpuPerConnectMetric,
  cpuPerMessageUs,
  loadgen,
  rotatedPerRound,
  saturationNote,
  unsaturatedNote,
  withBroker,
  withFirstWorking,
  type Candidate,
} from '../harness.js';
import { connectCode, publishAcked, subscribeCode } from '../probe.js';
import { emptyMeasurement, type BenchContext, type Measurement, type MetricSpec, type Scenario } from '../scenario.js';
import { flowJob, type FlowShape } from './flow.js';
import { interleavedFlows, type RunningVariant } from '../interleave.js';

const STORM_CONCURRENCY = 32;

/**
 * A warmed broker's JIT is still compiling its connect path for three more seconds after the first: Bulwark's storm
 * ran at 2.4k, 3.7k and then 4.2–5.5k connects/s in consecutive seconds after a start (its V8 finished 50 optimised
 * compilations, 280 ms of the pinned core, inside a 5 s window that followed a 1 s warm-up), while Mosquitto's ran
 * at 4.2–5.2k from its first second. Measuring right after the first second mixed that ramp into "known clients".
 */
const RAMP_WARMUPS = 3;

/**
 * A reconnect storm of known clients. First a warm-up storm as long as the flow scenarios' warm-up, so every bench
 * user has connected once (Bulwark verifies each password with argon2id once and caches it); its rate, kept under
 * `after.first`, is what a storm right after a start costs. Then the ramp, three warm-ups long, while the JIT
 * compiles the connect path (`RAMP_WARMUPS`), kept under `after.ramp`. Then the measured storm: what a
 * reconnect wave costs a broker that has been running, as it would in production.
 */
async function storm(
  ctx: BenchContext,
  broker: BrokerHandle,
  key: string,
  into: Measurement,
  after?: { first: string; ramp: string },
): Promise<void> {
  const job = (durationMs: number) =>
    ({
      kind: 'connect-storm',
      port: broker.port,
      durationMs,
      concurrency: STORM_CONCURRENCY,
      credentials: ctx.credentials,
    }) as const;
  const warmups: [number, string | undefined][] = [
    [ctx.durations.warmupMs, after?.first],
    [ctx.durations.warmupMs * RAMP_WARMUPS, after?.ramp],
  ];
  for (const [durationMs, warmupKey] of warmups) {
    const warmup = await loadgen(job(durationMs), ctx, broker);
    if (warmup.error || !warmup.result || warmup.result.kind !== 'connect-storm') {
      into.notes.push(`${key} warm-up: ${warmup.error ?? 'no result'}`);
      return;
    }
    if (warmupKey) into.metrics[warmupKey] = warmup.result.rate;
    into.lost += warmup.result.refused + warmup.result.failed;
  }
  const run = await loadgen(job(ctx.durations.durationMs), ctx, broker);
  if (run.error || !run.result || run.result.kind !== 'connect-storm') {
    into.notes.push(`${key}: ${run.error ?? 'no result'}`);
    return;
  }
  into.metrics[key] = run.result.rate;
  const cpu = cpuPerMessageUs(run.result.rate, run.brokerCpu);
  if (cpu !== undefined) into.metrics[`${key}CpuUs`] = cpu;
  into.lost += run.result.refused + run.result.failed;
  // The cache-off storm runs after the cache-on one: keep the busier load generator's figure, not the last.
  into.loadgenCpu = Math.max(into.loadgenCpu ?? 0, run.result.loadgenCpu);
  absorbCpu(into, run);
  into.notes.push(
    ...saturationNote(run.result.loadgenCpu),
    ...unsaturatedNote(run.brokerCpu, run.result.loadgenCpu).map((n) => `${key}: ${n}`),
    ...run.result.errors.map((e) => `${key}: ${e}`),
  );
}

/** Answers undefined when a wrong password is refused and a right one accepted. */
async function passwordsEnforced(ctx: BenchContext, broker: BrokerHandle): Promise<string | undefined> {
  const user = ctx.credentials[0];
  if (!user) return 'no bench users';
  const wrong = await connectCode(broker.port, user.username, `${user.password}-wrong`);
  if (wrong === 0) return 'a wrong password was accepted (authentication not in effect)';
  const right = await connectCode(broker.port, user.username, user.password);
  if (right !== 0) return `the right password was refused too (CONNACK ${right}): the password file is not in use`;
  return undefined;
}

function chainCandidates(file: string, policy: string, verification?: Record<string, unknown>): Candidate[] {
  const step = { type: 'password-file', file, unknown_user: 'deny' };
  const v = verification ? { verification } : {};
  // The default policy admits anonymous local clients only; the storm's known users need a rule to connect.
  const authorization = { policy_files: [policy] };
  return [
    {
      label: 'authentication: {steps: [password-file]}',
      variant: {
        anonymous: false,
        bulwark: { authentication: { anonymous: false, steps: [step], ...v }, authorization },
      },
    },
    {
      label: 'authentication: [password-file]',
      variant: {
        anonymous: false,
        bulwark: { authentication: [step], ...(verification ? { verification } : {}), authorization },
      },
    },
  ];
}

export const connectAuthScenario: Scenario = {
  name: 'connect-auth',
  description:
    'Reconnect storm of known clients (32 at once): Bulwark argon2id password file with the verification cache on and off; Mosquitto PBKDF2 password file (aedes: the same file, checked by the launcher with PBKDF2)',
  brokers: ['bulwark', 'mosquitto', 'aedes', 'external'],
  metrics: [
    { key: 'cached', label: 'argon2id, cache on (vs PBKDF2)', unit: 'conn/s', better: 'higher', compareTo: 'pbkdf2' },
    {
      key: 'uncached',
      label: 'argon2id, cache off (vs PBKDF2)',
      unit: 'conn/s',
      better: 'higher',
      compareTo: 'pbkdf2',
    },
    { key: 'pbkdf2', label: 'PBKDF2 (Mosquitto, aedes)', unit: 'conn/s', better: 'higher' },
    cpuPerConnectMetric('cachedCpuUs', 'broker CPU per connect, argon2id, cache on (vs PBKDF2)', 'pbkdf2CpuUs'),
    cpuPerConnectMetric('pbkdf2CpuUs', 'broker CPU per connect, PBKDF2'),
    {
      key: 'cachedFirst',
      label: 'argon2id, cache on, first second after start (vs PBKDF2)',
      unit: 'conn/s',
      better: 'higher',
      compareTo: 'pbkdf2First',
    },
    {
      key: 'pbkdf2First',
      label: 'PBKDF2, first second after start',
      unit: 'conn/s',
      better: 'higher',
    },
    {
      key: 'cachedRamp',
      label: 'argon2id, cache on, seconds 2–4 after start (vs PBKDF2)',
      unit: 'conn/s',
      better: 'higher',
      compareTo: 'pbkdf2Ramp',
    },
    {
      key: 'pbkdf2Ramp',
      label: 'PBKDF2, seconds 2–4 after start',
      unit: 'conn/s',
      better: 'higher',
    },
  ],
  run: async (kind, ctx) => {
    if (kind === 'external')
      return {
        ...emptyMeasurement(),
        skipped: `the storm's ${ctx.credentials.length} users and passwords exist only on brokers the bench starts (it writes their password files)`,
      };
    const secrets = join(ctx.workDir, 'secrets');
    if (kind === 'mosquitto' || kind === 'aedes') {
      let file: string;
      try {
        file = mosquittoPasswordFile(secrets, ctx.credentials);
      } catch (error) {
        return {
          ...emptyMeasurement(),
          skipped: `mosquitto_passwd failed: ${(error as Error).message.split('\n')[0]}`,
        };
      }
      return withBroker(kind, ctx, { mosquittoPasswordFile: file }, async (broker) => {
        const m = emptyMeasurement();
        const failure = await passwordsEnforced(ctx, broker);
        if (failure) return { ...m, error: failure };
        await storm(ctx, broker, 'pbkdf2', m, { first: 'pbkdf2First', ramp: 'pbkdf2Ramp' });
        return m;
      });
    }
    let file: string;
    try {
      file = bulwarkPasswordFile(ctx.repoRoot, secrets, ctx.credentials);
    } catch (error) {
      return { ...emptyMeasurement(), skipped: `bulwark passwd failed: ${(error as Error).message.split('\n')[0]}` };
    }
    const policy = connectPolicyFile(secrets);
    const m = emptyMeasurement();
    const cached = await withFirstWorking(
      kind,
      ctx,
      'authn-chain',
      chainCandidates(file, policy),
      (b) => passwordsEnforced(ctx, b),
      async (b) => {
        await storm(ctx, b, 'cached', m, { first: 'cachedFirst', ramp: 'cachedRamp' });
        return m;
      },
    );
    if (cached.skipped) return cached;
    const uncached = await withFirstWorking(
      kind,
      ctx,
      'authn-cache-off',
      chainCandidates(file, policy, { cache_max_entries: 0 }),
      (b) => passwordsEnforced(ctx, b),
      async (b) => {
        await storm(ctx, b, 'uncached', m);
        return m;
      },
    );
    if (uncached.skipped) m.notes.push(`cache off skipped: ${uncached.skipped}`);
    return m;
  },
};

const FANIN_QOS0: FlowShape = { shape: 'fanin', publishers: 8, subscribers: 1, qos: 0 };

/** Answers undefined when a topic outside the policy is refused and a bench topic is allowed. */
async function policyEnforced(broker: BrokerHandle): Promise<string | undefined> {
  const denied = await subscribeCode(broker.port, 'probe/denied');
  if (denied !== 0x80) return `a subscription outside the policy was granted (SUBACK ${denied}): policy not in effect`;
  const allowed = await subscribeCode(broker.port, 'bench/probe/+');
  if (allowed !== 0) return `a subscription the policy allows was refused (SUBACK ${allowed})`;
  return undefined;
}

function policyCandidates(file: string): Candidate[] {
  return [
    { label: 'authorization: {policy_files}', variant: { bulwark: { authorization: { policy_files: [file] } } } },
    { label: 'authorization: {files}', variant: { bulwark: { authorization: { files: [file] } } } },
  ];
}

function cpuMetric(key: string, label: string, baselineKey?: string): MetricSpec {
  return {
    key: `${key}CpuUs`,
    label,
    unit: 'µs/msg',
    better: 'lower',
    decimals: 2,
    ...(baselineKey ? { baselineKey: `${baselineKey}CpuUs` } : {}),
  };
}

async function flowOn(ctx: BenchContext, broker: BrokerHandle, key: string, into: Measurement): Promise<void> {
  const run = await loadgen(flowJob(FANIN_QOS0, broker.port, ctx), ctx, broker);
  if (run.error || !run.result || run.result.kind !== 'flow') {
    into.notes.push(`${key}: ${run.error ?? 'no result'}`);
    return;
  }
  into.metrics[key] = run.result.rate;
  const cpu = cpuPerMessageUs(run.result.rate, run.brokerCpu);
  if (cpu !== undefined) into.metrics[`${key}CpuUs`] = cpu;
  into.lost += run.result.lost;
  into.duplicates += run.result.duplicates;
  into.loadgenCpu = run.result.loadgenCpu;
  absorbCpu(into, run);
  into.notes.push(...saturationNote(run.result.loadgenCpu), ...run.result.errors.map((e) => `${key}: ${e}`));
}

/**
 * Starts a broker enforcing `file` (in the first configuration shape that works) and runs `body` with it; the
 * skip measurement when no shape does.
 */
function withPolicy(
  kind: BrokerKind,
  ctx: BenchContext,
  file: string,
  body: (broker: BrokerHandle) => Promise<Measurement>,
): Promise<Measurement> {
  return withFirstWorking(kind, ctx, 'authz-file', policyCandidates(file), policyEnforced, body);
}

export const authzScenario: Scenario = {
  name: 'authz',
  description:
    'Fan-in QoS 0 publish cost with a policy of 10 and of 10,000 rules, against the same broker in its default configuration (built-in local-mode policy, if any); the three run at once and take turns in 1 s slices',
  brokers: ['bulwark'],
  metrics: [
    { key: 'plain', label: 'default configuration', unit: 'msg/s', better: 'higher' },
    { key: 'rules10', label: '10 rules (vs default)', unit: 'msg/s', better: 'higher', baselineKey: 'plain' },
    {
      key: 'rules10000',
      label: '10,000 rules (vs default)',
      unit: 'msg/s',
      better: 'higher',
      baselineKey: 'plain',
    },
    cpuMetric('plain', 'broker CPU per message, default configuration'),
    cpuMetric('rules10', 'broker CPU per message, 10 rules (vs default)', 'plain'),
    cpuMetric('rules10000', 'broker CPU per message, 10,000 rules (vs default)', 'plain'),
  ],
  run: async (kind, ctx) => {
    const policies = join(ctx.workDir, 'policies');
    const m = emptyMeasurement();
    // All three run at once and take turns in short slices (bench/interleave.ts): one after the other, the
    // default configuration's own rounds ran at 266k–439k msg/s, which hid a cost of 10%. Rounds still matter:
    // each start of a broker has its own speed.
    return withPolicy(kind, ctx, policyFile(policies, 10), (rules10) =>
      withPolicy(kind, ctx, policyFile(policies, 10_000), async (rules10000) => {
        const plain = await withBroker(kind, ctx, {}, async (b) => {
          const variants: RunningVariant[] = [
            { key: 'plain', broker: b },
            { key: 'rules10', broker: rules10 },
            { key: 'rules10000', broker: rules10000 },
          ];
          await interleavedFlows(ctx, FANIN_QOS0, rotatedPerRound(ctx, 'authz-turn', variants), m);
          return m;
        });
        if (plain.error) m.notes.push(`plain: ${plain.error}`);
        return m;
      }),
    );
  },
};

/** Lines in the audit directory's files that mention a publish: a cheap, format-agnostic count. */
function auditPublishLines(dataDir: string): number {
  let count = 0;
  const walk = (dir: string): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(dir, name);
      const st = statSync(path);
      if (st.isDirectory()) walk(path);
      else if (st.size < 512 * 1024 * 1024)
        for (const line of readFileSync(path, 'utf8').split('\n')) if (line.includes('publish')) count++;
    }
  };
  walk(join(dataDir, 'audit'));
  return count;
}

export const auditScenario: Scenario = {
  name: 'audit',
  description: 'Fan-in QoS 0 with recording of allowed publishes in the audit log off and on',
  brokers: ['bulwark'],
  metrics: [
    { key: 'allowedOff', label: 'allowed publishes not recorded', unit: 'msg/s', better: 'higher' },
    {
      key: 'allowedOn',
      label: 'every allowed publish recorded (vs off)',
      unit: 'msg/s',
      better: 'higher',
      baselineKey: 'allowedOff',
    },
    cpuMetric('allowedOff', 'broker CPU per message, allowed publishes not recorded'),
    cpuMetric('allowedOn', 'broker CPU per message, every allowed publish recorded (vs off)', 'allowedOff'),
  ],
  run: async (kind, ctx) => {
    const m = emptyMeasurement();
    const probeCount = 50;
    const on: Candidate[] = [
      {
        label: 'audit.record_publish_allowed: all',
        variant: { bulwark: { audit: { record_publish_allowed: 'all' } } },
      },
    ];
    const r = await withFirstWorking(
      kind,
      ctx,
      'audit-allowed',
      on,
      async (b) => {
        const acked = await publishAcked(b.port, 'bench/audit/probe', probeCount);
        if (acked < probeCount) return `only ${acked} of ${probeCount} probe publishes were acknowledged`;
        await new Promise((res) => setTimeout(res, 500));
        const lines = auditPublishLines(join(b.dir, 'data'));
        return lines >= probeCount
          ? undefined
          : `${lines} audit lines for ${probeCount} allowed publishes (recording not in effect)`;
      },
      async (b) => {
        await flowOn(ctx, b, 'allowedOn', m);
        return m;
      },
    );
    if (r.skipped) return r;
    const off = await withBroker(kind, ctx, { bulwark: { audit: { record_publish_allowed: 'none' } } }, async (b) => {
      await flowOn(ctx, b, 'allowedOff', m);
      return m;
    });
    if (off.error) m.notes.push(`off: ${off.error}`);
    return m;
  },
};
