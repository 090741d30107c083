import type { IDisconnectPacket } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closedPort,
  CODES,
  es256Key,
  JwksServer,
  OPEN_POLICY,
  SecretLedger,
  signToken,
  tryConnect,
  type SigningKey,
} from '../../helpers/authn-wire.js';
import type { TestBroker } from '../../helpers/broker.js';
import { waitClientClosed } from '../../helpers/mqtt-clients.js';
import { connectPacket, RawClient } from '../../helpers/raw-client.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';

const ledger = new SecretLedger();
let dir: TempDir;
let jwks: JwksServer;
let jwksUrl = '';
let broker: TestBroker;
let k1: SigningKey;
let k2: SigningKey;

const nowS = (): number => Math.floor(Date.now() / 1000);
/** Registers the token with the leak check before it is used. */
const token = async (key: SigningKey, sub: string, expS: number): Promise<string> =>
  ledger.secret(await signToken(key, sub, expS));

let seq = 0;
const cid = (): string => `jwt-wire-${++seq}`;

/**
 * A broker whose chain is one JWT step (ES256 keys from the test JWKS, issuer `idp`, audience `bulwark`) with
 * `step` merged in, behind the open policy unless `defaultPolicy` is asked for.
 */
function jwtBroker(
  step: Record<string, unknown>,
  options: { anonymous?: boolean; defaultPolicy?: boolean } = {},
): Promise<TestBroker> {
  const authorization = { watch: false, policy_files: [dir.file('open.policy.yaml')] };
  return ledger.broker({
    config: {
      authentication: {
        anonymous: options.anonymous ?? false,
        steps: [{ type: 'jwt', algorithms: ['ES256'], jwks_url: jwksUrl, issuer: 'idp', audience: 'bulwark', ...step }],
      },
      ...(options.defaultPolicy ? {} : { authorization }),
    },
  });
}

beforeAll(async () => {
  dir = tempDir('bulwark-authn-wire-jwt-');
  jwks = new JwksServer();
  const url = await jwks.start();
  jwksUrl = url;
  k1 = await es256Key('key-1');
  k2 = await es256Key('key-2');
  jwks.keys = [k1.jwk];
  dir.write('open.policy.yaml', OPEN_POLICY);
  broker = await jwtBroker({
    // Rotation is picked up at the first unknown kid; no skew, so expiry is exactly `exp`.
    jwks_min_refetch_ms: 0,
    clock_skew_s: 0,
    jwks_timeout_ms: 1_000,
  });
});

afterAll(async () => {
  await broker?.stop();
  await jwks?.stop();
  dir?.cleanup();
});

describe('JWT in the password field, keys from a JWKS on 127.0.0.1', () => {
  for (const v of [5, 4] as const) {
    it(`accepts a signed token and takes the user name from sub (MQTT ${v === 5 ? '5' : '3.1.1'})`, async () => {
      const clientId = cid();
      const r = await tryConnect(broker.url, {
        protocolVersion: v,
        clientId,
        username: 'ignored',
        password: await token(k1, 'device-7', nowS() + 300),
      });
      expect(r.code).toBe(0);
      await r.client.endAsync();
      const e = broker.audit.events.find((x) => x.event.action === 'authn.allowed' && x.mqtt?.client_id === clientId);
      expect(e?.user?.name).toBe('device-7');
    });

    it(`refuses a tampered token and an expired one as bad user name or password (MQTT ${v === 5 ? '5' : '3.1.1'})`, async () => {
      const good = await token(k1, 'device-7', nowS() + 300);
      const [h, p, s] = good.split('.') as [string, string, string];
      const tampered = ledger.secret(`${h}.${p}.${s.slice(0, -4)}${s.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`);
      // A refused token is counted against the CONNECT User Name (its subject is not verified), and a success no
      // longer clears that name, only the subject's: each refusal case has a name of its own, so these tests stay
      // below the brute-force throttle.
      expect(
        (
          await tryConnect(broker.url, {
            protocolVersion: v,
            clientId: cid(),
            username: 'tampered',
            password: tampered,
          })
        ).code,
      ).toBe(CODES.badUserNameOrPassword[v]);
      const expired = await token(k1, 'device-7', nowS() - 60);
      expect(
        (await tryConnect(broker.url, { protocolVersion: v, clientId: cid(), username: 'expired', password: expired }))
          .code,
      ).toBe(CODES.badUserNameOrPassword[v]);
    });
  }

  it('follows a key rotation to a new kid without a restart, and refuses the retired key afterwards', async () => {
    const before = jwks.fetches;
    jwks.keys = [k2.jwk];
    const r = await tryConnect(broker.url, {
      protocolVersion: 5,
      clientId: cid(),
      username: 'd',
      password: await token(k2, 'device-8', nowS() + 300),
    });
    expect(r.code).toBe(0);
    await r.client.endAsync();
    expect(jwks.fetches).toBeGreaterThan(before);
    const old = await tryConnect(broker.url, {
      protocolVersion: 5,
      clientId: cid(),
      username: 'retired',
      password: await token(k1, 'device-7', nowS() + 300),
    });
    expect(old.code).toBe(0x86);
    jwks.keys = [k1.jwk, k2.jwk];
  });

  it('disconnects an MQTT 5 client whose token expires while connected, with DISCONNECT and a reason string', async () => {
    // `exp` has one-second resolution: the token runs out within about two seconds.
    const r = await tryConnect(broker.url, {
      protocolVersion: 5,
      clientId: cid(),
      username: 'd',
      password: await token(k1, 'short-lived', nowS() + 2),
    });
    expect(r.code).toBe(0);
    const disconnect = await new Promise<IDisconnectPacket>((resolve) => r.client.once('disconnect', resolve));
    expect(disconnect.reasonCode).toBe(0x87);
    expect(disconnect.properties?.reasonString).toBe('credential expired');
    await waitClientClosed(r.client);
    r.client.end(true);
  });

  it('closes an MQTT 3.1.1 client whose token expires while connected', async () => {
    const r = await tryConnect(broker.url, {
      protocolVersion: 4,
      clientId: cid(),
      username: 'd',
      password: await token(k1, 'short-lived-311', nowS() + 2),
    });
    expect(r.code).toBe(0);
    expect(r.client.connected).toBe(true);
    await waitClientClosed(r.client, 6_000);
    r.client.end(true);
    await broker.waitForLog((l) => l.msg === 'disconnecting client: credential expired');
  });
});

