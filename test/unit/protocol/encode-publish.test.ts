import mqtt from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { encodePublishWithoutProperties } from '../../../src/protocol/encode-publish.js';

describe('PUBLISH fast encoder', () => {
  const topics = ['a', 'sensors/floor-2/temp', 'ünïcödé/トピック', 'x'.repeat(300)];
  const payloads = [0, 1, 64, 125, 126, 16_380, 20_000, 2_100_000].map((n) => Buffer.alloc(n, 0x5a));
  const cases: [string, number, 0 | 1 | 2, boolean, boolean, 3 | 4 | 5][] = [];
  for (const topic of topics)
    for (const payload of payloads)
      for (const qos of [0, 1, 2] as const)
        for (const version of [3, 4, 5] as const)
          cases.push([topic, payload.length, qos, qos === 1, qos === 2, version]);

  it.each(cases)(
    'encodes %s with a %i-byte payload, QoS %i, retain %s, dup %s, v%i exactly as mqtt-packet',
    (topic, size, qos, retain, dup, version) => {
      const payload = Buffer.alloc(size, 0x5a);
      const packetId = qos > 0 ? 4242 : 0;
      const ours = encodePublishWithoutProperties(topic, payload, qos, retain, dup, packetId, version);
      const reference = mqtt.generate(
        { cmd: 'publish', topic, payload, qos, retain, dup, messageId: qos > 0 ? packetId : undefined },
        { protocolVersion: version },
      );
      expect(ours.equals(reference)).toBe(true);
    },
  );
});
