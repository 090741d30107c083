import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import {
  connectClient,
  endAll,
  runMosquitto,
  spawnMosquittoSub,
  type MosquittoSubscriber,
  type Connected,
} from '../../helpers/mqtt-clients.js';

type Version = 'mqttv311' | '5';

const spawned: MosquittoSubscriber[] = [];
/** Every mosquitto_sub is tracked so none outlives the file, whatever a test does. */
function spawnSub(args: string[]): MosquittoSubscriber {
  const sub = spawnMosquittoSub(args);
  spawned.push(sub);
  return sub;
}

describe('mosquitto_pub and mosquitto_sub against the broker', () => {
  let broker: TestBroker;
  let watcher: Connected;
  let base: string[];
  beforeAll(async () => {
    broker = await startBroker();
    base = ['-h', '127.0.0.1', '-p', String(broker.port)];
    watcher = await connectClient(broker.url, { clientId: 'mosq-watcher', protocolVersion: 5 });
    await watcher.client.subscribeAsync('mosq/#', { qos: 2 });
  });
  afterAll(async () => {
    for (const sub of spawned) sub.kill('SIGKILL');
    await endAll(watcher.client);
    await broker.stop();
  });

  const cases = (['mqttv311', '5'] as Version[]).flatMap((version) =>
    ([0, 1, 2] as const).map((qos) => ({ version, qos })),
  );

  it.each(cases)('mosquitto_pub → mosquitto_sub at QoS $qos over MQTT $version', async ({ version, qos }) => {
    const topic = `mosq/rt/${version}/${qos}`;
    const sub = spawnSub([
      ...base,
      '-V',
      version,
      '-i',
      `mosq-sub-${version}-${qos}`,
      '-q',
      '2',
      '-C',
      '1',
      '-t',
      topic,
    ]);
    await sub.subscribed;
    const pub = await runMosquitto('mosquitto_pub', [
      ...base,
      '-V',
      version,
      '-i',
      `mosq-pub-${version}-${qos}`,
      '-q',
      String(qos),
      '-t',
      topic,
      '-m',
      `hello ${qos}`,
    ]);
    expect(pub.code, pub.stderr).toBe(0);
    const lines = await sub.waitForLines(1);
    expect(lines).toEqual([`${topic} hello ${qos}`]);
    const exit = await sub.exited;
    expect(exit.code, exit.stderr).toBe(0);
    // The watcher (mqtt.js v5) got it at the published QoS.
    const seen = await watcher.received.waitForTopic(topic);
    expect(seen.packet.qos).toBe(qos);
  });

  it('mosquitto_pub (3.1.1) reaches an mqtt.js v5 subscriber and mqtt.js reaches mosquitto_sub (5)', async () => {
    const sub = spawnSub([...base, '-V', '5', '-i', 'mosq-cross-sub', '-q', '1', '-C', '1', '-t', 'mosq/cross/back']);
    await sub.subscribed;
    const pub = await runMosquitto('mosquitto_pub', [
      ...base,
      '-V',
      'mqttv311',
      '-q',
      '1',
      '-t',
      'mosq/cross/out',
      '-m',
      'to mqtt.js',
    ]);
    expect(pub.code).toBe(0);
    expect((await watcher.received.waitForTopic('mosq/cross/out')).payload).toBe('to mqtt.js');
    await watcher.client.publishAsync('mosq/cross/back', 'to mosquitto', { qos: 1 });
    expect(await sub.waitForLines(1)).toEqual(['mosq/cross/back to mosquitto']);
    await sub.exited;
  });

  it.each(['mqttv311', '5'] as Version[])(
    'a retained message set with -r is sent to a later mosquitto_sub (%s), then deleted with -r -n',
    async (version) => {
      const topic = `mosq/retained/${version}`;
      const set = await runMosquitto('mosquitto_pub', [
        ...base,
        '-V',
        version,
        '-q',
        '1',
        '-r',
        '-t',
        topic,
        '-m',
        'kept',
      ]);
      expect(set.code).toBe(0);
      const late = await runMosquitto('mosquitto_sub', [
        ...base,
        '-V',
        version,
        '-C',
        '1',
        '-W',
        '5',
        '-F',
        '%r %t %p',
        '-t',
        topic,
      ]);
      expect(late.code, late.stderr).toBe(0);
      expect(late.stdout.trim()).toBe(`1 ${topic} kept`);
      const cleared = await runMosquitto('mosquitto_pub', [...base, '-V', version, '-q', '1', '-r', '-n', '-t', topic]);
      expect(cleared.code).toBe(0);
      // A fresh subscriber sees the marker but no retained message.
      const probe = await connectClient(broker.url, { clientId: `mosq-retained-probe-${version}`, protocolVersion: 4 });
      await probe.client.subscribeAsync([topic, `${topic}/marker`], { qos: 1 });
      await watcher.client.publishAsync(`${topic}/marker`, 'm', { qos: 1 });
      await probe.received.waitForTopic(`${topic}/marker`);
      expect(probe.received.on(topic)).toEqual([]);
      await endAll(probe.client);
    },
  );

  it.each(['mqttv311', '5'] as Version[])(
    'the will set with --will-topic is published when mosquitto_sub (%s) is killed',
    async (version) => {
      const topic = `mosq/will/${version}`;
      const sub = spawnSub([
        ...base,
        '-V',
        version,
        '-i',
        `mosq-will-${version}`,
        '-t',
        'mosq/will/unused',
        '--will-topic',
        topic,
        '--will-payload',
        'gone',
        '--will-qos',
        '1',
      ]);
      await sub.subscribed;
      sub.kill('SIGKILL');
      await sub.exited;
      const will = await watcher.received.waitForTopic(topic);
      expect(will.payload).toBe('gone');
      expect(will.packet.qos).toBe(1);
    },
  );

  it('the will set with --will-topic is not published when mosquitto_pub disconnects normally', async () => {
    const topic = 'mosq/will/normal';
    const pub = await runMosquitto('mosquitto_pub', [
      ...base,
      '-V',
      '5',
      '-i',
      'mosq-will-normal',
      '-t',
      'mosq/will/normal-data',
      '-m',
      'data',
      '--will-topic',
      topic,
      '--will-payload',
      'should not appear',
    ]);
    expect(pub.code).toBe(0);
    await broker.waitForLog((l) => l.msg === 'client disconnected' && l.clientId === 'mosq-will-normal');
    await watcher.client.publishAsync('mosq/will/normal-marker', 'm', { qos: 1 });
    await watcher.received.waitForTopic('mosq/will/normal-marker');
    expect(watcher.received.on(topic)).toEqual([]);
    expect(watcher.received.on('mosq/will/normal-data').map((m) => m.payload)).toEqual(['data']);
  });
});
