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
