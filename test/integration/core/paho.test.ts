import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';

const PYTHON = '/usr/bin/python3';

/** Debian's paho-mqtt (1.6): publishes at QoS 0/1/2 with MQTT 3.1.1 and 5, waiting for each acknowledgement. */
const script = `
import sys, paho.mqtt.client as mqtt
port, version, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3]
proto = mqtt.MQTTv5 if version == '5' else mqtt.MQTTv311
c = mqtt.Client(client_id='paho-' + version, protocol=proto)
c.connect('127.0.0.1', port)
c.loop_start()
for qos in (0, 1, 2):
    info = c.publish(topic, 'paho qos %d' % qos, qos=qos)
    info.wait_for_publish(5)
    assert info.is_published(), 'not acknowledged at QoS %d' % qos
c.disconnect()
c.loop_stop()
print('done')
`;

function runPaho(port: number, version: '4' | '5', topic: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(PYTHON, ['-c', script, String(port), version, topic]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // 'close': the output is read to its end ('exit' may come before the last line, 'done', has been read).
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('paho (Python) clients', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker();
  });
  afterAll(async () => broker.stop());

  it.each(['4', '5'] as const)(
    'paho MQTT v%s publishes at QoS 0, 1 and 2 and a subscriber receives all three',
    async (version) => {
      expect(existsSync(PYTHON), 'Debian python3 with python3-paho-mqtt (installed by scripts/provision.sh)').toBe(
        true,
      );
      const sub = await mqtt.connectAsync(broker.url, { clientId: `paho-sub-${version}`, protocolVersion: 5 });
      await sub.subscribeAsync(`paho/${version}`, { qos: 2 });
      const got: string[] = [];
      sub.on('message', (_t, p) => got.push(p.toString()));
      const result = await runPaho(broker.port, version, `paho/${version}`);
      expect(result.out).toContain('done');
      expect(result.code).toBe(0);
      for (let i = 0; i < 100 && got.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
      expect(got.sort()).toEqual(['paho qos 0', 'paho qos 1', 'paho qos 2']);
      await sub.endAsync();
    },
  );
});
