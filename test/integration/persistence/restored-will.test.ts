import { mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IClientOptions } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChainResult, ConnectAttempt, ConnectAuthenticator, Identity } from '../../../authn/types.js';
import {
  encodeRecord,
  generationOf,
  journalFileName,
  journalFiles,
  readJournal,
} from '../../../src/persistence/journal.js';
import { foldRecords } from '../../../src/persistence/restore.js';
import type { StoreRecord } from '../../../src/persistence/records.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { freePort } from '../../helpers/free-port.js';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';
import { ruleAt, tempDir, type TempDir } from '../../helpers/policy-broker.js';
import { until } from '../../helpers/until.js';

const PASSWORD = 'correct-horse-battery-staple';

/**
 * A real ConnectAuthenticator that gives user `tech-1` an identity every subject key of a policy can match on
 * (groups, attributes, authenticator), plus what must never reach the disk: the password it was given, and an ACL
 * claim and expiry as a JWT would carry.
 */
const fieldAuthenticator: ConnectAuthenticator = {
  authenticate(attempt: ConnectAttempt): Promise<ChainResult> {
    const anonymous = attempt.username === undefined;
    const identity: Identity = anonymous
      ? {
          clientId: attempt.clientId,
          username: undefined,
          groups: [],
          attributes: {},
          superuser: false,
          anonymous: true,
          authenticator: 'anonymous',
        }
      : {
          clientId: attempt.clientId,
          username: attempt.username,
          groups: ['field-techs'],
          attributes: { 'cert.ou': 'plant-7', 'jwt.sub': 'tech-1@example' },
          superuser: false,
          anonymous: false,
          authenticator: 'field-table',
          expiresAt: Date.now() + 3_600_000,
          aclRules: [{ name: 'claim-rule-marker', allow: 'publish', topics: ['claim/#'] }],
        };
    return Promise.resolve({ kind: 'allow', identity, steps: [] });
  },
  continueExchange(): Promise<ChainResult> {
    return Promise.resolve({
      kind: 'deny',
      reason: 'protocolError',
      detail: 'single round',
      decidedBy: 'test',
      steps: [],
    });
  },
  supportsMethod: () => false,
};

/** Every subject key a rule can test, so a will is allowed only if every identity field survived the restart. */
const ALLOWING = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all

  - name: techs-report-outages
    allow: publish
    subjects:
      users: [tech-1]
      clients: ['tech-*']
      groups: [field-techs]
      attributes: { cert.ou: [plant-7], jwt.sub: ['tech-1@example'] }
      authenticators: [field-table]
      listeners: [test]
      addresses: [127.0.0.0/8]
      superuser: false
      anonymous: false
    topics: ['outages/#']

  - name: monitors-read-outages
    allow: [subscribe, receive, publish]
    subjects: { anonymous: true }
    topics: ['outages/#']
`;

/** The same policy with plant 7's technicians quarantined while the broker was down. */
const QUARANTINED = `${ALLOWING}
  - name: plant-7-quarantined
    deny: publish
    subjects: { groups: [field-techs], attributes: { cert.ou: [plant-7] } }
    topics: ['outages/#']
