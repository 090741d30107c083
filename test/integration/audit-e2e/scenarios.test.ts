import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AuditRecord,
  auditText,
  byAction,
  field,
  readAuditRecords,
  startYamlBroker,
  waitForAudit,
  type YamlBroker,
} from '../../helpers/audit-e2e.js';
import { mintTestPki, type TestPki } from '../../helpers/certs.js';
import { runCli } from '../../helpers/cli.js';
import { connectClient, endAll, runMosquitto, waitClientClosed } from '../../helpers/mqtt-clients.js';
import { PacketLog, publishNoWait, subscribeCodes } from '../../helpers/packet-log.js';
import { ruleAt, tempDir, type TempDir } from '../../helpers/policy-broker.js';
import { BROKER_VERSION } from '../../../src/version.js';

// Distinctive, so a scan for them cannot match anything by accident.
const PASSWORDS = {
  alice: 'alice-Pw-7f3Kq9ZxRt2',
  bob: 'bob-Pw-Lm4Vn8Yc1Hs6',
  carol: 'carol-Pw-Qd5Tg2Wj9Xe',
};
const WRONG_PASSWORD = 'wrong-Pw-Bz8Ku3Np6Af';
const DAVE_PASSWORD = 'dave-Pw-Hc6Rx1Mv4Ua';

const POLICY = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about topic rules; every client may connect.

  - name: alice-sensors
    allow: [publish, subscribe, receive]
    subjects: { users: [alice] }
    topics: ['sensors/#']

  - name: no-forbidden
    deny: publish
    subjects: all
    topics: ['sensors/forbidden/#']

  - name: readers-subscribe
    allow: subscribe
    subjects: { users: [bob, carol] }
    topics: ['sensors/#']

  - name: readers-receive
    allow: receive
    subjects: { users: [bob, carol] }
    topics: ['sensors/#']

  - name: private-hidden
    deny: receive
    subjects: { users: [bob] }
    topics: ['sensors/private/#']
`;

// Readers narrowed to bob (carol's live subscription is revoked), and a rule added.
const POLICY_EDITED = `${POLICY.replace('subjects: { users: [bob, carol] }\n    topics', 'subjects: { users: [bob] }\n    topics')}
  - name: carol-publishes
    allow: publish
    subjects: { users: [carol] }
    topics: ['sensors/carol/#']
`;

// `alow` on line 13, column 5: a typo the loader must refuse with file:line:column.
const POLICY_BROKEN = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about topic rules; every client may connect.

  - name: alice-sensors
    allow: [publish, subscribe, receive]
    subjects: { users: [alice] }
    topics: ['sensors/#']
  - name: typo
    alow: publish
    subjects: all
    topics: ['x/#']
`;

/** Replaces a file atomically, so a reload never reads it half written. */
function replaceFile(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

/** A TLS handshake the broker is expected to refuse; resolves once the connection is gone either way. */
function tlsAttempt(port: number, caFile: string, credential: { certFile: string; keyFile: string }): Promise<void> {
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: readFileSync(caFile),
      cert: readFileSync(credential.certFile),
      key: readFileSync(credential.keyFile),
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
    // Under TLS 1.3 the client learns of the refusal only when it reads: send something to provoke the alert.
    socket.on('secureConnect', () => socket.write(Buffer.from([0x10, 0x00])));
  });
}

