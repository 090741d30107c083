import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ScramAuthenticator } from '../../../../authn/scram/authenticator.js';
import { deriveScramCredential, type ScramCredential } from '../../../../authn/scram/mechanism.js';
import {
  createMysqlScramStore,
  createPostgresScramStore,
  type ScramSqlStore,
} from '../../../../authn/scram/sql-store.js';
import type { ConnectAttempt } from '../../../../authn/types.js';
import { ScramClient } from '../../../helpers/scram-client.js';
import type { SqlServiceInfo } from '../../../helpers/services/types.js';

const table = `mqtt_scram_${process.pid}`;

function connectAttempt(method: string, data: Buffer): ConnectAttempt {
  return {
    listener: 'test',
    clientId: 'c1',
    username: undefined,
    password: undefined,
    protocolVersion: 5,
    peer: { address: '127.0.0.1', port: 1 },
    tls: undefined,
    authMethod: method,
    authData: data,
  };
}

async function login(auth: ScramAuthenticator, username: string, password: string): Promise<string> {
  const client = new ScramClient({ hash: 'SHA-256', username, password });
  const connect = connectAttempt('SCRAM-SHA-256', client.clientFirst());
  const first = await auth.authenticate(connect, AbortSignal.timeout(5000));
  if (first.kind !== 'continue') return first.kind;
  const final = await auth.step(
    {
      attempt: connect,
      method: 'SCRAM-SHA-256',
      data: client.clientFinal(first.data),
      state: first.state,
      reauthentication: false,
    },
    AbortSignal.timeout(5000),
  );
  return final.kind === 'allow' && client.verifyServerFinal(final.authData) ? 'allow' : final.kind;
}

const backends = [
  { name: 'postgres', info: inject('postgres'), placeholders: ['$1', '$2', '$3', '$4', '$5', '$6'] },
  { name: 'mysql', info: inject('mariadb'), placeholders: ['?', '?', '?', '?', '?', '?'] },
] as const;

for (const backend of backends) {
  const info: SqlServiceInfo | undefined = 'missing' in backend.info ? undefined : backend.info;
  if (!info) console.warn(`[skip] ${'missing' in backend.info ? backend.info.missing : ''}`);

  describe.skipIf(!info)(`SCRAM credentials in a ${backend.name} table`, () => {
    let store: ScramSqlStore;
    let alice: ScramCredential;
    const exec = async (sql: string, params: unknown[] = []): Promise<void> => {
      if (backend.name === 'postgres') {
        const c = new pg.Client({ ...info, host: info?.host, port: info?.port });
        await c.connect();
        try {
          await c.query(sql, params);
        } finally {
          await c.end();
        }
      } else {
        const c = await mysql.createConnection({
          host: info?.host,
          port: info?.port,
          user: info?.user,
          password: info?.password,
          database: info?.database,
        });
        try {
          await c.query(sql, params);
        } finally {
          await c.end();
        }
      }
    };

    beforeAll(async () => {
      const blob = backend.name === 'postgres' ? 'bytea' : 'varbinary(64)';
      await exec(
        `CREATE TABLE ${table} (username varchar(100), mechanism varchar(20), salt ${blob}, iterations int, stored_key ${blob}, server_key ${blob})`,
      );
      alice = await deriveScramCredential('alice-pw', 'SCRAM-SHA-256', 4096);
      const p = backend.placeholders;
      await exec(`INSERT INTO ${table} VALUES (${p.join(', ')})`, [
        'alice',
        'SCRAM-SHA-256',
        alice.salt,
        alice.iterations,
        alice.storedKey,
        alice.serverKey,
      ]);
      const statement = `SELECT salt, iterations, stored_key, server_key FROM ${table} WHERE username = ${p[0]} AND mechanism = ${p[1]}`;
      const options = {
        host: info?.host ?? '',
        port: info?.port ?? 0,
        user: info?.user ?? '',
        password: info?.password ?? '',
        database: info?.database ?? '',
        maxConnections: 2,
        queryTimeoutMs: 3000,
        statement,
      };
      store = backend.name === 'postgres' ? createPostgresScramStore(options) : createMysqlScramStore(options);
    });

    afterAll(async () => {
      await store?.stop();
      await exec(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
    });

    it('completes an exchange from the stored row and refuses a wrong password', async () => {
      const auth = new ScramAuthenticator({ store });
      expect(await login(auth, 'alice', 'alice-pw')).toBe('allow');
      expect(await login(auth, 'alice', 'wrong')).toBe('deny');
    });

    it('returns the stored keys unchanged and nothing for an unknown user or an injection attempt', async () => {
      const signal = AbortSignal.timeout(5000);
      expect(await store.lookup('alice', 'SCRAM-SHA-256', signal)).toEqual(alice);
      expect(await store.lookup('bob', 'SCRAM-SHA-256', signal)).toBeUndefined();
      expect(await store.lookup("x' OR '1'='1", 'SCRAM-SHA-256', signal)).toBeUndefined();
      expect(await store.lookup('alice', 'SCRAM-SHA-512', signal)).toBeUndefined();
    });
  });
}
