import mqtt, { type IConnackPacket, type IDisconnectPacket, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatScramCredentialLine } from '../../../authn/scram/file-store.js';
import { deriveScramCredential } from '../../../authn/scram/mechanism.js';
import { argonHash, OPEN_POLICY, SecretLedger, tryConnect, writeUsers } from '../../helpers/authn-wire.js';
import type { TestBroker } from '../../helpers/broker.js';
import { RawClient, connectPacket } from '../../helpers/raw-client.js';
import { ScramClient, scramForMqtt, type MqttAuthPacket } from '../../helpers/scram-client.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';
import { until } from '../../helpers/until.js';

const ledger = new SecretLedger();
let dir: TempDir;
let broker: TestBroker;
const scramPw = ledger.password('scram');
const filePw = ledger.password('file');
const wrongPw = ledger.password('wrong');
/** Short enough that the stall test waits briefly, long enough for a 4096-iteration exchange on a busy box. */
const CONNECT_TIMEOUT_MS = 1_500;

let seq = 0;
const cid = (): string => `scram-wire-${++seq}`;

beforeAll(async () => {
  dir = tempDir('bulwark-authn-wire-scram-');
  const lines: string[] = [];
  for (const m of ['SCRAM-SHA-256', 'SCRAM-SHA-512'] as const) {
    lines.push(formatScramCredentialLine('alice', await deriveScramCredential(scramPw, m, 4096)));
  }
  const credentials = dir.write('scram.txt', lines.join('\n') + '\n');
  const users = writeUsers(dir, 'users.yaml', { legacy: { hash: await argonHash(filePw) } });
  broker = await ledger.broker({
    config: {
      limits: { connect_timeout_ms: CONNECT_TIMEOUT_MS },
      authentication: {
        anonymous: false,
        steps: [
          { type: 'scram', id: 'scram', store: { type: 'file', path: credentials } },
          { type: 'password-file', id: 'file', file: users, unknown_user: 'deny', watch: false },
        ],
      },
      authorization: { watch: false, policy_files: [dir.write('open.policy.yaml', OPEN_POLICY)] },
    },
  });
});

afterAll(async () => {
  await broker?.stop();
  dir?.cleanup();
});

interface ScramAttempt {
  client: MqttClient;
  scram: ScramClient;
  connack?: IConnackPacket;
  code: number;
}

/** A SCRAM CONNECT as user alice; `url` and a CONNECT User Name of its own are for the refusal tests. */
function scramConnect(
  hash: 'SHA-256' | 'SHA-512',
  password: string,
  clientId = cid(),
  options: { url?: string; username?: string } = {},
): Promise<ScramAttempt> {
  const scram = new ScramClient({ hash, username: 'alice', password });
  const hooks = scramForMqtt(scram);
  const client = mqtt.connect(options.url ?? broker.url, {
    protocolVersion: 5,
    clientId,
    ...(options.username === undefined ? {} : { username: options.username }),
    reconnectPeriod: 0,
    manualConnect: true,
    properties: hooks.properties,
  });
  client.handleAuth = hooks.handleAuth as MqttClient['handleAuth'];
  return new Promise((resolve) => {
    client.once('connect', (connack) => resolve({ client, scram, connack, code: 0 }));
    client.once('error', (error: Error & { code?: number }) => {
      client.end(true);
      resolve({ client, scram, code: error.code ?? -1 });
    });
    client.connect();
  });
}

function sendAuth(client: MqttClient, packet: MqttAuthPacket): void {
  // mqtt.js has no public call for AUTH 0x19; its packet writer is what its own auth handler uses.
  (client as unknown as { _sendPacket(p: MqttAuthPacket): void })._sendPacket(packet);
}

