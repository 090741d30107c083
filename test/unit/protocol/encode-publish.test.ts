import mqtt from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { encodePublishWithoutProperties } from '../../../src/protocol/encode-publish.js';

/** Every byte differs from its neighbours, so a payload copied to the wrong offset or in the wrong order shows. */
function patterned(size: number): Buffer {
  const payload = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) payload[i] = (i * 7 + 3) & 0xff;
  return payload;
}

describe('PUBLISH fast encoder', () => {
  // ASCII topics are copied character by character, others written as UTF-8: both kinds, and one that turns
  // non-ASCII only at its last character (one byte per character in V8, two in UTF-8).
  const topics = ['a', 'sensors/floor-2/temp', 'ünïcödé/トピック', 'x'.repeat(300), 'sensors/temp/é'];
  const sizes = [0, 1, 64, 125, 126, 128, 129, 16_380, 20_000, 2_100_000];
  const cases: [string, number, 0 | 1 | 2, boolean, boolean, 3 | 4 | 5][] = [];
  for (const topic of topics)
    for (const size of sizes)
      for (const qos of [0, 1, 2] as const)
        for (const version of [3, 4, 5] as const) cases.push([topic, size, qos, qos === 1, qos === 2, version]);

  it.each(cases)(
    'encodes %s with a %i-byte payload, QoS %i, retain %s, dup %s, v%i exactly as mqtt-packet',
    (topic, size, qos, retain, dup, version) => {
      const payload = patterned(size);
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
