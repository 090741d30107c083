import mqtt, { type IConnackPacket, type IClientOptions } from 'mqtt';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { OPEN_POLICY, SecretLedger } from '../../helpers/authn-wire.js';
import type { TestBroker } from '../../helpers/broker.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';
import type { SqlServiceInfo } from '../../helpers/services/types.js';
import { createMysqlTable, seedUsers, tableName } from '../authn/sql-fixtures.js';

const pgProvided = inject('postgres');
const mariaProvided = inject('mariadb');
const pgInfo = 'missing' in pgProvided ? undefined : pgProvided;
const maria = 'missing' in mariaProvided ? undefined : mariaProvided;
const ledger = new SecretLedger();
let broker: TestBroker | undefined;
let dir: TempDir | undefined;

/** The refusing CONNACK as it came over the wire, with its properties. */
function refusal(url: string, options: IClientOptions): Promise<IConnackPacket> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, protocolVersion: 5, ...options });
    const timer = setTimeout(() => reject(new Error('no CONNACK')), 10_000);
    client.on('packetreceive', (packet) => {
      if (packet.cmd !== 'connack') return;
      clearTimeout(timer);
      client.end(true);
      resolve(packet);
    });
    client.on('error', () => undefined);
  });
}

beforeAll(async () => {
  if (!pgInfo || !maria) return;
  const table = tableName();
  const users = await seedUsers();
  for (const u of users) ledger.secret(u.password);
  await createMysqlTable(maria, table, users);
  dir = tempDir('bulwark-reason-string-');
  const sql = (db: SqlServiceInfo) => ({ host: db.host, port: db.port, database: db.database, user: db.user });
  broker = await ledger.broker({
    config: {
      authentication: {
        anonymous: false,
        steps: [
          {
            // A database that refuses the broker's own login: error 28P01 names the database user.
            type: 'postgres',
            id: 'pg',
            ...sql(pgInfo),
            password: ledger.password('not-the-db-password'),
            when: { username_pattern: '^svc-' },
            query: 'SELECT password_hash FROM nowhere WHERE username = ${username}',
          },
          {
            type: 'mysql',
            id: 'maria',
            ...sql(maria),
            password: maria.password,
            unknown_user: 'deny',
            query: `SELECT password_hash, algorithm, salt FROM ${table} WHERE username = \${username}`,
          },
        ],
      },
      authorization: { watch: false, policy_files: [dir.write('open.policy.yaml', OPEN_POLICY)] },
    },
  });
}, 60_000);

afterAll(async () => {
  await broker?.stop();
  dir?.cleanup();
});

describe.skipIf(!pgInfo || !maria)('CONNACK reason strings of refused clients (MQTT 5)', () => {
  it('a backend failure tells the client only that the service is unavailable; the audit keeps the error', async () => {
    const b = broker!;
    const connack = await refusal(b.url, { clientId: 'rs-1', username: 'svc-a', password: 'whatever' });
    expect(connack.reasonCode).toBe(0x88);
    expect(connack.properties?.reasonString).toBe('authentication service unavailable');
    const event = await b.waitForAudit('authn.denied', (e) => e.mqtt?.client_id === 'rs-1');
    expect(event.event.reason).toMatch(/28P01/);
  });

  it('an unknown user and a wrong password get the same reason string', async () => {
    const b = broker!;
    const wrong = await refusal(b.url, { clientId: 'rs-2', username: 'bcrypt-user', password: 'wrong-pw' });
    const unknown = await refusal(b.url, { clientId: 'rs-3', username: 'nobody', password: 'wrong-pw' });
    for (const connack of [wrong, unknown]) {
      expect(connack.reasonCode).toBe(0x86);
      expect(connack.properties?.reasonString).toBe('bad user name or password');
    }
    const event = await b.waitForAudit('authn.denied', (e) => e.mqtt?.client_id === 'rs-3');
    expect(event.event.reason).toBe('no row for user');
  });

  it('a refusal by the broker’s own checks keeps its helpful text', async () => {
    const connack = await refusal(broker!.url, {
      clientId: 'rs-4',
      username: 'bcrypt-user',
      password: 'x',
      properties: { authenticationMethod: 'NO-SUCH-METHOD' },
    });
    expect(connack.reasonCode).toBe(0x8c);
    expect(connack.properties?.reasonString).toBe('authentication method NO-SUCH-METHOD is not supported');
  });
});