describe('SCRAM over MQTT 5 enhanced authentication, configured from the chain', () => {
  for (const hash of ['SHA-256', 'SHA-512'] as const) {
    it(`authenticates SCRAM-${hash} end to end and the client verifies the server signature in CONNACK`, async () => {
      const clientId = cid();
      const r = await scramConnect(hash, scramPw, clientId);
      expect(r.code).toBe(0);
      expect(r.connack?.properties?.authenticationMethod).toBe(`SCRAM-${hash}`);
      expect(r.scram.verifyServerFinal(r.connack?.properties?.authenticationData)).toBe(true);
      await r.client.endAsync();
      const e = await broker.waitForAudit('authn.allowed', (x) => x.mqtt?.client_id === clientId);
      expect(e).toMatchObject({ user: { name: 'alice' }, authn: { by: 'scram', method: `SCRAM-${hash}` } });
    });
  }

  it('refuses a wrong password with CONNACK 0x87', async () => {
    const clientId = cid();
    const r = await scramConnect('SHA-256', wrongPw, clientId);
    expect(r.code).toBe(0x87);
    const e = await broker.waitForAudit('authn.denied', (x) => x.mqtt?.client_id === clientId);
    expect(e.authn?.by).toBe('scram');
  });

  it('refuses an authentication method no step implements with CONNACK 0x8C', async () => {
    const client = await RawClient.connect(broker.port, 5);
    client.send(
      connectPacket(cid(), {
        protocolVersion: 5,
        properties: { authenticationMethod: 'SCRAM-SHA-1', authenticationData: Buffer.from('n,,n=alice,r=abc') },
      }),
      5,
    );
    expect((await client.next('connack')).reasonCode).toBe(0x8c);
    client.end();
  });

  it('closes a client that stalls after the server-first message once the connect timeout passes', async () => {
    const client = await RawClient.connect(broker.port, 5);
    const scram = new ScramClient({ hash: 'SHA-256', username: 'alice', password: scramPw });
    const clientId = cid();
    client.send(
      connectPacket(clientId, {
        protocolVersion: 5,
        properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: scram.clientFirst() },
      }),
      5,
    );
    const serverFirst = await client.next('auth');
    expect(serverFirst.reasonCode).toBe(0x18);
    expect(client.closed).toBe(false);
    // Never answer: the broker must not keep a half-authenticated connection.
    await client.waitClosed(CONNECT_TIMEOUT_MS + 5_000);
    expect(client.packets.some((p) => p.cmd === 'connack' && p.reasonCode === 0)).toBe(false);
    // The audit log says why, naming the client id the CONNECT claimed (nobody was verified).
    const record = await broker.waitForAudit('connection.connect_timeout', (e) => e.mqtt?.client_id === clientId);
    expect(record.event).toEqual({
      action: 'connection.connect_timeout',
      outcome: 'failure',
      reason: 'authentication not finished within the connect timeout',
      code: 'authentication_timeout',
    });
    expect(record.user).toBeUndefined();
  });

  it('closes a client that sends PUBLISH before CONNACK during the exchange [MQTT-3.1.2-30], delivering nothing', async () => {
    const clientId = cid();
    const watcher = await scramConnect('SHA-256', scramPw);
    expect(watcher.code).toBe(0);
    const delivered: string[] = [];
    watcher.client.on('message', (topic) => delivered.push(topic));
    await watcher.client.subscribeAsync('early/#');
    const client = await RawClient.connect(broker.port, 5);
    const scram = new ScramClient({ hash: 'SHA-256', username: 'alice', password: scramPw });
    client.send(
      connectPacket(clientId, {
        protocolVersion: 5,
        properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: scram.clientFirst() },
      }),
      5,
    );
    expect((await client.next('auth')).reasonCode).toBe(0x18);
    // A client that named an authentication method may send only AUTH or DISCONNECT until its CONNACK.
    client.send(
      { cmd: 'publish', topic: 'early/data', payload: Buffer.from('too soon'), qos: 0, dup: false, retain: false },
      5,
    );
    await client.waitClosed();
    const line = await broker.waitForLog(
      (l) => l.msg === 'closing connection: protocol violation' && l.clientId === clientId,
    );
    expect(line).toMatchObject({ reason: 'protocolError', detail: expect.stringContaining('MQTT-3.1.2-30') });
    expect(client.packets.some((p) => p.cmd === 'connack' && p.reasonCode === 0)).toBe(false);
    // The watcher's own round trip after the refusal: had the early PUBLISH been routed, it would be here first.
    await watcher.client.publishAsync('early/after', 'x', { qos: 1 });
    await until(() => delivered.includes('early/after'), "the watcher's own message");
    expect(delivered).toEqual(['early/after']);
    await watcher.client.endAsync();
  });

  it('re-authenticates a connected client with AUTH 0x19, and disconnects it with 0x87 when the new proof is wrong', async () => {
    const clientId = cid();
    const r = await scramConnect('SHA-512', scramPw, clientId);
    expect(r.code).toBe(0);

    const againScram = new ScramClient({ hash: 'SHA-512', username: 'alice', password: scramPw });
    const again = scramForMqtt(againScram);
    const finished = new Promise<void>((resolve) => {
      r.client.handleAuth = ((packet: MqttAuthPacket, cb: (e?: Error, p?: MqttAuthPacket) => void) => {
        again.handleAuth(packet, cb);
        if (packet.reasonCode === 0x00) resolve();
      }) as MqttClient['handleAuth'];
    });
    sendAuth(r.client, again.reauthenticatePacket());
    await finished;
    expect(r.client.connected).toBe(true);
    expect(againScram.verifyServerFinal(again.lastServerFinal)).toBe(true);
    await broker.waitForAudit('authn.reauth_allowed', (x) => x.mqtt?.client_id === clientId);

    const wrong = scramForMqtt(new ScramClient({ hash: 'SHA-512', username: 'alice', password: wrongPw }));
    r.client.handleAuth = wrong.handleAuth as MqttClient['handleAuth'];
    const disconnect = new Promise<IDisconnectPacket>((resolve) => r.client.once('disconnect', resolve));
    sendAuth(r.client, wrong.reauthenticatePacket());
    expect((await disconnect).reasonCode).toBe(0x87);
    await broker.waitForAudit('authn.reauth_denied', (x) => x.mqtt?.client_id === clientId);
    r.client.end(true);
  });

  it('refuses a CONNECT whose User Name differs from the SCRAM user name with 0x87', async () => {
    const r = await scramConnect('SHA-256', scramPw, cid(), { username: 'legacy' });
    r.client.end(true);
    expect(r.code).toBe(0x87);
  });

  it('records exactly one audit event for a multi-round SCRAM CONNECT', async () => {
    const clientId = cid();
    const r = await scramConnect('SHA-256', scramPw, clientId);
    expect(r.code).toBe(0);
    await r.client.endAsync();
    const decisions = broker.audit.events.filter(
      (e) => e.event.action.startsWith('authn.') && e.mqtt?.client_id === clientId,
    );
    expect(decisions.map((e) => e.event.action)).toEqual(['authn.allowed']);
  });

  it('treats AUTH 0x18 after a completed CONNECT exchange as a protocol error, not as a replayable re-authentication', async () => {
    const clientId = cid();
    const client = await RawClient.connect(broker.port, 5);
    const scram = new ScramClient({ hash: 'SHA-256', username: 'alice', password: scramPw });
    const method = { authenticationMethod: 'SCRAM-SHA-256' };
    client.send(
      connectPacket(clientId, {
        protocolVersion: 5,
        properties: { ...method, authenticationData: scram.clientFirst() },
      }),
      5,
    );
    const serverFirst = await client.next('auth');
    const clientFinal = scram.clientFinal(serverFirst.properties?.authenticationData ?? Buffer.alloc(0));
    client.send({ cmd: 'auth', reasonCode: 0x18, properties: { ...method, authenticationData: clientFinal } }, 5);
    expect((await client.next('connack')).reasonCode).toBe(0);

    // No re-authentication was started (that takes 0x19, [MQTT-4.12.1]); replaying the old client-final must
    // not count as proof of the credential.
    client.send({ cmd: 'auth', reasonCode: 0x18, properties: { ...method, authenticationData: clientFinal } }, 5);
    const answer = await Promise.race([client.next('disconnect'), client.next('auth')]);
    client.end();
    expect(answer).toMatchObject({ cmd: 'disconnect', reasonCode: 0x82 });
    expect(
      broker.audit.events.some((e) => e.event.action === 'authn.reauth_allowed' && e.mqtt?.client_id === clientId),
    ).toBe(false);
  });

  /** A raw MQTT 5 client connected as alice with SCRAM-SHA-256, for AUTH packets mqtt.js would not send. */
  async function rawScramConnected(clientId: string): Promise<RawClient> {
    const client = await RawClient.connect(broker.port, 5);
    const scram = new ScramClient({ hash: 'SHA-256', username: 'alice', password: scramPw });
    const method = { authenticationMethod: scram.mechanism };
    client.send(
      connectPacket(clientId, {
        protocolVersion: 5,
        properties: { ...method, authenticationData: scram.clientFirst() },
      }),
      5,
    );
    const serverFirst = await client.next('auth');
    const clientFinal = scram.clientFinal(serverFirst.properties?.authenticationData ?? Buffer.alloc(0));
    client.send({ cmd: 'auth', reasonCode: 0x18, properties: { ...method, authenticationData: clientFinal } }, 5);
    expect((await client.next('connack')).reasonCode).toBe(0);
    return client;
  }

  it.each([
    ['another method', { authenticationMethod: 'SCRAM-SHA-512' }],
    ['no method', {}],
  ])(
    'refuses a re-authentication with %s than the CONNECT used as a protocol error, and records it as denied',
    async (_what, method) => {
      const clientId = cid();
      const client = await rawScramConnected(clientId);
      const scram = new ScramClient({ hash: 'SHA-512', username: 'alice', password: scramPw });
      client.send(
        { cmd: 'auth', reasonCode: 0x19, properties: { ...method, authenticationData: scram.clientFirst() } },
        5,
      );
      expect(await client.next('disconnect')).toMatchObject({ reasonCode: 0x82 });
      client.end();
      const denied = await broker.waitForAudit('authn.reauth_denied', (e) => e.mqtt?.client_id === clientId);
      expect(denied.event).toMatchObject({
        code: 'protocolError',
        reason: 'authentication method changed during the exchange',
      });
      expect(denied.authn?.method).toBe('SCRAM-SHA-256');
      expect(denied.user?.name).toBe('alice');
    },
  );

  it.each([
    ['another method', { cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'SCRAM-SHA-512' } }],
    ['reason code 0x19', { cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'SCRAM-SHA-256' } }],
  ] as const)(
    'refuses a CONNECT whose exchange continues with an AUTH of %s with CONNACK 0x82, recorded once',
    async (_what, auth) => {
      const clientId = cid();
      const client = await RawClient.connect(broker.port, 5);
      const scram = new ScramClient({ hash: 'SHA-256', username: 'alice', password: scramPw });
      client.send(
        connectPacket(clientId, {
          protocolVersion: 5,
          properties: { authenticationMethod: scram.mechanism, authenticationData: scram.clientFirst() },
        }),
        5,
      );
      await client.next('auth');
      client.send({ ...auth, properties: { ...auth.properties, authenticationData: Buffer.from('x') } }, 5);
      expect(await client.next('connack')).toMatchObject({ reasonCode: 0x82 });
      await client.waitClosed();
      const denied = await broker.waitForAudit('authn.denied', (e) => e.mqtt?.client_id === clientId);
      expect(denied.event).toMatchObject({ outcome: 'failure', code: 'protocolError' });
      expect(broker.audit.events.filter((e) => e.mqtt?.client_id === clientId).map((e) => e.event.action)).toEqual([
        'authn.denied',
      ]);
    },
  );

  it('records a replayed client-final outside a re-authentication as a denied re-authentication', async () => {
    const clientId = cid();
    const client = await rawScramConnected(clientId);
    client.send(
      {
        cmd: 'auth',
        reasonCode: 0x18,
        properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: Buffer.from('c=biws,r=x,p=AAAA') },
      },
      5,
    );
    expect(await client.next('disconnect')).toMatchObject({ reasonCode: 0x82 });
    client.end();
    const denied = await broker.waitForAudit('authn.reauth_denied', (e) => e.mqtt?.client_id === clientId);
    expect(denied.event).toMatchObject({ code: 'protocolError', reason: 'unexpected AUTH reason code' });
  });

  it('refuses AUTH from a client that connected without enhanced authentication with DISCONNECT 0x82', async () => {
    const r = await tryConnect(broker.url, {
      protocolVersion: 5,
      clientId: cid(),
      username: 'legacy',
      password: filePw,
    });
    expect(r.code).toBe(0);
    const again = scramForMqtt(new ScramClient({ hash: 'SHA-256', username: 'alice', password: scramPw }));
    const disconnect = new Promise<IDisconnectPacket>((resolve) => r.client.once('disconnect', resolve));
    sendAuth(r.client, again.reauthenticatePacket());
    expect((await disconnect).reasonCode).toBe(0x82);
    r.client.end(true);
    const denied = await broker.waitForAudit(
      'authn.reauth_denied',
      (e) => e.mqtt?.client_id === r.client.options.clientId,
    );
    expect(denied.event.code).toBe('protocolError');
    expect(denied.user?.name).toBe('legacy');
  });

  it('leaves MQTT 3.1.1 clients to the password steps: accepted with a password, refused without one', async () => {
    const ok = await tryConnect(broker.url, {
      protocolVersion: 4,
      clientId: cid(),
      username: 'legacy',
      password: filePw,
    });
    expect(ok.code).toBe(0);
    await ok.client.endAsync();
    const bad = await tryConnect(broker.url, {
      protocolVersion: 4,
      clientId: cid(),
      username: 'legacy',
      password: wrongPw,
    });
    expect(bad.code).toBe(4);
    // A SCRAM-only user has no password to offer a 3.1.1 connection.
    const scramOnly = await tryConnect(broker.url, {
      protocolVersion: 4,
      clientId: cid(),
      username: 'alice',
      password: scramPw,
    });
    expect(scramOnly.code).toBe(4);
  });
});

