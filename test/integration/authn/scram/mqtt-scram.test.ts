import mqtt, { type IConnackPacket, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthenticationChain } from '../../../../authn/chain.js';
import { ScramAuthenticator } from '../../../../authn/scram/authenticator.js';
import { deriveScramCredential } from '../../../../authn/scram/mechanism.js';
import { startBroker, type TestBroker } from '../../../helpers/broker.js';
import { ScramClient, scramForMqtt } from '../../../helpers/scram-client.js';
import { MemoryStore } from '../../../unit/authn/scram/fixtures.js';

let broker: TestBroker;

beforeAll(async () => {
  const store = new MemoryStore();
  for (const m of ['SCRAM-SHA-256', 'SCRAM-SHA-512'] as const) store.put('alice', await deriveScramCredential('pw', m, 4096));
  const chain = new AuthenticationChain({
    steps: [{ authenticator: new ScramAuthenticator({ store }), onError: 'deny', timeoutMs: 5000 }],
    anonymous: false,
  });
  broker = await startBroker({ authenticator: chain, listener: { anonymous: false } });
});

afterAll(async () => {
  await broker?.stop();
});

function connect(hash: 'SHA-256' | 'SHA-512', password: string): Promise<{ client: MqttClient; scram: ScramClient; connack?: IConnackPacket; error?: Error & { code?: number } }> {
  const scram = new ScramClient({ hash, username: 'alice', password });
  const hooks = scramForMqtt(scram);
  const client = mqtt.connect(broker.url, { protocolVersion: 5, reconnectPeriod: 0, manualConnect: true, properties: hooks.properties });
  client.handleAuth = hooks.handleAuth as MqttClient['handleAuth'];
  return new Promise((resolve) => {
    client.once('connect', (connack) => resolve({ client, scram, connack }));
    client.once('error', (error) => resolve({ client, scram, error }));
    client.connect();
  });
}

describe('SCRAM through mqtt.js and the broker', () => {
  for (const hash of ['SHA-256', 'SHA-512'] as const) {
    it(`connects with SCRAM-${hash} and the client verifies the server`, async () => {
      const r = await connect(hash, 'pw');
      expect(r.error).toBeUndefined();
      console.log('server-final', r.connack?.properties?.authenticationData?.toString());
      expect(r.scram.verifyServerFinal(r.connack?.properties?.authenticationData)).toBe(true);
      r.client.end(true);
    });
  }

  it('refuses a wrong password with 0x87', async () => {
    const r = await connect('SHA-256', 'nope');
    expect(r.error?.code).toBe(0x87);
    r.client.end(true);
  });
});
