import { cpSync, mkdirSync, mkdtempSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generationOf, journalFileName, journalFiles, readJournal } from '../../../src/persistence/journal.js';
import type { StoreRecord } from '../../../src/persistence/records.js';
import type { Message } from '../../../src/routing/message.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectClient, endAll, type Connected } from '../../helpers/mqtt-clients.js';

const SESSIONS = 40;
const PAYLOAD = Buffer.alloc(64 * 1024, 0x61);

function storedRecords(dataDir: string): StoreRecord[] {
  const dir = join(dataDir, 'store');
  const newest = journalFiles(dir).at(-1)!;
  return readJournal<StoreRecord>(join(dir, newest), false).records;
}

function journalBytes(dataDir: string): number {
  const dir = join(dataDir, 'store');
  return statSync(join(dir, journalFiles(dir).at(-1)!)).size;
}

/** A QoS 1 message handed to the broker's router directly, so a test can publish the same object twice. */
function brokerMessage(topic: string): Message {
  return {
    topic,
    payload: PAYLOAD,
    qos: 1,
    retain: false,
    properties: undefined,
    expiresAt: undefined,
    publisherId: undefined,
  };
}

const bodies = (records: StoreRecord[], topic: string): number =>
  records.filter((r) => r.t === 'o' && r.m?.t === topic).length;
const queuedFor = (records: StoreRecord[]): Set<string> => new Set(records.flatMap((r) => (r.t === 'o' ? [r.id] : [])));

/**
 * A message queued for many offline persistent sessions is kept in memory once; the journal keeps its body once
 * too (in the first session's `o` record; the others refer to it by number). Each was a full copy before: one 1 MiB PUBLISH to 2,000
 * offline sessions wrote 2.8 GB of JSON in one turn of the event loop, and the broker answered no one meanwhile.
 */