describe('SCRAM with anonymous access enabled', () => {
  it('never turns a client that asked for SCRAM into an anonymous one', async () => {
    const anonDir = tempDir('bulwark-authn-wire-scram-anon-');
    try {
      const credentials = anonDir.write(
        'scram.txt',
        formatScramCredentialLine('alice', await deriveScramCredential(scramPw, 'SCRAM-SHA-256', 4096)) + '\n',
      );
      const anon = await ledger.broker({
        config: {
          authentication: {
            anonymous: true,
            steps: [{ type: 'scram', id: 'scram', store: { type: 'file', path: credentials } }],
          },
          authorization: { watch: false, policy_files: [anonDir.write('open.policy.yaml', OPEN_POLICY)] },
        },
      });
      const refused = await scramConnect('SHA-256', wrongPw, cid(), { url: anon.url });
      refused.client.end(true);
      expect(refused.code).toBe(0x87);
      // And a plain client still gets in anonymously: the flag itself works.
      const plain = await tryConnect(anon.url, { protocolVersion: 5, clientId: cid() });
      expect(plain.code).toBe(0);
      await plain.client.endAsync();
      await anon.stop();
    } finally {
      anonDir.cleanup();
    }
  });
});

describe('secrets', () => {
  it('never appear in any log line or audit event these tests produced', () => {
    expect(ledger.corpus().length).toBeGreaterThan(10);
    expect(ledger.leaks()).toEqual([]);
  });
});
