import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../../src/config/load.js';
import { BulwarkError } from '../../../src/errors.js';

function errorOf(text: string): BulwarkError {
  try {
    parseConfigText(text, 'b.yaml');
  } catch (error) {
    if (error instanceof BulwarkError) return error;
    throw error;
  }
  throw new Error('the configuration was accepted');
}

describe('configuration errors name the position of the problem', () => {
  const listeners = 'listeners:\n  - port: 1883\n';
  it.each([
    ['at the top level', `${listeners}bogus_key: 1\n`, 'b.yaml:3:1: bogus_key: unknown key'],
    [
      'in a section',
      `${listeners}limits:\n  max_inflight: 5\n  max_packet_sise: 10\n`,
      'b.yaml:5:3: limits.max_packet_sise: unknown key',
    ],
    ['in a list item', 'listeners:\n  - port: 1883\n    bogus: true\n', 'b.yaml:3:5: listeners.0.bogus: unknown key'],
    [
      'in a flow mapping',
      `${listeners}authentication: { anonymous: true, anonymus: true }\n`,
      'b.yaml:3:36: authentication.anonymus: unknown key',
    ],
    [
      'and list the others',
      `${listeners}limits:\n  aa: 1\n  bb: 2\n`,
      'b.yaml:4:3: limits.aa: unknown key; also unknown here: bb',
    ],
  ])('an unknown key %s is reported at the key', (_case, text, expected) => {
    const error = errorOf(text);
    expect(error.code).toBe('BULWARK_ERR_CONFIG_INVALID');
    expect(error.describe()).toBe(`${expected} (see docs/configuration.md)`);
  });

  it('a bad value is still reported at the value', () => {
    expect(errorOf(`${listeners}limits:\n  max_inflight: lots\n`).describe()).toMatch(
      /^b\.yaml:4:17: limits\.max_inflight: /,
    );
  });
});

describe('two sockets on one port', () => {
  it.each([
    [
      'two listeners on the same address',
      'listeners:\n  - name: a\n    port: 1883\n  - name: b\n    port: 1883\n',
      /^b\.yaml:5:11: listeners\.1\.port: port 1883 on 127\.0\.0\.1 is already listener a's \(127\.0\.0\.1\)/,
    ],
    [
      'a listener on every IPv4 address and one on loopback',
      'listeners:\n  - name: all\n    host: 0.0.0.0\n    port: 8883\n  - name: local\n    port: 8883\n',
      /^b\.yaml:6:11: listeners\.1\.port: port 8883 on 127\.0\.0\.1 is already listener all's \(0\.0\.0\.0\)/,
    ],
    [
      'the metrics endpoint on a listener port',
      'listeners:\n  - port: 1883\nmetrics:\n  enabled: true\n  port: 1883\n',
      /^b\.yaml:5:9: metrics\.port: port 1883 on 127\.0\.0\.1 is already listener tcp:1883's \(127\.0\.0\.1\)/,
    ],
  ])('%s is refused at the second one', (_case, text, expected) => {
    expect(errorOf(text).describe()).toMatch(expected);
  });

  it.each([
    ['different loopback addresses', 'listeners:\n  - port: 1883\n  - host: 127.0.0.2\n    port: 1883\n'],
    [
      'IPv4 everywhere and IPv6 loopback',
      'listeners:\n  - host: 0.0.0.0\n    port: 1883\n  - host: "::1"\n    port: 1883\n',
    ],
    ['free ports picked at start', 'listeners:\n  - port: 0\n  - port: 0\nmetrics:\n  enabled: true\n  port: 0\n'],
    ['a metrics port that is off', 'listeners:\n  - port: 9464\nmetrics:\n  port: 9464\n'],
    // What a host name binds to is known only at start (`localhost` is ::1 first on many systems).
    [
      'a host name beside every IPv4 address',
      'listeners:\n  - host: 0.0.0.0\n    port: 1883\n  - host: localhost\n    port: 1883\n',
    ],
  ])('%s are accepted', (_case, text) => {
    expect(() => parseConfigText(text, 'b.yaml')).not.toThrow();
  });
});
