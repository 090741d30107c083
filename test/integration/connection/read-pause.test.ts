import mqtt from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { es256Key, JwksServer, OPEN_POLICY, signToken, type SigningKey } from '../../helpers/authn-wire.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { connectClient, type Connected } from '../../helpers/mqtt-clients.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';
import { connectPacket, RawClient } from '../../helpers/raw-client.js';
import { until } from '../../helpers/until.js';
import { burstOfPublishes, settledWritableLength } from '../../helpers/read-pause.js';

/**
 * A client may send packets right after CONNECT, before CONNACK. While an asynchronous authentication step runs
 * (here a JWT whose key the broker must fetch from a JWKS endpoint that is slow to answer), the broker must not
 * read them into memory: the socket's reads stop, so the client's data waits in its own send buffer.
 */
let dir: TempDir;
let jwks: JwksServer;
let broker: TestBroker;
let known: SigningKey;
let rotated: SigningKey;
let subscriber: Connected;

const PACKETS = 64;
const PAYLOAD_BYTES = 512 * 1024;

beforeAll(async () => {
  dir = tempDir('bulwark-read-pause-');
  jwks = new JwksServer();
  const url = await jwks.start();
  known = await es256Key('known');
  rotated = await es256Key('rotated');
  jwks.keys = [known.jwk];
  broker = await startBroker({
    config: {
      limits: { connect_timeout_ms: 30_000 },
      authentication: {
        anonymous: false,
        steps: [
          {
            type: 'jwt',
            algorithms: ['ES256'],
            jwks_url: url,
            issuer: 'idp',
            audience: 'bulwark',
            // A token signed with a key the broker has not seen makes it fetch the JWKS again, which the test holds.
            jwks_min_refetch_ms: 0,
            jwks_timeout_ms: 20_000,
          },
        ],
      },
      authorization: { watch: false, policy_files: [dir.write('open.policy.yaml', OPEN_POLICY)] },
    },
  });
  const exp = Math.floor(Date.now() / 1000) + 300;
  subscriber = await connectClient(broker.url, {
    clientId: 'read-pause-sub',
    username: 'sub',
    password: await signToken(known, 'sub', exp),
  });
  await subscriber.client.subscribeAsync('burst/#', { qos: 0 });
});

afterAll(async () => {
  await subscriber?.client.endAsync(true);
  await broker?.stop();
  await jwks?.stop();
  dir?.cleanup();
});

describe('reads while authentication is pending', () => {
  it('stops reading a client that pipelines 32 MiB after CONNECT until it is authenticated, then delivers all of it', async () => {
    let release!: () => void;
    jwks.hold = new Promise<void>((resolve) => (release = resolve));
    jwks.keys = [known.jwk, rotated.jwk];
    const fetchesBefore = jwks.fetches;
    const token = await signToken(rotated, 'pipeliner', Math.floor(Date.now() / 1000) + 300);
    const client = await RawClient.connect(broker.port, 4);
    const connect = mqtt.generate(
      connectPacket('read-pause-pub', { username: 'pipeliner', password: Buffer.from(token) }),
    );
    client.sendBytes(Buffer.concat([connect, burstOfPublishes('burst/data', PACKETS, PAYLOAD_BYTES)]));
    try {
      await until(() => jwks.fetches > fetchesBefore, 'the JWKS fetch the token needs');
      // The broker read the CONNECT and at most what came with it; everything else waits in the client's socket
      // (the kernel's buffers hold a few MiB of the 32). Reading it all would have left nothing here.
      const unsent = await settledWritableLength(client.socket);
      expect(unsent).toBeGreaterThan((PACKETS * PAYLOAD_BYTES) / 2);
      expect(subscriber.received.messages.filter((m) => m.topic === 'burst/data')).toHaveLength(0);
    } finally {
      release();
      jwks.hold = undefined;
    }
    expect((await client.next('connack', 20_000)).returnCode).toBe(0);
    // Nothing lost, in order, once reading resumes.
    const delivered = await until(
      () => {
        const got = subscriber.received.messages.filter((m) => m.topic === 'burst/data');
        return got.length === PACKETS && got;
      },
      `${PACKETS} deliveries`,
      30_000,
    );
    const payloads = delivered.map((m) => Buffer.from(m.packet.payload));
    expect(payloads.map((p) => p.readUInt32BE(0))).toEqual([...Array(PACKETS).keys()]);
    expect(payloads.every((p) => p.length === PAYLOAD_BYTES)).toBe(true);
    expect(client.socket.writableLength).toBe(0);
    client.end();
  }, 60_000);
});
