import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  auditText,
  field,
  readAuditRecords,
  startYamlBroker,
  waitForAudit,
  type AuditRecord,
  type YamlBroker,
} from '../../helpers/audit-e2e.js';
import { runCli } from '../../helpers/cli.js';
import { connectClient, endAll } from '../../helpers/mqtt-clients.js';
import { PacketLog, publishNoWait, subscribeCodes } from '../../helpers/packet-log.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';

const ALICE_PASSWORD = 'alice-Pw-Rk3Tq8Vn5Ye';
const WRONG_PASSWORD = 'wrong-Pw-Jd7Lm2Xs9Cw';

// Anonymous clients may connect and nothing else; alice may use a/#.
const POLICY = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: Anonymous access is on; these tests are about the user names the audit log records.
  - name: alice-a
    allow: [publish, subscribe, receive]
    subjects: { users: [alice] }
    topics: ['a/#']
`;

describe('the user name in the audit log of a real broker with anonymous access', () => {
  let dir: TempDir;
  let broker: YamlBroker | undefined;
  let auditDir: string;
  let records: AuditRecord[] = [];
  const codes: Record<string, number | undefined> = {};

  beforeAll(async () => {
    dir = tempDir('bulwark-audit-e2e-username-');
    const usersFile = dir.file('users.yaml');
    const added = await runCli(['passwd', usersFile, 'add', 'alice', '--password-stdin'], {
      input: `${ALICE_PASSWORD}\n`,
    });
    expect(added.code, added.stderr).toBe(0);
    const policyFile = dir.write('site.policy.yaml', POLICY);
    const dataDir = dir.file('data');
    auditDir = join(dataDir, 'audit');
    const config = dir.write(
      'bulwark.yaml',
      [
        `data_dir: ${JSON.stringify(dataDir)}`,
        'sys_interval_seconds: 0',
        'persistence: { durability: none }',
        'listeners:',
        '  - { name: main, transport: tcp, host: 127.0.0.1, port: 0 }',
        'authentication:',
        '  anonymous: true',
        '  steps:',
        `    - { type: password-file, id: users, file: ${JSON.stringify(usersFile)}, unknown_user: deny }`,
        'authorization:',
        `  policy_files: [${JSON.stringify(policyFile)}]`,
        '  watch: false',
        'guard: { flapping: { enabled: false } }',
        '',
      ].join('\n'),
    );
    broker = await startYamlBroker(config);
    const url = `mqtt://127.0.0.1:${broker.ports['main']}`;

    // Claims to be admin without a password: the password step ignores it and the chain admits it as anonymous.
    const spoof = await connectClient(url, { clientId: 'spoof-1', username: 'admin', protocolVersion: 5 });
    const log = new PacketLog(spoof.client);
    codes['subscribe'] = (await subscribeCodes(spoof.client, log, { 'a/#': { qos: 0 } }))[0];
    const id = await publishNoWait(spoof.client, 'a/x', 'x', { qos: 1 });
    codes['publish'] = (await log.ack('puback', id!)).reasonCode;
    await endAll(spoof.client);

    // A wrong password for alice, then the right one.
    await expect(
      connectClient(url, { clientId: 'alice-bad', username: 'alice', password: WRONG_PASSWORD, protocolVersion: 5 }),
    ).rejects.toThrow();
    const alice = await connectClient(url, {
      clientId: 'alice-ok',
      username: 'alice',
      password: ALICE_PASSWORD,
      protocolVersion: 5,
    });
    await endAll(alice.client);
    await waitForAudit(
      auditDir,
      (r) => field(r, 'event.action') === 'client.disconnected' && field(r, 'mqtt.client_id') === 'alice-ok',
      'the last disconnect',
    );
    expect(await broker.stop()).toBe(0);
    records = readAuditRecords(auditDir);
  }, 60_000);

  afterAll(async () => {
    await broker?.kill9();
    dir?.cleanup();
  });

  const of = (clientId: string): AuditRecord[] => records.filter((r) => field(r, 'mqtt.client_id') === clientId);

  it('never names an unverified CONNECT username as user.name, and keeps it as mqtt.username in every record', () => {
    expect(codes).toEqual({ subscribe: 0x87, publish: 0x87 });
    const spoofed = of('spoof-1');
    expect(spoofed.map((r) => field(r, 'event.action'))).toEqual([
      'authn.allowed',
      'authz.subscribe_denied',
      'authz.publish_denied',
      'client.disconnected',
    ]);
    expect(field(spoofed[0]!, 'authn.by')).toBe('anonymous');
    for (const r of spoofed) {
      expect(field(r, 'user.name'), String(field(r, 'event.action'))).toBeUndefined();
      expect(field(r, 'mqtt.username'), String(field(r, 'event.action'))).toBe('admin');
    }
  });

  it('records a refused login by the username it claimed, not as a user', () => {
    const refused = of('alice-bad');
    expect(refused.map((r) => field(r, 'event.action'))).toEqual(['authn.denied']);
    for (const r of refused) {
      expect(field(r, 'user.name')).toBeUndefined();
      expect(field(r, 'mqtt.username')).toBe('alice');
    }
  });

  it('names a verified user as user.name, and the username it sent as mqtt.username', () => {
    const verified = of('alice-ok');
    expect(verified.map((r) => field(r, 'event.action'))).toEqual(['authn.allowed', 'client.disconnected']);
    for (const r of verified) {
      expect(field(r, 'user.name')).toBe('alice');
      expect(field(r, 'mqtt.username')).toBe('alice');
    }
  });

  async function query(...args: string[]): Promise<AuditRecord[]> {
    const result = await runCli(['audit', 'query', auditDir, ...args, '--format', 'json']);
    expect(result.code, result.stderr).toBe(0);
    return result.stdout
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as AuditRecord);
  }

  it('bulwark audit query --user finds verified identities only; --username finds what a CONNECT claimed', async () => {
    expect(await query('--user', 'admin')).toEqual([]);
    expect(await query('--username', 'admin')).toEqual(of('spoof-1'));
    expect(await query('--user', 'alice')).toEqual(of('alice-ok'));
    expect(await query('--username', 'alice')).toEqual([...of('alice-bad'), ...of('alice-ok')]);
  });

  it('never writes a password to the audit log', () => {
    const text = auditText(auditDir);
    for (const secret of [ALICE_PASSWORD, WRONG_PASSWORD]) {
      expect(text.includes(secret)).toBe(false);
      expect(text.includes(Buffer.from(secret).toString('base64'))).toBe(false);
    }
  });
});
