import { readFileSync } from 'node:fs';
import mqtt, { type IDisconnectPacket } from 'mqtt';
import type { Packet } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatScramCredentialLine } from '../../../authn/scram/file-store.js';
import { deriveScramCredential } from '../../../authn/scram/mechanism.js';
import type { Guard } from '../../../src/guard/guard.js';
import {
  argonHash,
  es256Key,
  OPEN_POLICY,
  SecretLedger,
  signToken,
  tryConnect,
  writeUsers,
  type SigningKey,
} from '../../helpers/authn-wire.js';
import type { TestBroker } from '../../helpers/broker.js';
import { mintTestPki, type TestPki } from '../../helpers/certs.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';
import { connectPacket, RawClient } from '../../helpers/raw-client.js';
import { ScramClient } from '../../helpers/scram-client.js';
import { until } from '../../helpers/until.js';

/**
 * The guard judges who a client is, not the User Name it wrote: SCRAM without a CONNECT User Name, certificates
 * mapped to a user name, re-authentication, and clients holding one account's credential while naming another.
 */
const ledger = new SecretLedger();
const pw: Record<string, string> = {};
for (const user of ['alice', 'bob', 'carol', 'dora', 'gina', 'ivy', 'erin']) pw[user] = ledger.password(user);
const METHOD = 'SCRAM-SHA-256';
const MINUTE = 60_000;

let dir: TempDir;
let broker: TestBroker;
let key: SigningKey;
let seq = 0;
const cid = (prefix = 'identity'): string => `${prefix}-${++seq}`;

