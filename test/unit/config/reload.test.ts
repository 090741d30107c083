import { describe, expect, it } from 'vitest';
import { auditRecordSchema } from '../../../audit/record-schema.js';
import { parseConfigText } from '../../../src/config/load.js';
import {
  applyLiveKeys,
  configChangedEvent,
  configRefusedEvent,
  contentHash,
  LIVE_CONFIG_KEYS,
  planConfigReload,
} from '../../../src/config/reload.js';

const BASE = `data_dir: /var/lib/bulwark
log_level: info
listeners:
  - { name: main, transport: tcp, host: 127.0.0.1, port: 1883 }
audit:
  fsync: always
`;

const config = (text: string): ReturnType<typeof parseConfigText> => parseConfigText(text, 'bulwark.yaml');

describe('planning a configuration reload', () => {
  it('an identical configuration changes nothing', () => {
    expect(planConfigReload(config(BASE), config(`# a comment\n${BASE}`))).toEqual({
      changed: [],
      applied: [],
      restartRequired: [],
    });
  });

  it('names changed keys by section and member, sorted, and splits live from restart-required', () => {
    const next = BASE.replace('log_level: info', 'log_level: debug')
      .replace('fsync: always', 'fsync: never\n  include_payload: true')
      .replace('port: 1883', 'port: 1884')
      .concat('limits: { max_packet_size: 4096 }\n');
    expect(planConfigReload(config(BASE), config(next))).toEqual({
      changed: ['audit.fsync', 'audit.include_payload', 'limits.max_packet_size', 'listeners', 'log_level'],
      applied: ['audit.include_payload', 'log_level'],
      restartRequired: ['audit.fsync', 'limits.max_packet_size', 'listeners'],
    });
  });

  it('every live key is a key of the configuration schema', () => {
    const c = config(BASE) as unknown as Record<string, Record<string, unknown>>;
    for (const key of LIVE_CONFIG_KEYS) {
      const [section, member] = key.split('.') as [string, string | undefined];
      expect(section in c, key).toBe(true);
      if (member !== undefined) expect(member in (c[section] as object), key).toBe(true);
    }
  });

  it('reports key paths only: a changed password never appears in the plan or the record', () => {
    // Any value can be sensitive; the data dir stands in for one here.
    const a = config(BASE.replace('/var/lib/bulwark', '/var/lib/s3cret-old-value'));
    const b = config(BASE.replace('/var/lib/bulwark', '/var/lib/s3cret-new-value'));
    const plan = planConfigReload(a, b);
    expect(plan.changed).toEqual(['data_dir']);
    const event = configChangedEvent(
      { file: 'bulwark.yaml', oldHash: contentHash('a'), newHash: contentHash('b'), actor: 'signal:SIGHUP' },
      plan,
    );
    expect(JSON.stringify(event)).not.toMatch(/s3cret/);
  });
});

describe('applying the live keys', () => {
  it('takes over only the applied keys and leaves restart-required ones as they run', () => {
    const running = config(BASE);
    const next = config(BASE.replace('log_level: info', 'log_level: warn').replace('fsync: always', 'fsync: never'));
    const plan = planConfigReload(running, next);
    const after = applyLiveKeys(running, next, plan.applied);
    expect(after.log_level).toBe('warn');
    expect(after.audit.fsync).toBe('always');
    expect(running.log_level).toBe('info');
    // A second reload of the same file still reports what waits for a restart, and nothing else.
    expect(planConfigReload(after, next)).toEqual({
      changed: ['audit.fsync'],
      applied: [],
      restartRequired: ['audit.fsync'],
    });
  });
});

describe('config.changed records', () => {
  const ctx = {
    file: '/etc/bulwark.yaml',
    oldHash: contentHash('old'),
    newHash: contentHash('new'),
    actor: 'signal:SIGHUP',
  };

  it('a success record carries both hashes and the key lists, and is a valid audit record', () => {
    const event = configChangedEvent(ctx, { changed: ['a', 'b'], applied: ['a'], restartRequired: ['b'] });
    expect(event).toEqual({
      event: {
        action: 'config.changed',
        outcome: 'success',
        reason: 'configuration file re-read: 2 settings changed, 1 applied now, 1 take effect after a restart',
      },
      actor: 'signal:SIGHUP',
      policy: { file: '/etc/bulwark.yaml', old_hash: contentHash('old'), new_hash: contentHash('new') },
      config: { changed: ['a', 'b'], applied: ['a'], restart_required: ['b'] },
    });
    const stored = {
      ...event,
      '@timestamp': '2026-11-26T00:00:00.000Z',
      seq: 2,
      prev_hash: '0'.repeat(64),
      hash: '1'.repeat(64),
    };
    expect(auditRecordSchema.safeParse(stored).error).toBeUndefined();
  });

  it('a failure record carries the error with its position and no key lists', () => {
    const event = configRefusedEvent(ctx, '/etc/bulwark.yaml:2:12: log_level: Invalid option');
    expect(event.event.outcome).toBe('failure');
    expect(event.policy?.error).toBe('/etc/bulwark.yaml:2:12: log_level: Invalid option');
    expect(event.config).toBeUndefined();
  });

  it('contentHash is the SHA-256 hex of the file bytes', () => {
    expect(contentHash('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
