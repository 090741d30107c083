import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createBuiltinRegistry } from '../../../authn/builtin.js';
import type { AuthenticationChain } from '../../../authn/chain.js';
import { Secret } from '../../../authn/secret.js';
import { VerificationServices } from '../../../authn/verify/services.js';
import { silentLogger } from '../../../src/log.js';
import type { SqlServiceInfo } from '../../helpers/services/types.js';
import { attempt } from '../../unit/authn/fakes.js';
import { createMysqlTable, createPgTable, seedUsers, tableName, UNSALTED_USER } from './sql-fixtures.js';

const backends = [
  { type: 'postgres', service: 'postgres', create: createPgTable, groupsCol: 'groups' },
  { type: 'mysql', service: 'mariadb', create: createMysqlTable, groupsCol: '`groups`' },
] as const;

for (const b of backends) {
  describe(`${b.type} authenticator against a real ${b.service}`, () => {
    const info = inject(b.service);
    const missing = 'missing' in info ? info.missing : undefined;
    let chain: AuthenticationChain;

    beforeAll(async () => {
      if (missing) return;
      const db = info as SqlServiceInfo;
      const table = tableName();
      await b.create(db, table, [...(await seedUsers()), UNSALTED_USER]);
      chain = createBuiltinRegistry().parseAndBuild(
        {
          steps: [
            {
              type: b.type,
              host: db.host,
              port: db.port,
              database: db.database,
              user: db.user,
              password: db.password,
              query: `SELECT password_hash, algorithm, salt, is_superuser, ${b.groupsCol} FROM ${table} WHERE username = \${username}`,
            },
          ],
        },
        { verification: new VerificationServices(), onEvent: () => undefined, logger: silentLogger, baseDir: '.' },
      );
      await chain.start();
    });
    afterAll(async () => {
      await chain?.stop();
    });

    const login = (username: string, password: string) =>
      chain.authenticate(attempt({ username, password: new Secret(password) }));

    it.skipIf(missing)('allows an argon2id user with superuser and groups from the row', async () => {
      const r = await login('argon-user', 'sql-argon-pw');
      expect(r.kind === 'allow' && r.identity).toMatchObject({
        username: 'argon-user',
        superuser: true,
        groups: ['ops', 'lab'],
        authenticator: b.type,
      });
    });

    it.skipIf(missing)('allows bcrypt and salted sha256 rows named by their algorithm column', async () => {
      expect((await login('bcrypt-user', 'sql-bcrypt-pw')).kind).toBe('allow');
      const sha = await login('sha-user', 'sql-sha-pw');
      expect(sha.kind === 'allow' && sha.identity).toMatchObject({ superuser: false, groups: [] });
    });

    it.skipIf(missing)('denies a wrong password with badUserNameOrPassword', async () => {
      expect(await login('argon-user', 'sql-wrong-pw')).toMatchObject({
        kind: 'deny',
        reason: 'badUserNameOrPassword',
      });
      expect(await login('sha-user', 'sql-bcrypt-pw')).toMatchObject({ kind: 'deny', reason: 'badUserNameOrPassword' });
    });

    it.skipIf(missing)('denies a row with an unsalted sha256 digest even for the right password', async () => {
      const r = await login('unsalted-user', 'sql-unsalted-pw');
      expect(r).toMatchObject({ kind: 'deny', reason: 'badUserNameOrPassword', decidedBy: b.type });
      expect(r.steps[0]?.detail).toBe('unsalted sha256 hashes are not supported (the row has no salt)');
    });

    it.skipIf(missing)('an unknown user is ignored, so the chain ends in notAuthorized', async () => {
      const r = await login('nobody', 'whatever-pw');
      expect(r).toMatchObject({ kind: 'deny', reason: 'notAuthorized', decidedBy: 'chain' });
      expect(r.steps[0]?.answer).toBe('ignore');
    });

    it.skipIf(missing)('an SQL injection attempt in the username is only ever data', async () => {
      const r = await login("x' OR '1'='1", 'sql-argon-pw');
      expect(r.steps[0]).toMatchObject({ answer: 'ignore', detail: 'no row for user' });
    });
  });
}