describe('the audit log of a real broker process driven by real clients', () => {
  let dir: TempDir;
  let pki: TestPki;
  let broker: YamlBroker | undefined;
  let policyFile: string;
  let serverCert = '';
  let serverKey = '';
  let dataDir: string;
  let auditDir: string;
  let records: AuditRecord[] = [];
  let brokerOutput = '';
  let brokerPorts: Record<string, number> = {};
  let configText = '';
  let cliOutput = '';
  let policyRules: Record<string, string> = {};
  const uid = process.getuid?.() ?? 0;

  beforeAll(async () => {
    dir = tempDir('bulwark-audit-e2e-');
    pki = await mintTestPki();
    dataDir = dir.file('data');
    auditDir = `${dataDir}/audit`;
    const usersFile = dir.file('users.yaml');
    for (const [user, password] of Object.entries(PASSWORDS)) {
      const added = await runCli(['passwd', usersFile, 'add', user, '--password-stdin'], { input: `${password}\n` });
      cliOutput += added.stdout + added.stderr;
      expect(added.code, added.stderr).toBe(0);
    }
    policyFile = dir.write('site.policy.yaml', POLICY);
    // The server certificate in a folder of its own, so that it can be replaced to provoke a TLS reload.
    mkdirSync(dir.file('tls'));
    serverCert = dir.write('tls/server.crt', readFileSync(pki.server.chainFile, 'utf8'));
    serverKey = dir.write('tls/server.key', readFileSync(pki.server.keyFile, 'utf8'));
    policyRules = Object.fromEntries(
      ['no-forbidden', 'private-hidden', 'alice-sensors'].map((n) => [n, ruleAt(policyFile, n)]),
    );
    const config = dir.write(
      'bulwark.yaml',
      [
        `data_dir: ${JSON.stringify(dataDir)}`,
        'sys_interval_seconds: 0',
        'persistence: { durability: none }',
        'listeners:',
        '  - { name: main, transport: tcp, host: 127.0.0.1, port: 0 }',
        '  - name: lb',
        '    transport: tcp',
        '    host: 127.0.0.1',
        '    port: 0',
        "    proxy_protocol: { enabled: true, trusted_proxies: ['127.0.0.1'] }",
        '  - name: secure',
        '    transport: tls',
        '    host: 127.0.0.1',
        '    port: 0',
        '    tls:',
        `      cert_file: ${JSON.stringify(serverCert)}`,
        `      key_file: ${JSON.stringify(serverKey)}`,
        `      ca_file: ${JSON.stringify(pki.caFile)}`,
        '      require_certificate: true',
        'authentication:',
        '  steps:',
        `    - { type: password-file, id: users, file: ${JSON.stringify(usersFile)} }`,
        'authorization:',
        `  policy_files: [${JSON.stringify(policyFile)}]`,
        '  watch: false',
        '',
      ].join('\n'),
    );
    configText = readFileSync(config, 'utf8');
    broker = await startYamlBroker(config);
    const url = `mqtt://127.0.0.1:${broker.ports['main']}`;
    const tlsUrl = `mqtts://127.0.0.1:${broker.ports['secure']}`;
    const has = (action: string, extra: (r: AuditRecord) => boolean = () => true) =>
      waitForAudit(auditDir, (r) => field(r, 'event.action') === action && extra(r), action);

    // authn.allowed, then authz.publish_denied and authz.subscribe_denied, then client.disconnected.
    const alice = await connectClient(url, {
      clientId: 'alice-1',
      username: 'alice',
      password: PASSWORDS.alice,
      protocolVersion: 5,
    });
    const log = new PacketLog(alice.client);
    const id = await publishNoWait(alice.client, 'sensors/forbidden/x', 'nope', { qos: 1 });
    expect((await log.ack('puback', id!)).reasonCode).toBe(0x87);
    expect(await subscribeCodes(alice.client, log, { 'admin/#': { qos: 1 } })).toEqual([0x87]);
    await endAll(alice.client);
    await has('client.disconnected', (r) => field(r, 'mqtt.client_id') === 'alice-1');

    // authn.denied: a wrong password.
    await expect(
      connectClient(url, { clientId: 'alice-2', username: 'alice', password: WRONG_PASSWORD, protocolVersion: 5 }),
    ).rejects.toThrow();
    await has('authn.denied', (r) => field(r, 'mqtt.client_id') === 'alice-2');

    // authz.will_denied: a will on a topic the policy denies refuses the CONNECT.
    await expect(
      connectClient(url, {
        clientId: 'alice-will',
        username: 'alice',
        password: PASSWORDS.alice,
        protocolVersion: 5,
        will: { topic: 'sensors/forbidden/will', payload: Buffer.from('gone'), qos: 0, retain: false },
      }),
    ).rejects.toThrow();
    await has('authz.will_denied');

    // authz.receive_denied: mosquitto_pub stores a retained message bob may not receive; bob subscribes.
    const pub = await runMosquitto('mosquitto_pub', [
      ...['-h', '127.0.0.1', '-p', String(broker.ports['main']), '-V', 'mqttv5', '-q', '1', '-r'],
      ...['-i', 'alice-mosq', '-u', 'alice', '-P', PASSWORDS.alice, '-t', 'sensors/private/door', '-m', 'closed'],
    ]);
    expect(pub.code, pub.stderr).toBe(0);
    const bob = await connectClient(url, {
      clientId: 'bob-1',
      username: 'bob',
      password: PASSWORDS.bob,
      protocolVersion: 5,
    });
    await bob.client.subscribeAsync('sensors/#', { qos: 1 });
    await has('authz.receive_denied');

    // guard.banned through the admin socket disconnects bob; admin.command names the operator.
    const banned = await runCli([
      ...['ban', 'add', '--client-id', 'bob-1', '--for', '1h', '--reason', 'e2e ban'],
      ...['--data-dir', dataDir],
    ]);
    cliOutput += banned.stdout + banned.stderr;
    expect(banned.code, banned.stderr).toBe(0);
    expect(banned.stdout + banned.stderr).toContain('through the running broker');
    await waitClientClosed(bob.client);
    await has('client.disconnected', (r) => field(r, 'mqtt.client_id') === 'bob-1');
    await endAll(bob.client);

    // guard.blocked: the banned client id tries again; guard.unbanned: the operator lifts the ban.
    await expect(
      connectClient(url, { clientId: 'bob-1', username: 'bob', password: PASSWORDS.bob, protocolVersion: 5 }),
    ).rejects.toThrow();
    await has('guard.blocked');
    const unbanned = await runCli(['ban', 'delete', '--client-id', 'bob-1', '--data-dir', dataDir]);
    cliOutput += unbanned.stdout + unbanned.stderr;
    expect(unbanned.code, unbanned.stderr).toBe(0);
    await has('guard.unbanned');

    // guard.throttled: five wrong passwords for one username (the default limit); the sixth try is refused early.
    for (let i = 0; i < 5; i++)
      await expect(
        connectClient(url, { clientId: `eve-${i}`, username: 'eve', password: WRONG_PASSWORD, protocolVersion: 5 }),
      ).rejects.toThrow();
    await has('guard.throttled');
    await expect(
      connectClient(url, { clientId: 'eve-5', username: 'eve', password: WRONG_PASSWORD, protocolVersion: 5 }),
    ).rejects.toThrow();
    await has('guard.throttle_refused');

    // credentials.reloaded: a user added with `bulwark passwd` while the broker runs.
    const added = await runCli(['passwd', usersFile, 'add', 'dave', '--password-stdin'], { input: DAVE_PASSWORD });
    cliOutput += added.stdout + added.stderr;
    expect(added.code, added.stderr).toBe(0);
    await has('credentials.reloaded');

    // tls.handshake_refused: an expired client certificate on the mTLS listener; then a good one with a password.
    await tlsAttempt(broker.ports['secure']!, pki.caFile, pki.clients.expired);
    await has('tls.handshake_refused');
    const carol = await connectClient(tlsUrl, {
      clientId: 'carol-tls',
      username: 'carol',
      password: PASSWORDS.carol,
      protocolVersion: 5,
      ca: readFileSync(pki.caFile),
      cert: readFileSync(pki.clients.good.certFile),
      key: readFileSync(pki.clients.good.keyFile),
    });
    await endAll(carol.client);

    // proxy.header_refused: a malformed PROXY v1 header from a trusted proxy.
    await new Promise<void>((resolve) => {
      const socket = netConnect(broker!.ports['lb']!, '127.0.0.1', () =>
        socket.write('PROXY TCP4 999.1.1.1 127.0.0.1 5000 1883\r\n'),
      );
      socket.on('error', () => undefined);
      socket.on('close', () => resolve());
    });
    await has('proxy.header_refused');

    // tls.reloaded: the server certificate replaced on disk.
    replaceFile(serverKey, readFileSync(pki.serverRotated.keyFile, 'utf8'));
    replaceFile(serverCert, readFileSync(pki.serverRotated.chainFile, 'utf8'));
    await has('tls.reloaded');

    // authz.subscription_revoked: carol's live subscription loses its rule in the reload below.
    const carolLive = await connectClient(url, {
      clientId: 'carol-live',
      username: 'carol',
      password: PASSWORDS.carol,
      protocolVersion: 5,
    });
    await carolLive.client.subscribeAsync('sensors/#', { qos: 0 });

    // policy.reloaded after an edit and SIGHUP; policy.reload_failed for a broken file.
    replaceFile(policyFile, POLICY_EDITED);
    broker.child.kill('SIGHUP');
    await has('policy.reloaded', (r) => field(r, 'labels.trigger') === 'sighup');
    await has('authz.subscription_revoked');
    await endAll(carolLive.client);
    replaceFile(policyFile, POLICY_BROKEN);
    broker.child.kill('SIGHUP');
    await has('policy.reload_failed');

    expect(await broker.stop()).toBe(0);
    brokerOutput = broker.output();
    brokerPorts = broker.ports;
    records = readAuditRecords(auditDir);
  }, 60_000);

  afterAll(async () => {
    await broker?.kill9();
    pki?.cleanup();
    dir?.cleanup();
  });

  function one(action: string, where: (r: AuditRecord) => boolean = () => true): AuditRecord {
    const found = byAction(records, action).find(where);
    expect(found, `no ${action} record`).toBeDefined();
    return found!;
  }

  it('verifies as intact with the public key written beside the signing key', async () => {
    const result = await runCli(['audit', 'verify', auditDir, '--public-key', `${dataDir}/audit-signing.pub`]);
    expect(result.stdout, result.stderr).toMatch(/^OK \d+ files?, \d+ records/);
    expect(result.stdout).toContain('signed by trusted key');
    expect(result.code).toBe(0);
  });

  it('records broker.started before any client event and ends with broker.stopped and a shutdown checkpoint', () => {
    expect(records[0]!['seq']).toBe(1);
    expect(records[0]!['prev_hash']).toBe('0'.repeat(64));
    const started = one('broker.started');
    expect(field(started, 'event.outcome')).toBe('success');
    // The fields docs/audit.md lists for it: which build, where it listened, from which configuration file.
    expect(field(started, 'labels.version')).toBe(BROKER_VERSION);
    expect(field(started, 'labels.listeners')).toBe(
      ['main', 'lb', 'secure'].map((name) => `${name}:${brokerPorts[name]}`).join(','),
    );
    expect(field(started, 'labels.config_hash')).toBe(createHash('sha256').update(configText).digest('hex'));
    expect(field(started, 'event.reason')).toBe('listening on 3 listeners');
    const firstClientEvent = records.find((r) => field(r, 'client.ip') !== undefined)!;
    expect(started['seq'] as number).toBeLessThan(firstClientEvent['seq'] as number);
    const last = records.at(-1)!;
    expect(field(last, 'event.action')).toBe('audit.checkpoint');
    expect(field(last, 'audit.reason')).toBe('shutdown');
    expect(field(last, 'audit.checkpoint.seq')).toBe(records.at(-2)!['seq']);
    expect(field(records.at(-2)!, 'event.action')).toBe('broker.stopped');
    expect(field(records.at(-2)!, 'event.outcome')).toBe('success');
    // The test stops the broker with SIGTERM: the reason is the signal.
    expect(field(records.at(-2)!, 'event.reason')).toBe('SIGTERM');
    expect(field(records.at(-2)!, 'labels.uptime_s')).toMatch(/^\d+$/);
    records.forEach((r, i) => expect(r['seq']).toBe(i + 1));
  });

  it('records an allowed connect with every authenticator step consulted', () => {
    const r = one('authn.allowed', (x) => field(x, 'mqtt.client_id') === 'alice-1');
    expect(field(r, 'event.outcome')).toBe('success');
    expect(field(r, 'user.name')).toBe('alice');
    expect(field(r, 'client.ip')).toMatch(/127\.0\.0\.1$/);
    expect(typeof field(r, 'client.port')).toBe('number');
    expect(field(r, 'mqtt.listener')).toBe('main');
    expect(field(r, 'mqtt.protocol_version')).toBe(5);
    expect(field(r, 'mqtt.reason_code')).toBe(0);
    expect(field(r, 'authn.by')).toBe('users');
    const steps = field(r, 'authn.steps') as Record<string, unknown>[];
    expect(steps).toHaveLength(1);
    expect(steps[0]).toMatchObject({ id: 'users', type: 'password-file', answer: 'allow' });
    expect(typeof steps[0]!['duration_ms']).toBe('number');
  });

  it('records a refused connect with its reason and the reason code sent', () => {
    const r = one('authn.denied', (x) => field(x, 'mqtt.client_id') === 'alice-2');
    expect(field(r, 'event.outcome')).toBe('failure');
    expect(field(r, 'event.code')).toBe('badUserNameOrPassword');
    expect(field(r, 'mqtt.reason_code')).toBe(0x86);
    // Refused, so nobody verified alice: what the client claimed is kept, apart from any identity.
    expect(field(r, 'user.name')).toBeUndefined();
    expect(field(r, 'mqtt.username')).toBe('alice');
    expect(typeof field(r, 'event.reason')).toBe('string');
    expect(field(r, 'authn.by')).toBe('users');
    const steps = field(r, 'authn.steps') as Record<string, unknown>[];
    expect(steps[0]).toMatchObject({ id: 'users', type: 'password-file', answer: 'deny' });
  });

  it('records a disconnect with its reason', () => {
    const r = one('client.disconnected', (x) => field(x, 'mqtt.client_id') === 'alice-1');
    expect(field(r, 'user.name')).toBe('alice');
    expect(field(r, 'mqtt.listener')).toBe('main');
    expect(typeof field(r, 'event.reason')).toBe('string');
    expect(String(field(r, 'event.reason')).length).toBeGreaterThan(0);
  });

  it('records a publish denial with the deciding rule as file:line', () => {
    const r = one('authz.publish_denied');
    expect(field(r, 'event.outcome')).toBe('failure');
    expect(field(r, 'event.code')).toBe('notAuthorized');
    expect(field(r, 'mqtt.topic')).toBe('sensors/forbidden/x');
    expect(field(r, 'mqtt.qos')).toBe(1);
    expect(field(r, 'mqtt.client_id')).toBe('alice-1');
    expect(field(r, 'user.name')).toBe('alice');
    expect(field(r, 'authz.rule')).toBe(policyRules['no-forbidden']);
    expect(field(r, 'authz.rule_name')).toBe('no-forbidden');
    expect(field(r, 'mqtt.payload')).toBeUndefined();
  });

  it('records a subscribe denial decided by default-deny', () => {
    const r = one('authz.subscribe_denied');
    expect(field(r, 'event.outcome')).toBe('failure');
    expect(field(r, 'mqtt.topic')).toBe('admin/#');
    expect(field(r, 'mqtt.client_id')).toBe('alice-1');
    expect(field(r, 'user.name')).toBe('alice');
    // docs/audit.md: `authz.rule` is "the deciding rule as file:line, or default-deny".
    expect(field(r, 'authz.rule')).toBe('default-deny');
  });

  it('records a will denial naming the rule', () => {
    const r = one('authz.will_denied');
    expect(field(r, 'event.outcome')).toBe('failure');
    expect(field(r, 'mqtt.topic')).toBe('sensors/forbidden/will');
    expect(field(r, 'mqtt.client_id')).toBe('alice-will');
    expect(field(r, 'user.name')).toBe('alice');
    expect(field(r, 'authz.rule')).toBe(policyRules['no-forbidden']);
    // The will is refused at CONNECT: recorded once, not once per path.
    expect(byAction(records, 'authz.will_denied')).toHaveLength(1);
  });

  it('records a retained message withheld from a subscriber as a receive denial', () => {
    const r = one('authz.receive_denied');
    expect(field(r, 'mqtt.topic')).toBe('sensors/private/door');
    expect(field(r, 'mqtt.retain')).toBe(true);
    expect(field(r, 'authz.action')).toBe('receive');
    // authz.retained_denied means a retained PUBLISH refused retention, which this was not.
    expect(byAction(records, 'authz.retained_denied')).toEqual([]);
    expect(field(r, 'mqtt.client_id')).toBe('bob-1');
    expect(field(r, 'user.name')).toBe('bob');
    expect(field(r, 'authz.rule')).toBe(policyRules['private-hidden']);
  });

  it('records the ban, the operator command that made it, and the disconnect it caused', () => {
    const ban = one('guard.banned', (x) => field(x, 'guard.key') === 'bob-1');
    expect(field(ban, 'event.outcome')).toBe('success');
    expect(field(ban, 'guard.dimension')).toBe('client_id');
    expect(field(ban, 'actor')).toBe(`cli:${uid}@unix-socket`);
    expect(Date.parse(String(field(ban, 'guard.until')))).toBeGreaterThan(Date.parse(String(ban['@timestamp'])));
    const admin = one('admin.command', (x) => field(x, 'labels.command') === 'ban.add');
    expect(field(admin, 'actor')).toBe(`cli:${uid}@unix-socket`);
    expect(field(admin, 'event.outcome')).toBe('success');
    expect(field(admin, 'labels.channel')).toBe('unix-socket');
    const gone = one('client.disconnected', (x) => field(x, 'mqtt.client_id') === 'bob-1');
    expect(gone['seq'] as number).toBeGreaterThan(ban['seq'] as number);
    expect(String(field(gone, 'event.reason'))).toMatch(/administrative|banned/i);
  });

  it('records a connect refused by the ban, and the ban lifted by the operator', () => {
    const blocked = one('guard.blocked');
    expect(field(blocked, 'event.outcome')).toBe('failure');
    expect(field(blocked, 'event.code')).toBe('banned');
    expect(field(blocked, 'mqtt.client_id')).toBe('bob-1');
    expect(field(blocked, 'guard.key')).toBe('bob-1');
    expect(field(blocked, 'guard.dimension')).toBe('client_id');
    // Recorded once: the CONNECT step does not add a second authn.denied for the same refusal.
    expect(byAction(records, 'guard.blocked')).toHaveLength(1);
    const lifted = one('guard.unbanned');
    expect(field(lifted, 'guard.key')).toBe('bob-1');
    expect(field(lifted, 'guard.dimension')).toBe('client_id');
    expect(field(lifted, 'actor')).toBe(`cli:${uid}@unix-socket`);
    expect(one('admin.command', (x) => field(x, 'labels.command') === 'ban.delete')).toBeDefined();
  });

  it('records the brute-force lockout and the attempt it refused', () => {
    const locked = one('guard.throttled');
    expect(field(locked, 'guard.dimension')).toBe('username');
    expect(field(locked, 'guard.key')).toBe('eve');
    expect(field(locked, 'guard.count')).toBe(5);
    expect(field(locked, 'actor')).toBe('guard:throttle');
    expect(byAction(records, 'authn.denied').filter((r) => field(r, 'mqtt.username') === 'eve')).toHaveLength(5);
    const refused = one('guard.throttle_refused');
    expect(field(refused, 'mqtt.client_id')).toBe('eve-5');
    // eve was never verified: the lockout records name her only as claimed.
    for (const r of [locked, refused]) {
      expect(field(r, 'mqtt.username')).toBe('eve');
      expect(field(r, 'user.name')).toBeUndefined();
    }
    expect(field(refused, 'event.code')).toBe('connectionRateExceeded');
  });

  it('records a credentials reload with the new content hash', () => {
    const r = one('credentials.reloaded');
    expect(field(r, 'event.outcome')).toBe('success');
    expect(String(field(r, 'policy.file'))).toContain('users.yaml');
    expect(field(r, 'policy.new_hash')).toBeDefined();
    expect(field(r, 'policy.new_hash')).not.toBe(field(r, 'policy.old_hash'));
  });

  it('records a refused TLS handshake with the OpenSSL reason', () => {
    const r = one('tls.handshake_refused');
    expect(field(r, 'event.outcome')).toBe('failure');
    expect(field(r, 'mqtt.listener')).toBe('secure');
    expect(field(r, 'client.ip')).toMatch(/127\.0\.0\.1$/);
    expect(field(r, 'tls.error')).toBe('CERT_HAS_EXPIRED');
    expect(typeof field(r, 'event.reason')).toBe('string');
  });

  it('records the TLS client that got in on the TLS listener', () => {
    const r = one('authn.allowed', (x) => field(x, 'mqtt.client_id') === 'carol-tls');
    expect(field(r, 'mqtt.listener')).toBe('secure');
    expect(field(r, 'user.name')).toBe('carol');
  });

  it('records a PROXY header refused with its reason', () => {
    const r = one('proxy.header_refused');
    expect(field(r, 'event.outcome')).toBe('failure');
    expect(field(r, 'mqtt.listener')).toBe('lb');
    expect(field(r, 'client.ip')).toMatch(/127\.0\.0\.1$/);
    expect(typeof field(r, 'event.code')).toBe('string');
    expect(typeof field(r, 'event.reason')).toBe('string');
  });

  it('records a certificate reload with the new certificate', () => {
    const r = one('tls.reloaded');
    expect(field(r, 'event.outcome')).toBe('success');
    expect(field(r, 'mqtt.listener')).toBe('secure');
    expect(field(r, 'tls.fingerprint')).toBe(pki.serverRotated.fingerprint256);
  });

  it('records a live subscription revoked by a policy reload', () => {
    const r = one('authz.subscription_revoked');
    expect(field(r, 'mqtt.client_id')).toBe('carol-live');
    expect(field(r, 'mqtt.topic')).toBe('sensors/#');
    expect(field(r, 'user.name')).toBe('carol');
    const reload = one('policy.reloaded', (x) => field(x, 'labels.trigger') === 'sighup');
    expect(r['seq'] as number).toBeGreaterThan(reload['seq'] as number);
  });

  it('records a policy reload with the old and the new content hash', () => {
    const startup = one('policy.reloaded', (x) => field(x, 'labels.trigger') === 'startup');
    const r = one('policy.reloaded', (x) => field(x, 'labels.trigger') === 'sighup');
    expect(field(r, 'event.outcome')).toBe('success');
    expect(field(r, 'policy.file')).toBe(policyFile);
    // docs/audit.md shows `sha256:<hex>`; the broker writes bare hex. Either names a SHA-256.
    expect(field(r, 'policy.old_hash')).toMatch(/^(sha256:)?[0-9a-f]{64}$/);
    expect(field(r, 'policy.new_hash')).toMatch(/^(sha256:)?[0-9a-f]{64}$/);
    expect(field(r, 'policy.old_hash')).toBe(field(startup, 'policy.new_hash'));
    expect(field(r, 'policy.old_hash')).not.toBe(field(r, 'policy.new_hash'));
  });

  it('names the signal as the actor of a reload it triggered', () => {
    // docs/audit.md: actor is `signal:SIGHUP` for a reload on SIGHUP (example of policy.reload_failed).
    for (const r of [
      one('policy.reloaded', (x) => field(x, 'labels.trigger') === 'sighup'),
      one('policy.reload_failed'),
    ])
      expect(field(r, 'actor')).toBe('signal:SIGHUP');
  });

  it('records a refused policy reload with file:line:column', () => {
    const r = one('policy.reload_failed');
    expect(field(r, 'event.outcome')).toBe('failure');
    const error = String(field(r, 'policy.error'));
    expect(error.startsWith(`${policyFile}:13:5: `), error).toBe(true);
    expect(error).toContain('alow');
    expect(field(r, 'policy.file')).toBe(policyFile);
    // The old rules stay live: the hash kept is the one the SIGHUP reload put in force.
    const reloaded = one('policy.reloaded', (x) => field(x, 'labels.trigger') === 'sighup');
    expect(field(r, 'policy.old_hash')).toBe(field(reloaded, 'policy.new_hash'));
  });

  it('finds the publish denial with bulwark audit query', async () => {
    const result = await runCli(['audit', 'query', auditDir, '--action', 'authz.publish_denied', '--format', 'json']);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const found = JSON.parse(lines[0]!) as AuditRecord;
    expect(found).toEqual(one('authz.publish_denied'));
    // json prints the stored line unchanged, so its hash can be checked.
    expect(auditText(auditDir)).toContain(lines[0]!);
  });

  it('finds the withheld retained message with bulwark audit query --action authz.receive_denied', async () => {
    const result = await runCli(['audit', 'query', auditDir, '--action', 'authz.receive_denied', '--format', 'json']);
    expect(result.code, result.stderr).toBe(0);
    const found = result.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditRecord);
    expect(found).toEqual([one('authz.receive_denied')]);
  });

  it('never writes a private key to the audit log or the broker output', () => {
    const keyBodies = [
      pki.server.keyFile,
      pki.serverRotated.keyFile,
      pki.clients.good.keyFile,
      `${dataDir}/audit-signing.key`,
    ]
      .map((f) => readFileSync(f, 'utf8').replace(/-----[^-]+-----|\s/g, ''))
      .map((body) => body.slice(0, 40));
    for (const body of keyBodies) {
      expect(body.length).toBe(40);
      for (const text of [auditText(auditDir), brokerOutput]) expect(text.includes(body)).toBe(false);
    }
  });

  it('never writes a test password to the audit log, the broker output or the CLI output', () => {
    const everything = [auditText(auditDir), brokerOutput, cliOutput];
    expect(everything[0]!.length).toBeGreaterThan(0);
    for (const secret of [...Object.values(PASSWORDS), WRONG_PASSWORD, DAVE_PASSWORD]) {
      for (const text of everything) expect(text.includes(secret), `found a test password`).toBe(false);
      const b64 = Buffer.from(secret).toString('base64');
      for (const text of everything) expect(text.includes(b64), `found a base64 test password`).toBe(false);
    }
  });

  it('lists every event type the issue names that this run produced', () => {
    const produced = new Set(records.map((r) => String(field(r, 'event.action'))));
    for (const action of [
      'broker.started',
      'broker.stopped',
      'authn.allowed',
      'authn.denied',
      'client.disconnected',
      'authz.publish_denied',
      'authz.subscribe_denied',
      'authz.will_denied',
      'authz.receive_denied',
      'guard.banned',
      'admin.command',
      'policy.reloaded',
      'policy.reload_failed',
      'tls.handshake_refused',
      'guard.blocked',
      'guard.unbanned',
      'guard.throttled',
      'guard.throttle_refused',
      'credentials.reloaded',
      'proxy.header_refused',
      'tls.reloaded',
      'authz.subscription_revoked',
      'audit.checkpoint',
    ])
      expect(produced.has(action), action).toBe(true);
  });
});
