import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../../../audit/verify.js';
import {
  auditText,
  byAction,
  field,
  readAuditRecords,
  startYamlBroker,
  waitForAudit,
  type AuditRecord,
  type YamlBroker,
} from '../../helpers/audit-e2e.js';
import { es256Key, JwksServer, signToken, tryConnect, type SigningKey } from '../../helpers/authn-wire.js';
import { endAll } from '../../helpers/mqtt-clients.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';

const POLICY = `version: 1
rules:
  - name: jwt-connect
    allow: connect
    subjects: all
    why: Every client with a valid token may connect; these tests are about what the audit log keeps.
  - name: devices
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['devices/#']
`;

const nowS = (): number => Math.floor(Date.now() / 1000);

/** Every file under a directory, as bytes decoded loosely: a secret in any of them is a leak. */
function everyFileText(dir: string): string {
  let out = '';
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    out += statSync(path).isDirectory() ? everyFileText(path) : readFileSync(path, 'latin1');
  }
  return out;
}

/** A compact JWS and every part of it that would betray it: the whole, header.payload, and the signature. */
function tokenNeedles(token: string): string[] {
  const [header, payload, signature] = token.split('.') as [string, string, string];
  return [token, `${header}.${payload}`, signature];
}

/** The private key as a JWK `d` and as the base64 lines of its PEM. */
function keyNeedles(key: SigningKey): string[] {
  const jwk = key.privateKey.export({ format: 'jwk' });
  const pem = key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const body = pem.split('\n').filter((l) => l !== '' && !l.startsWith('-----'));
  return [String(jwk.d), ...body];
}