describe('message bodies in the store', () => {
  let broker: TestBroker | undefined;
  const clients: Connected[] = [];
  afterEach(async () => {
    await endAll(...clients.map((c) => c.client));
    clients.length = 0;
    await broker?.stop();
    broker = undefined;
  });

  const start = (dataDir: string): Promise<TestBroker> =>
    startBroker({ config: { data_dir: dataDir, persistence: { durability: 'sync' } } });

  const session = (i: number) => ({
    clientId: `fleet-${i}`,
    protocolVersion: 5 as const,
    clean: false,
    properties: { sessionExpiryInterval: 3600 },
  });

  /** `SESSIONS` persistent sessions subscribed to `fleet/#` at QoS 1, all offline again. */
  async function offlineFleet(b: TestBroker): Promise<void> {
    for (let i = 0; i < SESSIONS; i++) {
      const c = await connectClient(b.url, session(i));
      await c.client.subscribeAsync('fleet/#', { qos: 1 });
      await c.client.endAsync();
    }
  }

  /**
   * Copies the store as a kill -9 would leave it (no compaction at stop), starts a broker on the copy, and checks
   * that session `i`, the one message queued, gets `topic` with its whole payload.
   */
  async function restartFromCrash(dataDir: string, i: number, topic: string): Promise<void> {
    const crashed = mkdtempSync(join(tmpdir(), 'bulwark-bodies-crashed-'));
    cpSync(join(dataDir, 'store'), join(crashed, 'store'), { recursive: true });
    await broker!.stop();
    broker = await start(crashed);
    expect(broker.logs.find((l) => String(l.msg).startsWith('store restored'))).toMatchObject({
      queuedMessages: 1,
      missingMessages: 0,
    });
    const back = await connectClient(broker.url, session(i));
    clients.push(back);
    const got = await back.received.waitForTopic(topic);
    expect(Buffer.from(got.packet.payload).equals(PAYLOAD)).toBe(true);
  }

  /** Every session comes back and gets `topic` once, with its whole payload. */
  async function everyoneGets(b: TestBroker, topic: string): Promise<void> {
    for (let i = 0; i < SESSIONS; i++) {
      const c = await connectClient(b.url, session(i));
      clients.push(c);
      const got = await c.received.waitForTopic(topic);
      expect(Buffer.from(got.packet.payload).equals(PAYLOAD), `fleet-${i}`).toBe(true);
    }
  }

  it('journals a message queued for many sessions once, restores it for each, and compacts it to one copy', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-bodies-'));
    broker = await start(dataDir);
    await offlineFleet(broker);
    const before = journalBytes(dataDir);
    const publisher = await connectClient(broker.url, { clientId: 'fleet-publisher', protocolVersion: 5 });
    clients.push(publisher);
    // Acknowledged in sync mode only once everything it caused is on disk.
    await publisher.client.publishAsync('fleet/firmware', PAYLOAD, { qos: 1 });
    const records = storedRecords(dataDir);
    expect(bodies(records, 'fleet/firmware')).toBe(1);
    expect(queuedFor(records).size).toBe(SESSIONS);
    // One base64 copy (4/3 of the payload) and forty short records, not forty copies.
    expect(journalBytes(dataDir) - before).toBeLessThan(PAYLOAD.length * 2);

    await endAll(publisher.client);
    clients.length = 0;
    await broker.stop();
    // The stop compacted: still one body, each session still refers to it.
    const compacted = storedRecords(dataDir);
    expect([bodies(compacted, 'fleet/firmware'), queuedFor(compacted).size]).toEqual([1, SESSIONS]);

    broker = await start(dataDir);
    expect(broker.logs.find((l) => String(l.msg).startsWith('store restored'))).toMatchObject({
      queuedMessages: SESSIONS,
      missingMessages: 0,
    });
    // Restored as one message shared by the sessions: the compaction at this start wrote one body, not forty.
    expect(bodies(storedRecords(dataDir), 'fleet/firmware')).toBe(1);
    await everyoneGets(broker, 'fleet/firmware');
  }, 60_000);

  it('a message delivered before a compaction is journaled again when queued after it (a crash then loses nothing)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-bodies-again-'));
    broker = await start(dataDir);
    const server = broker.server;
    const first = await connectClient(broker.url, session(0));
    await first.client.subscribeAsync('fleet/#', { qos: 1 });
    await first.client.endAsync();
    const message = brokerMessage('fleet/again');
    server.broker.publish(message);
    // Delivered and acknowledged: the body is in the current file, and in no session any more.
    const back = await connectClient(broker.url, session(0));
    await back.received.waitForTopic('fleet/again');
    await back.client.endAsync();
    await server.store!.compact(server.broker);
    // The new generation holds no copy of the body; queued again, the message must bring one.
    server.broker.publish(message);
    await server.store!.durableThrough(server.store!.lastSeq);
    // What a kill -9 now would leave: the journal as it stands, without the compaction a stop makes.
    await restartFromCrash(dataDir, 0, 'fleet/again');
  }, 60_000);

  it('the body stays restorable for the other sessions after the session whose entry carried it got the message', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-bodies-carrier-'));
    broker = await start(dataDir);
    for (const i of [0, 1]) {
      const c = await connectClient(broker.url, session(i));
      await c.client.subscribeAsync('fleet/#', { qos: 1 });
      await c.client.endAsync();
    }
    broker.server.broker.publish(brokerMessage('fleet/carried'));
    await broker.server.store!.durableThrough(broker.server.store!.lastSeq);
    // The first session's entry carried the body; that session takes the message and acknowledges it.
    const carrier = storedRecords(dataDir).find((r) => r.t === 'o' && r.m?.t === 'fleet/carried');
    expect(carrier?.t === 'o' && carrier.id).toBe('fleet-0');
    const first = await connectClient(broker.url, session(0));
    await first.received.waitForTopic('fleet/carried');
    await first.client.endAsync();
    await broker.server.store!.durableThrough(broker.server.store!.lastSeq);
    // What a kill -9 now would leave: the carrier's entry deleted, the other session's entry referring to its body.
    await restartFromCrash(dataDir, 1, 'fleet/carried');
  }, 60_000);

  it.each([
    ['succeeds', false],
    ['fails', true],
  ] as const)(
    'a message queued while a compaction is being written is restored whether the compaction %s',
    async (_outcome, fail) => {
      const dataDir = mkdtempSync(join(tmpdir(), 'bulwark-bodies-window-'));
      broker = await start(dataDir);
      await offlineFleet(broker);
      const store = join(dataDir, 'store');
      // A folder where the next generation's temporary file would go: the compaction cannot write it.
      const blocker = join(store, `${journalFileName(generationOf(journalFiles(store).at(-1)!) + 1)}.tmp`);
      if (fail) mkdirSync(blocker);
      const server = broker.server;
      const compaction = server.store!.compact(server.broker);
      // Same turn as the snapshot: these records land in whichever file the compaction leaves in use.
      const message = brokerMessage('fleet/window');
      server.broker.publish(message);
      await compaction;
      expect(broker.logs.some((l) => String(l.msg).startsWith('store compaction failed'))).toBe(fail);
      // And once more after it: the same message object, now referring to the body the file in use holds.
      server.broker.publish(message);
      await server.store!.durableThrough(server.store!.lastSeq);
      await broker.stop();
      if (fail) rmdirSync(blocker);

      broker = await start(dataDir);
      expect(broker.logs.find((l) => String(l.msg).startsWith('store restored'))).toMatchObject({
        queuedMessages: 2 * SESSIONS,
        missingMessages: 0,
      });
      await everyoneGets(broker, 'fleet/window');
      for (const c of clients) await c.received.until(() => c.received.on('fleet/window').length === 2, 'both copies');
    },
    60_000,
  );
});