`;

interface Setup {
  dir: TempDir;
  dataDir: string;
  policyFile: string;
  port: number;
}

async function setup(policy: string): Promise<Setup> {
  const dir = tempDir('bulwark-restored-will-');
  return { dir, dataDir: dir.file('data'), policyFile: dir.write('site.policy.yaml', policy), port: await freePort() };
}

/** A real broker on the same data directory and port each time: a restart as a deployment sees it. */
function start(s: Setup): Promise<TestBroker> {
  return startBroker({
    config: {
      data_dir: s.dataDir,
      persistence: { durability: 'sync' },
      authorization: { policy_files: [s.policyFile], watch: false },
    },
    listener: { port: s.port },
    authenticator: fieldAuthenticator,
  });
}

const MONITOR: IClientOptions = {
  clientId: 'monitor',
  protocolVersion: 5,
  clean: false,
  properties: { sessionExpiryInterval: 600 },
};

/** `tech-1` connects with a delayed will and vanishes; resolves once its offline session (and will) is stored. */
async function techVanishes(broker: TestBroker, willDelay: number): Promise<void> {
  const tech = await connectClient(broker.url, {
    clientId: 'tech-1',
    protocolVersion: 5,
    clean: false,
    username: 'tech-1',
    password: PASSWORD,
    properties: { sessionExpiryInterval: 600 },
    will: {
      topic: 'outages/line-3',
      payload: Buffer.from('tech-1 lost'),
      qos: 1,
      retain: true,
      properties: { willDelayInterval: willDelay },
    },
  });
  tech.client.stream.destroy();
  await broker.waitForAudit('client.disconnected', (e) => e.mqtt?.client_id === 'tech-1');
}

/** Whether `tech-1`'s session, as the journal files on disk would restore it, still holds a will. */
function storedWill(dataDir: string): boolean {
  const dir = join(dataDir, 'store');
  const records = journalFiles(dir).flatMap((f) => readJournal<StoreRecord>(join(dir, f), false).records);
  const meta = foldRecords(records).sessions.get('tech-1')?.meta;
  return meta !== undefined && meta.t === 's' && meta.will !== undefined;
}

function storeBytes(dataDir: string): string {
  const dir = join(dataDir, 'store');
  return readdirSync(dir)
    .map((f) => readFileSync(join(dir, f)).toString('utf8'))
    .join('\n');
}

describe('a will restored after a restart meets the policy in force when it is published', () => {
  let broker: TestBroker | undefined;
  let s: Setup | undefined;
  const clients: Connected[] = [];
  afterEach(async () => {
    await endAll(...clients.splice(0).map((c) => c.client));
    await broker?.stop();
    broker = undefined;
    s?.dir.cleanup();
    s = undefined;
  });

  it('is published after the restart when the current policy still allows it for every saved identity field', async () => {
    s = await setup(ALLOWING);
    broker = await start(s);
    const monitor = await connectClient(broker.url, MONITOR);
    await monitor.client.subscribeAsync('outages/#', { qos: 1 });
    await monitor.client.endAsync();
    await techVanishes(broker, 1);
    await broker.stop();
    // The will falls due while the broker is down: it is checked when the store is replayed, once the policy is in.
    await new Promise((r) => setTimeout(r, 1_100));
    broker = await start(s);
    const back = await connectClient(broker.url, MONITOR);
    clients.push(back);
    const will = await back.received.waitForTopic('outages/line-3');
    expect(will.payload).toBe('tech-1 lost');
    expect(broker.audit.events.filter((e) => e.event.action === 'authz.will_denied')).toEqual([]);
    expect(broker.logs.some((l) => l.msg === 'publishing will message' && l.clientId === 'tech-1')).toBe(true);
  }, 20_000);

  it('once published during its delay, is gone from the store: a crash before the next compaction cannot send it twice', async () => {
    s = await setup(ALLOWING);
    broker = await start(s);
    const monitor = await connectClient(broker.url, { clientId: 'monitor-live', protocolVersion: 5 });
    clients.push(monitor);
    await monitor.client.subscribeAsync('outages/#', { qos: 1 });
    await techVanishes(broker, 1);
    // The journal is written in batches after the events that fill it: the disconnect's audit event can come first.
    await until(() => storedWill(s!.dataDir), 'the offline session saved with its will');
    await monitor.received.waitForTopic('outages/line-3');
    // What a restart after kill -9 would replay: the journal as it stands, without a compaction or clean stop.
    await until(() => !storedWill(s!.dataDir), 'the offline session saved without its published will');
    expect(broker.server.broker.sessions.get('tech-1')?.will).toBeUndefined();
  }, 20_000);

  it('published at a start because it fell due during the downtime, is published at no later start, even while compaction fails', async () => {
    s = await setup(ALLOWING);
    broker = await start(s);
    const monitor = await connectClient(broker.url, MONITOR);
    await monitor.client.subscribeAsync('outages/#', { qos: 1 });
    await monitor.client.endAsync();
    await techVanishes(broker, 1);
    await broker.stop();
    await new Promise((r) => setTimeout(r, 1_100));
    // Compaction fails from now on (as on a disk with room for records but not for a new generation): the next
    // generation's temporary file is taken by a folder.
    const store = join(s.dataDir, 'store');
    const blocker = join(store, `${journalFileName(generationOf(journalFiles(store).at(-1)!) + 1)}.tmp`);
    mkdirSync(blocker);
    broker = await start(s);
    await broker.waitForLog((l) => l.msg === 'publishing will message' && l.clientId === 'tech-1');
    await broker.waitForLog((l) => String(l.msg).startsWith('store compaction failed'));
    // What a kill -9 now would leave: the journal as it stands.
    await until(() => !storedWill(s!.dataDir), 'the restored session saved without the will it published');
    await broker.stop();
    rmdirSync(blocker);
    broker = await start(s);
    const back = await connectClient(broker.url, MONITOR);
    clients.push(back);
    await back.received.waitForTopic('outages/line-3');
    // Whatever the session still had queued came right after CONNACK, ahead of this.
    await back.client.publishAsync('outages/sentinel', 'end', { qos: 1 });
    await back.received.waitForTopic('outages/sentinel');
    expect(back.received.on('outages/line-3').map((m) => m.payload)).toEqual(['tech-1 lost']);
    expect(broker.logs.some((l) => l.msg === 'publishing will message')).toBe(false);
  }, 30_000);

  it('is withheld, audited and logged when the policy changed during the downtime to deny it', async () => {
    s = await setup(ALLOWING);
    broker = await start(s);
    await techVanishes(broker, 3);
    await broker.stop();
    writeFileSync(s.policyFile, QUARANTINED);
    broker = await start(s);
    const monitor = await connectClient(broker.url, { clientId: 'monitor-live', protocolVersion: 5 });
    clients.push(monitor);
    await monitor.client.subscribeAsync('outages/#', { qos: 1 });
    // Still pending after the restart: its delay counts on from when the client went offline.
    expect(broker.server.broker.sessions.get('tech-1')?.will).toBeDefined();
    const denied = await broker.waitForAudit('authz.will_denied');
    // Only a re-check with the saved groups and attributes can meet this deny rule.
    expect(denied.authz?.rule).toBe(ruleAt(s.policyFile, 'plant-7-quarantined'));
    expect(denied.event.code).toBe('notAuthorized');
    expect(denied.user?.name).toBe('tech-1');
    expect(denied.client?.ip).toBe('127.0.0.1');
    expect(denied.mqtt).toMatchObject({ client_id: 'tech-1', listener: 'test', topic: 'outages/line-3', qos: 1 });
    const line = await broker.waitForLog((l) => l.msg === 'will not published: not allowed by the current policy');
    expect(line.clientId).toBe('tech-1');
    // A later message on the same topics arrives alone; nothing was retained.
    await monitor.client.publishAsync('outages/marker', 'm', { qos: 1 });
    await monitor.received.waitForTopic('outages/marker');
    expect(monitor.received.on('outages/line-3')).toEqual([]);
    expect(broker.server.broker.retained.get('outages/line-3')).toBeUndefined();
  }, 20_000);

  it('keeps no password, token claim or expiry on disk, only the fields a policy matches on', async () => {
    s = await setup(ALLOWING);
    broker = await start(s);
    await techVanishes(broker, 600);
    await broker.stop();
    broker = undefined;
    const stored = storeBytes(s.dataDir);
    expect(stored).toContain('field-techs');
    expect(stored).toContain('plant-7');
    expect(stored).not.toContain(PASSWORD);
    expect(stored).not.toContain('claim-rule-marker');
  });

  it('withholds a will restored from a store written before identities were kept, and says why', async () => {
    s = await setup(ALLOWING);
    // A store as an earlier version wrote it: the will has no identity. Its delay ran out while the broker was down.
    const now = Date.now();
    const old: StoreRecord[] = [
      {
        t: 's',
        id: 'tech-1',
        v: 5,
        exp: 600,
        subs: [],
        at: now - 10_000,
        will: { m: { t: 'outages/line-3', p: Buffer.from('old will').toString('base64'), q: 1, r: true }, d: 1 },
      },
      { t: 's', id: 'monitor', v: 5, exp: 600, subs: [], at: now - 10_000 },
      { t: 'R', m: { t: 'outages/kept', p: Buffer.from('kept').toString('base64'), q: 0, r: true } },
    ];
    mkdirSync(join(s.dataDir, 'store'), { recursive: true });
    writeFileSync(join(s.dataDir, 'store', 'journal-00000001.log'), Buffer.concat(old.map((r) => encodeRecord(r))));
    broker = await start(s);
    const denied = await broker.waitForAudit('authz.will_denied');
    expect(denied.authz).toMatchObject({
      rule: 'restored-will-without-identity',
      rule_name: 'restored-will-without-identity',
      source: 'broker',
    });
    expect(denied.event.reason).toMatch(/did not keep the identity.*fail closed/);
    expect(denied.mqtt).toMatchObject({ client_id: 'tech-1', topic: 'outages/line-3' });
    const line = await until(
      () => broker!.logs.find((l) => l.msg === 'will not published: not allowed by the current policy'),
      'will log line',
    );
    expect(line.rule).toBe('restored-will-without-identity');
    expect(broker.server.broker.retained.get('outages/line-3')).toBeUndefined();
    // Everything else in the old store is restored as before.
    expect(broker.server.broker.retained.get('outages/kept')?.payload.toString()).toBe('kept');
    expect([...broker.server.broker.sessions.keys()].sort()).toEqual(['monitor', 'tech-1']);
  });
});