beforeAll(async () => {
  dir = tempDir('bulwark-guard-identity-');
  const lines: string[] = [];
  for (const user of ['alice', 'bob', 'carol', 'dora', 'gina'])
    lines.push(formatScramCredentialLine(user, await deriveScramCredential(pw[user]!, METHOD, 4096)));
  const credentials = dir.write('scram.txt', lines.join('\n') + '\n');
  const users = writeUsers(dir, 'users.yaml', {
    carol: { hash: await argonHash(pw.carol!) },
    ivy: { hash: await argonHash(pw.ivy!) },
    erin: { hash: await argonHash(pw.erin!) },
  });
  key = await es256Key('k1');
  broker = await ledger.broker({
    config: {
      authentication: {
        anonymous: false,
        steps: [
          { type: 'scram', id: 'scram', store: { type: 'file', path: credentials } },
          // Before the password step: a JWT-shaped password is a token, whatever User Name comes with it.
          { type: 'jwt', id: 'jwt', algorithms: ['ES256'], jwk: key.jwk, issuer: 'idp', audience: 'bulwark' },
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

const guardOf = (b: TestBroker): Guard => b.server.broker.guard as Guard;

interface ScramLogin {
  client: RawClient;
  /** CONNACK reason code. */
  code: number;
  /** Whether the broker answered the client-first with a server-first (the proof stage was reached). */
  challenged: boolean;
}

/** A SCRAM-SHA-256 CONNECT over raw MQTT 5, with or without a CONNECT User Name. */
async function scramLogin(
  port: number,
  user: string,
  password: string,
  options: { connectUsername?: string; clientId?: string } = {},
): Promise<ScramLogin> {
  const client = await RawClient.connect(port, 5);
  const scram = new ScramClient({ hash: 'SHA-256', username: user, password });
  client.send(
    connectPacket(options.clientId ?? cid('scram'), {
      protocolVersion: 5,
      ...(options.connectUsername === undefined ? {} : { username: options.connectUsername }),
      properties: { authenticationMethod: METHOD, authenticationData: scram.clientFirst() },
    }),
    5,
  );
  const first = await client.nextOf(['auth', 'connack']);
  if (first.cmd === 'connack') return { client, code: first.reasonCode ?? -1, challenged: false };
  const final = scram.clientFinal(first.properties?.authenticationData ?? Buffer.alloc(0));
  client.send(
    { cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: METHOD, authenticationData: final } },
    5,
  );
  const connack = await client.next('connack');
  return { client, code: connack.reasonCode ?? -1, challenged: true };
}

async function scramCode(user: string, password: string, connectUsername?: string): Promise<number> {
  const r = await scramLogin(broker.port, user, password, { connectUsername });
  r.client.end();
  return r.code;
}

async function passwordCode(username: string, password: string): Promise<number> {
  const r = await tryConnect(broker.url, { protocolVersion: 5, clientId: cid('pw'), username, password });
  r.client.end(true);
  return r.code;
}

/** Waits until the broker ends the connection and returns the DISCONNECT it sent first, if any. */
async function disconnectOf(client: RawClient): Promise<Extract<Packet, { cmd: 'disconnect' }>> {
  return client.next('disconnect', 5_000);
}

describe('brute-force throttling counts the user name that was tried', () => {
  it('locks out SCRAM guesses without a CONNECT User Name, and refuses the locked name before its proof', async () => {
    for (let i = 0; i < 5; i++) expect(await scramCode('bob', `guess-${i}`)).toBe(0x87);
    const throttled = await broker.waitForAudit('guard.throttled', (e) => e.guard?.key === 'bob');
    expect(throttled.guard).toMatchObject({ dimension: 'username', count: 5 });
    // The right password no longer helps, with or without the User Name; without it the refusal comes at the
    // client-first message, so no proof is checked.
    const locked = await scramLogin(broker.port, 'bob', pw.bob!);
    locked.client.end();
    expect(locked).toMatchObject({ code: 0x9f, challenged: false });
    expect(await scramCode('bob', pw.bob!, 'bob')).toBe(0x9f);
    const refused = await broker.waitForAudit('guard.throttle_refused', (e) => e.guard?.key === 'bob');
    expect(refused.guard).toMatchObject({ dimension: 'username' });
  });

  it('keeps a user locked out by password guesses from getting in through SCRAM without a User Name', async () => {
    for (let i = 0; i < 5; i++) expect(await passwordCode('carol', `guess-${i}`)).toBe(0x86);
    expect(await scramCode('carol', pw.carol!)).toBe(0x9f);
  });

  it("does not let another account's successful login under the victim's User Name reset the victim's count", async () => {
    for (let i = 0; i < 4; i++) expect(await passwordCode('erin', `guess-${i}`)).toBe(0x86);
    // frank's token, erin's name in the CONNECT: frank logs in, and that says nothing about erin's password.
    const token = ledger.secret(await signToken(key, 'frank', Math.floor(Date.now() / 1000) + 300));
    expect(await passwordCode('erin', token)).toBe(0);
    expect(await passwordCode('erin', 'guess-4')).toBe(0x86);
    expect(await passwordCode('erin', pw.erin!)).toBe(0x9f);
  });
});

describe('username bans hold whatever way the user authenticates', () => {
  it('refuses a banned user logging in by SCRAM without a User Name, and disconnects her live session', async () => {
    const live = await scramLogin(broker.port, 'dora', pw.dora!);
    expect(live.code).toBe(0);
    guardOf(broker).ban(
      { kind: 'username', value: 'dora', reason: 'stolen credential', until: Date.now() + MINUTE },
      'cli:0@unix-socket',
    );
    expect((await disconnectOf(live.client)).reasonCode).toBe(0x98);
    await live.client.waitClosed();
    const again = await scramLogin(broker.port, 'dora', pw.dora!);
    again.client.end();
    expect(again).toMatchObject({ code: 0x8a, challenged: false });
  });
});

describe('MQTT 5 re-authentication', () => {
  /** alice logs in by SCRAM without a User Name and starts a re-authentication as `user`. */
  async function reauthenticate(user: string, password: string): Promise<{ packets: Packet[]; clientId: string }> {
    const clientId = cid('reauth');
    const login = await scramLogin(broker.port, 'alice', pw.alice!, { clientId });
    expect(login.code).toBe(0);
    const client = login.client;
    const scram = new ScramClient({ hash: 'SHA-256', username: user, password });
    client.send(
      {
        cmd: 'auth',
        reasonCode: 0x19,
        properties: { authenticationMethod: METHOD, authenticationData: scram.clientFirst() },
      },
      5,
    );
    const answer = await client.nextOf(['auth', 'disconnect']);
    const packets: Packet[] = [answer];
    if (answer.cmd === 'auth') {
      const final = scram.clientFinal(answer.properties?.authenticationData ?? Buffer.alloc(0));
      client.send(
        { cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: METHOD, authenticationData: final } },
        5,
      );
      packets.push(await client.nextOf(['auth', 'disconnect']));
    }
    client.end();
    return { packets, clientId };
  }

  it('refuses another user before any proof, with the same answer as a wrong password, and counts it', async () => {
    const wrongOwn = await reauthenticate('alice', 'not-her-password');
    expect(wrongOwn.packets.map((p) => p.cmd)).toEqual(['auth', 'disconnect']);
    const ownRefusal = wrongOwn.packets[1] as IDisconnectPacket;
    const attempts: { packets: Packet[]; clientId: string }[] = [];
    for (let i = 0; i < 4; i++) attempts.push(await reauthenticate('gina', `guess-${i}`));
    attempts.push(await reauthenticate('gina', pw.gina!));
    for (const { packets } of attempts) {
      // No server-first for gina: nothing of hers is verified, right or wrong, and the answer is alice's own.
      expect(packets).toHaveLength(1);
      const refusal = packets[0] as IDisconnectPacket;
      expect(refusal.cmd).toBe('disconnect');
      expect(refusal.reasonCode).toBe(ownRefusal.reasonCode);
      expect(refusal.properties?.reasonString).toBe(ownRefusal.properties?.reasonString);
    }
    expect(ownRefusal).toMatchObject({ reasonCode: 0x87, properties: { reasonString: 're-authentication failed' } });
    // Five refusals naming gina lock her name out like five failed CONNECTs.
    expect(await scramCode('gina', pw.gina!)).toBe(0x9f);
    const denied = await broker.waitForAudit('authn.reauth_denied', (e) => e.mqtt?.client_id === attempts[0]!.clientId);
    expect(denied.user?.name).toBe('alice');
    expect(denied.event.reason).toContain('different user');
  });
});

describe('flapping counts who logged in', () => {
  it("never bans the User Name a client holding another account's token writes in its CONNECT", async () => {
    const victim = await tryConnect(broker.url, {
      protocolVersion: 5,
      clientId: cid('ivy'),
      username: 'ivy',
      password: pw.ivy!,
    });
    expect(victim.code).toBe(0);
    const token = ledger.secret(await signToken(key, 'dave', Math.floor(Date.now() / 1000) + 300));
    const codes: number[] = [];
    for (let i = 0; i < 16; i++) codes.push(await passwordCode('ivy', token));
    // dave connected sixteen times: dave is the one flapping, and banned.
    expect(codes.slice(0, 15)).toEqual(Array(15).fill(0));
    expect(codes[15]).toBe(0x8a);
    const bans = guardOf(broker).list();
    expect(bans).toContainEqual(expect.objectContaining({ kind: 'username', value: 'dave', by: 'guard:flapping' }));
    expect(bans.some((b) => b.value === 'ivy')).toBe(false);
    // ivy's session is untouched (a round trip proves it is still served), and she logs in again.
    await victim.client.publishAsync('ivy/still-here', 'x', { qos: 1 });
    expect(victim.client.connected).toBe(true);
    expect(await passwordCode('ivy', pw.ivy!)).toBe(0);
    await victim.client.endAsync();
  });
});

describe('username bans and certificate identities', () => {
  let pki: TestPki;
  let tls: TestBroker;
  beforeAll(async () => {
    pki = await mintTestPki();
    tls = await ledger.broker({
      config: {
        authorization: { watch: false, policy_files: [dir.file('open.policy.yaml')] },
        audit: { refusals: { burst: 1 } },
      },
      listener: {
        transport: 'tls',
        tls: { cert_file: pki.server.certFile, key_file: pki.server.keyFile, ca_file: pki.caFile },
        // identity_source cn and use_as_username: the certificate's CN is the user name.
        authentication: { anonymous: false, steps: [{ type: 'x509', identity_source: 'cn' }] },
      },
    });
  });
  afterAll(async () => {
    await tls?.stop();
    pki?.cleanup();
  });

  const certOptions = (): mqtt.IClientOptions => ({
    protocolVersion: 5,
    ca: readFileSync(pki.caFile),
    cert: readFileSync(pki.clients.good.certFile),
    key: readFileSync(pki.clients.good.keyFile),
    rejectUnauthorized: true,
    servername: 'localhost',
  });

  it('disconnects and refuses a certificate whose mapped user name is banned', async () => {
    const url = `mqtts://127.0.0.1:${tls.port}`;
    const live = await tryConnect(url, { ...certOptions(), clientId: cid('cert') });
    expect(live.code).toBe(0);
    const kicked = new Promise<IDisconnectPacket>((resolve) => live.client.once('disconnect', resolve));
    guardOf(tls).ban(
      { kind: 'username', value: 'sensor-1', reason: 'device retired', until: Date.now() + MINUTE },
      'cli:0@unix-socket',
    );
    expect((await kicked).reasonCode).toBe(0x98);
    live.client.end(true);
    const again = await tryConnect(url, { ...certOptions(), clientId: cid('cert') });
    again.client.end(true);
    expect(again.code).toBe(0x8a);
    const blocked = await tls.waitForAudit('guard.blocked');
    expect(blocked.guard).toMatchObject({ dimension: 'username', key: 'sensor-1' });

    // The certificate proved who the client is: each such refusal is evidence of a banned identity in use, named
    // as the verified user, and never folded into the bound on repeated refusals (its burst is 1 here).
    for (let i = 0; i < 3; i++) {
      const more = await tryConnect(url, { ...certOptions(), clientId: cid('cert') });
      more.client.end(true);
      expect(more.code).toBe(0x8a);
    }
    await until(
      () => tls.audit.events.filter((e) => e.event.action === 'guard.blocked').length === 4,
      'four guard.blocked records',
    );
    const records = tls.audit.events.filter((e) => e.event.action === 'guard.blocked');
    for (const r of records) expect(r.user).toEqual({ name: 'sensor-1' });
    expect(tls.audit.events.filter((e) => e.event.action === 'audit.refusals_suppressed')).toEqual([]);
  });
});

describe('a re-authentication that is never finished', () => {
  it('is ended with DISCONNECT 0x87 once the connect timeout passes', async () => {
    const timeoutMs = 600;
    const quick = await ledger.broker({
      config: {
        limits: { connect_timeout_ms: timeoutMs },
        authentication: {
          anonymous: false,
          steps: [{ type: 'scram', id: 'scram', store: { type: 'file', path: dir.file('scram.txt') } }],
        },
        authorization: { watch: false, policy_files: [dir.file('open.policy.yaml')] },
      },
    });
    try {
      const clientId = cid('stall');
      const login = await scramLogin(quick.port, 'alice', pw.alice!, { clientId });
      expect(login.code).toBe(0);
      const scram = new ScramClient({ hash: 'SHA-256', username: 'alice', password: pw.alice! });
      login.client.send(
        {
          cmd: 'auth',
          reasonCode: 0x19,
          properties: { authenticationMethod: METHOD, authenticationData: scram.clientFirst() },
        },
        5,
      );
      expect((await login.client.next('auth')).reasonCode).toBe(0x18);
      // Never answer the server-first message.
      const disconnect = await login.client.next('disconnect', timeoutMs + 5_000);
      expect(disconnect.reasonCode).toBe(0x87);
      await login.client.waitClosed();
      const denied = await quick.waitForAudit('authn.reauth_denied', (e) => e.mqtt?.client_id === clientId);
      expect(denied).toMatchObject({
        user: { name: 'alice' },
        event: { reason: 're-authentication not completed within the connect timeout' },
      });
    } finally {
      await quick.stop();
    }
  });
});

describe('secrets', () => {
  it('never appear in any log line or audit event these tests produced', () => {
    expect(ledger.leaks()).toEqual([]);
  });
});
