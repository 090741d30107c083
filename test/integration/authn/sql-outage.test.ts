import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import { createBuiltinRegistry } from '../../../authn/builtin.js';
import type { AuthenticationChain } from '../../../authn/chain.js';
import { createVerificationServices } from '../../../authn/config.js';
import { verificationConfigSchema } from '../../../authn/registry.js';
import { Secret } from '../../../authn/secret.js';
import type { ChainResult } from '../../../authn/types.js';
import { startMariaDb } from '../../helpers/services/mariadb.js';
import { startPostgres } from '../../helpers/services/postgres.js';
import type { SqlServiceInfo, Started } from '../../helpers/services/types.js';
import { silentLogger } from '../../../src/log.js';
import { attempt } from '../../unit/authn/fakes.js';
import { createMysqlTable, createPgTable, freeze, seedUsers, tableName, thaw } from './sql-fixtures.js';

/**
 * Each backend gets its own server instance here, because freezing the shared one would stall other test
 * files running at the same time.
 */
const backends = [
  { type: 'postgres', start: startPostgres, create: createPgTable, groupsCol: 'groups' },
  { type: 'mysql', start: startMariaDb, create: createMysqlTable, groupsCol: '`groups`' },
] as const;

for (const b of backends) {
  describe(`${b.type} backend down, then back`, () => {
    let workDir: string;
    let started: Started<SqlServiceInfo>;
    let chain: AuthenticationChain;
    const events: AuditEvent[] = [];

    beforeAll(async () => {
      workDir = mkdtempSync(join(tmpdir(), `authn-outage-${b.type}-`));
      started = await b.start(join(workDir, b.type));
      if ('missing' in started) return;
      const db = started.info;
      const table = tableName();
      await b.create(db, table, await seedUsers());
      // No cache, so every CONNECT reaches the database; short timeouts so the test needs no long waits.
      const verification = createVerificationServices(
        verificationConfigSchema.parse({ cache_max_entries: 0, breaker_failure_threshold: 2, breaker_reset_ms: 300 }),
        (e) => events.push(e),
      );
      chain = createBuiltinRegistry().parseAndBuild(
        {
          steps: [
            {
              type: b.type,
              timeout_ms: 3_000,
              host: db.host,
              port: db.port,
              database: db.database,
              user: db.user,
              password: db.password,
              connect_timeout_ms: 400,
              query_timeout_ms: 400,
              query: `SELECT password_hash, algorithm, salt, is_superuser, ${b.groupsCol} FROM ${table} WHERE username = \${username}`,
            },
          ],
        },
        { verification, onEvent: (e) => events.push(e), logger: silentLogger, baseDir: '.' },
      );
      await chain.start();
    }, 90_000);

    afterAll(async () => {
      await chain?.stop();
      if (started && 'stop' in started) await started.stop();
      rmSync(workDir, { recursive: true, force: true });
    }, 60_000);

    const login = async (): Promise<ChainResult> =>
      chain.authenticate(attempt({ username: 'bcrypt-user', password: new Secret('sql-bcrypt-pw') }));

    it('denies serverUnavailable while the database is frozen, fails fast once the breaker opens, and recovers without a restart', async (ctx) => {
      if ('missing' in started) return ctx.skip(started.missing);
      expect((await login()).kind).toBe('allow');

      const frozen = freeze(started.info.pid);
      try {
        const during = await login();
        expect(during).toMatchObject({ kind: 'deny', reason: 'serverUnavailable', decidedBy: b.type });
        expect(during.steps[0]?.answer).toBe('error');
        await login();
        // Threshold reached: the breaker answers without touching the database.
        const fast = await login();
        expect(fast).toMatchObject({ kind: 'deny', reason: 'serverUnavailable' });
        expect(fast.kind === 'deny' && fast.detail).toMatch(/circuit open/);
        expect(events.some((e) => e.event.action === 'authn.backend_unavailable')).toBe(true);
      } finally {
        thaw(frozen);
      }

      let recovered: ChainResult | undefined;
      for (let i = 0; i < 100 && recovered?.kind !== 'allow'; i++) {
        recovered = await login();
        if (recovered.kind !== 'allow') await new Promise((r) => setTimeout(r, 50));
      }
      expect(recovered?.kind).toBe('allow');
      expect(events.some((e) => e.event.action === 'authn.backend_recovered')).toBe(true);
    });
  });
}