describe('JWT authentication in the audit log of a real broker process', () => {
  let dir: TempDir;
  let jwks: JwksServer;
  let broker: YamlBroker | undefined;
  let auditDir: string;
  let issuer: SigningKey;
  let forger: SigningKey;
  const tokens: Record<'valid' | 'expired' | 'forged', string> = { valid: '', expired: '', forged: '' };
  const codes: Record<string, number> = {};
  let records: AuditRecord[] = [];
  let output = '';

  beforeAll(async () => {
    dir = tempDir('bulwark-audit-e2e-jwt-');
    jwks = new JwksServer();
    const jwksUrl = await jwks.start();
    issuer = await es256Key('idp-key-1');
    // The forger signs with its own key but names the issuer's key id: a bad signature, not an unknown kid.
    forger = await es256Key('idp-key-1');
    jwks.keys = [issuer.jwk];
    tokens.valid = await signToken(issuer, 'sensor-42', nowS() + 600);
    tokens.expired = await signToken(issuer, 'sensor-43', nowS() - 600);
    tokens.forged = await signToken(forger, 'sensor-44', nowS() + 600);

    const policyFile = dir.write('jwt.policy.yaml', POLICY);
    const dataDir = dir.file('data');
    auditDir = join(dataDir, 'audit');
    const configFile = dir.write(
      'bulwark.yaml',
      [
        `data_dir: ${JSON.stringify(dataDir)}`,
        'sys_interval_seconds: 0',
        'persistence: { durability: none }',
        'listeners:',
        '  - { name: main, transport: tcp, host: 127.0.0.1, port: 0 }',
        // Here the token travels in the User Name: the field every record and log line would otherwise show.
        '  - name: by-username',
        '    transport: tcp',
        '    host: 127.0.0.1',
        '    port: 0',
        '    authentication:',
        '      anonymous: false',
        '      steps:',
        '        - type: jwt',
        '          token_from: username',
        '          algorithms: [ES256]',
        `          jwks_url: ${JSON.stringify(jwksUrl)}`,
        '          issuer: idp',
        '          audience: bulwark',
        '          clock_skew_s: 0',
        'authentication:',
        '  anonymous: false',
        '  steps:',
        '    - type: jwt',
        '      algorithms: [ES256]',
        `      jwks_url: ${JSON.stringify(jwksUrl)}`,
        '      issuer: idp',
        '      audience: bulwark',
        '      clock_skew_s: 0',
        'authorization:',
        `  policy_files: [${JSON.stringify(policyFile)}]`,
        '  watch: false',
        '',
      ].join('\n'),
    );
    broker = await startYamlBroker(configFile);
    const url = `mqtt://127.0.0.1:${broker.ports.main}`;

    for (const [name, token, version] of [
      ['valid', tokens.valid, 5],
      ['expired', tokens.expired, 5],
      ['forged', tokens.forged, 5],
      ['valid-v4', tokens.valid, 4],
      ['expired-v4', tokens.expired, 4],
    ] as const) {
      const attempt = await tryConnect(url, {
        protocolVersion: version,
        clientId: `jwt-${name}`,
        username: 'token',
        password: token,
      });
      codes[name] = attempt.code;
      await endAll(attempt.client);
    }
    const byUsername = `mqtt://127.0.0.1:${broker.ports['by-username']}`;
    for (const [name, token] of [
      ['user-valid', tokens.valid],
      ['user-expired', tokens.expired],
    ] as const) {
      const attempt = await tryConnect(byUsername, { protocolVersion: 5, clientId: `jwt-${name}`, username: token });
      codes[name] = attempt.code;
      await endAll(attempt.client);
    }
    await waitForAudit(
      auditDir,
      (r) => field(r, 'event.action') === 'authn.denied' && field(r, 'mqtt.client_id') === 'jwt-user-expired',
      'the last refusal',
    );
    expect(await broker.stop()).toBe(0);
    output = broker.output();
    records = readAuditRecords(auditDir);
  });

  afterAll(async () => {
    await broker?.stop();
    await jwks?.stop();
    dir?.cleanup();
  });

  const oneFor = (action: string, clientId: string): AuditRecord => {
    const found = byAction(records, action).filter((r) => field(r, 'mqtt.client_id') === clientId);
    expect(found, `${action} for ${clientId}`).toHaveLength(1);
    return found[0] as AuditRecord;
  };

  it('a valid token connects and is recorded as authn.allowed with the subject as user name', () => {
    expect(codes.valid).toBe(0);
    expect(codes['valid-v4']).toBe(0);
    for (const clientId of ['jwt-valid', 'jwt-valid-v4']) {
      const r = oneFor('authn.allowed', clientId);
      expect(field(r, 'event.outcome')).toBe('success');
      expect(field(r, 'user.name')).toBe('sensor-42');
      expect(field(r, 'authn.steps')).toEqual([expect.objectContaining({ type: 'jwt', answer: 'allow' })]);
    }
  });

  it('names the token subject as user.name in every record of the connection, and the CONNECT username apart', () => {
    // The client sent username "token"; the identity the token verified is sensor-42.
    const connection = records.filter((r) => field(r, 'mqtt.client_id') === 'jwt-valid');
    expect(connection.map((r) => field(r, 'event.action'))).toEqual(['authn.allowed', 'client.disconnected']);
    for (const r of connection) {
      expect(field(r, 'user.name')).toBe('sensor-42');
      expect(field(r, 'mqtt.username')).toBe('token');
    }
    const refused = oneFor('authn.denied', 'jwt-expired');
    expect(field(refused, 'user')).toBeUndefined();
    expect(field(refused, 'mqtt.username')).toBe('token');
  });

  it('a token sent as the User Name is read, never recorded: no mqtt.username on any record of it', () => {
    expect(codes['user-valid']).toBe(0);
    expect(codes['user-expired']).toBe(0x86);
    const connection = records.filter((r) => field(r, 'mqtt.client_id') === 'jwt-user-valid');
    expect(connection.map((r) => field(r, 'event.action'))).toEqual(['authn.allowed', 'client.disconnected']);
    for (const r of connection) {
      expect(field(r, 'user.name')).toBe('sensor-42');
      expect(field(r, 'mqtt.username')).toBeUndefined();
    }
    const refused = oneFor('authn.denied', 'jwt-user-expired');
    expect(field(refused, 'mqtt.username')).toBeUndefined();
    // The broker did log both connections, without the User Name: the leak check below covers the text.
    expect(output).toMatch(/jwt-user-valid/);
    expect(output).toMatch(/jwt-user-expired/);
  });

  it('an expired token is refused as bad credentials and recorded with the failed check', () => {
    expect(codes.expired).toBe(0x86);
    expect(codes['expired-v4']).toBe(4);
    for (const clientId of ['jwt-expired', 'jwt-expired-v4']) {
      const r = oneFor('authn.denied', clientId);
      expect(field(r, 'event.outcome')).toBe('failure');
      expect(field(r, 'event.code')).toBe('badUserNameOrPassword');
      const steps = field(r, 'authn.steps') as Array<{ type: string; answer: string; detail?: string }>;
      expect(steps).toHaveLength(1);
      expect(steps[0]).toMatchObject({ type: 'jwt', answer: 'deny' });
      expect(steps[0]?.detail).toMatch(/\bexp\b/);
    }
  });

  it('a token signed with another key is refused and recorded as a signature failure', () => {
    expect(codes.forged).toBe(0x86);
    const r = oneFor('authn.denied', 'jwt-forged');
    expect(field(r, 'event.code')).toBe('badUserNameOrPassword');
    const steps = field(r, 'authn.steps') as Array<{ type: string; answer: string; detail?: string }>;
    expect(steps[0]).toMatchObject({ type: 'jwt', answer: 'deny' });
    expect(steps[0]?.detail).toMatch(/SIGNATURE/);
  });

  it('no token, token part or signing key appears in the audit directory or the broker output', () => {
    expect(auditText(auditDir).length).toBeGreaterThan(0);
    const corpus = { audit: everyFileText(auditDir), output };
    const needles = [
      ...Object.entries(tokens).flatMap(([name, t]) =>
        tokenNeedles(t).map((n, i) => ({ what: `${name} token part ${i}`, n })),
      ),
      ...keyNeedles(issuer).map((n, i) => ({ what: `issuer key part ${i}`, n })),
      ...keyNeedles(forger).map((n, i) => ({ what: `forger key part ${i}`, n })),
    ];
    // Report which secret leaked where, never the secret itself.
    const leaks = needles.flatMap(({ what, n }) =>
      Object.entries(corpus)
        .filter(([, text]) => text.includes(n))
        .map(([where]) => `${what} in ${where}`),
    );
    expect(needles.length).toBeGreaterThan(10);
    expect(leaks).toEqual([]);
  });

  it('the log of the run verifies intact', async () => {
    const result = await verifyAuditLog(auditDir);
    expect(result.kind).toBe('intact');
  });
});
