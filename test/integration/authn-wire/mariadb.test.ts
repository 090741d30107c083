import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CODES, OPEN_POLICY, SecretLedger, tryConnect } from '../../helpers/authn-wire.js';
import type { TestBroker } from '../../helpers/broker.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';
import { createMysqlTable, seedUsers, tableName, type SeedUser } from '../authn/sql-fixtures.js';

const provided = inject('mariadb');
const db = 'missing' in provided ? undefined : provided;
const ledger = new SecretLedger();
const wrongPw = ledger.password('wrong');
let dir: TempDir;
let broker: TestBroker | undefined;
let users: SeedUser[] = [];

let seq = 0;
const cid = (): string => `mariadb-wire-${++seq}`;

beforeAll(async () => {
  if (!db) return;
  ledger.secret(db.password);
  users = await seedUsers();
  for (const u of users) ledger.secret(u.password);
  const table = tableName();
  await createMysqlTable(db, table, users);
  dir = tempDir('bulwark-authn-wire-mariadb-');
  broker = await ledger.broker({
    config: {
      authentication: {
        anonymous: false,
        steps: [
          {
            type: 'mysql',
            id: 'maria',
            host: db.host,
            port: db.port,
            database: db.database,
            user: db.user,
            password: db.password,
            unknown_user: 'ignore',
            query: `SELECT password_hash, algorithm, salt, is_superuser, \`groups\` FROM ${table} WHERE username = \${username}`,
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

describe('MySQL/MariaDB step over the wire', () => {
  for (const v of [5, 4] as const) {
    it(`accepts each stored hash kind, refuses a wrong password, and sends an unknown user on (MQTT ${v === 5 ? '5' : '3.1.1'})`, async (ctx) => {
      if (!broker) return ctx.skip('mariadb missing');
      for (const u of users) {
        const clientId = cid();
        const r = await tryConnect(broker.url, {
          protocolVersion: v,
          clientId,
          username: u.username,
          password: u.password,
        });
        expect(r.code, u.username).toBe(0);
        await r.client.endAsync();
        const e = await broker.waitForAudit('authn.allowed', (x) => x.mqtt?.client_id === clientId);
        expect(e.user?.groups).toEqual(u.groups);
      }
      const bad = await tryConnect(broker.url, {
        protocolVersion: v,
        clientId: cid(),
        username: users[0]!.username,
        password: wrongPw,
      });
      expect(bad.code).toBe(CODES.badUserNameOrPassword[v]);
      // "' OR '1'='1" is a user name like any other: a bind parameter, never SQL.
      const injected = await tryConnect(broker.url, {
        protocolVersion: v,
        clientId: cid(),
        username: "x' OR '1'='1",
        password: wrongPw,
      });
      expect(injected.code).toBe(CODES.notAuthorized[v]);
    });
  }
});

describe('secrets', () => {
  it('never appear in any log line or audit event these tests produced', (ctx) => {
    if (!broker) return ctx.skip('mariadb missing');
    expect(ledger.corpus().length).toBeGreaterThan(5);
    expect(ledger.leaks()).toEqual([]);
  });
});