describe('a token bound to the client id', () => {
  it('refuses a token whose claim names another client id as not authorized, in both versions', async () => {
    const bound = await jwtBroker({ require_equal: { clientid: 'sub' } });
    try {
      const t = await token(k1, 'meter-1', nowS() + 300);
      for (const v of [5, 4] as const) {
        const other = await tryConnect(bound.url, {
          protocolVersion: v,
          clientId: 'meter-2',
          username: 'd',
          password: t,
        });
        expect(other.code).toBe(CODES.notAuthorized[v]);
      }
      const own = await tryConnect(bound.url, { protocolVersion: 5, clientId: 'meter-1', username: 'd', password: t });
      expect(own.code).toBe(0);
      await own.client.endAsync();
    } finally {
      await bound.stop();
    }
  });
});

describe('clock skew and the expiry timer', () => {
  it('does not accept a token inside the clock-skew window only to disconnect it as expired at once', async () => {
    // Default clock_skew_s (30): a token that ran out 10 s ago is still accepted at CONNECT. The expiry timer must
    // honour the same tolerance, or every reconnect is accepted and kicked again: a reconnect loop.
    const skewed = await jwtBroker({});
    try {
      const client = await RawClient.connect(skewed.port, 5);
      const t = await token(k1, 'device-skew', nowS() - 10);
      client.send(connectPacket(cid(), { protocolVersion: 5, username: 'd', password: Buffer.from(t) }), 5);
      const connack = await client.next('connack');
      if (connack.reasonCode === 0) {
        // Accepted: then it must stay connected (until exp + skew), not get DISCONNECT 0x87 straight away.
        const kicked = await client.next('disconnect', 500).catch(() => undefined);
        expect(kicked).toBeUndefined();
      } else {
        expect(connack.reasonCode).toBe(0x86);
      }
      client.end();
    } finally {
      await skewed.stop();
    }
  });
});

describe('a JWKS endpoint that cannot be reached', () => {
  for (const v of [5, 4] as const) {
    it(`fails closed with server unavailable (MQTT ${v === 5 ? '5' : '3.1.1'})`, async () => {
      const down = await jwtBroker(
        { jwks_url: `http://127.0.0.1:${await closedPort()}/jwks.json`, jwks_timeout_ms: 500 },
        { anonymous: true, defaultPolicy: true },
      );
      try {
        const r = await tryConnect(down.url, {
          protocolVersion: v,
          clientId: cid(),
          username: 'd',
          password: await token(k1, 'device-7', nowS() + 300),
        });
        // Even with anonymous access on: an outage must not downgrade a token holder to anonymous.
        expect(r.code).toBe(CODES.serverUnavailable[v]);
      } finally {
        await down.stop();
      }
    });
  }
});

describe('secrets', () => {
  it('never appear in any log line or audit event these tests produced', () => {
    expect(ledger.secrets.size).toBeGreaterThan(5);
    expect(ledger.corpus().length).toBeGreaterThan(10);
    expect(ledger.leaks()).toEqual([]);
  });
});
