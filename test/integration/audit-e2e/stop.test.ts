import { afterEach, describe, expect, it } from 'vitest';
import { byAction, field, readAuditRecords, startYamlBroker, type YamlBroker } from '../../helpers/audit-e2e.js';
import { runCli } from '../../helpers/cli.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';

describe('stopping the broker right after it says it is ready', () => {
  let dir: TempDir | undefined;
  let broker: YamlBroker | undefined;
  afterEach(async () => {
    await broker?.kill9();
    broker = undefined;
    dir?.cleanup();
    dir = undefined;
  });

  it('still stops cleanly, with broker.stopped and a shutdown checkpoint, on a SIGTERM sent at the ready line', async () => {
    dir = tempDir('bulwark-audit-stop-');
    const dataDir = dir.file('data');
    const config = dir.write(
      'bulwark.yaml',
      [
        `data_dir: ${JSON.stringify(dataDir)}`,
        'sys_interval_seconds: 0',
        'persistence: { durability: none }',
        'authentication: { anonymous: true }',
        'listeners:',
        '  - { name: main, transport: tcp, host: 127.0.0.1, port: 0 }',
        '',
      ].join('\n'),
    );
    // A supervisor that stops the broker as soon as it announced readiness (startYamlBroker resolves on that line).
    broker = await startYamlBroker(config);
    const code = await broker.stop();
    const signal = broker.child.signalCode;
    broker = undefined;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    const records = readAuditRecords(`${dataDir}/audit`);
    expect(byAction(records, 'broker.stopped')).toHaveLength(1);
    expect(field(records.at(-1)!, 'audit.reason')).toBe('shutdown');
    const verified = await runCli(['audit', 'verify', `${dataDir}/audit`]);
    expect(verified.code, verified.stdout).toBe(0);
  });
});
