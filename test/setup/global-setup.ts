import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { startMariaDb } from '../helpers/services/mariadb.js';
import { startPostgres } from '../helpers/services/postgres.js';
import { startSlapd } from '../helpers/services/slapd.js';
import type { LdapServiceInfo, SqlServiceInfo, Started } from '../helpers/services/types.js';

declare module 'vitest' {
  export interface ProvidedContext {
    postgres: SqlServiceInfo | { missing: string };
    mariadb: SqlServiceInfo | { missing: string };
    slapd: LdapServiceInfo | { missing: string };
  }
}

/** Starts each real service once per run, on private loopback ports in a temporary folder. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const workDir = mkdtempSync(join(tmpdir(), 'bulwark-services-'));
  const started = await Promise.all([
    startPostgres(join(workDir, 'postgres')),
    startMariaDb(join(workDir, 'mariadb')),
    startSlapd(join(workDir, 'slapd')),
  ]);
  const [postgres, mariadb, slapd] = started;
  const provideOne = <T>(s: Started<T>): T | { missing: string } => ('missing' in s ? { missing: s.missing } : s.info);
  project.provide('postgres', provideOne(postgres));
  project.provide('mariadb', provideOne(mariadb));
  project.provide('slapd', provideOne(slapd));
  for (const s of started) if ('missing' in s) console.warn(`[services] ${s.missing}`);
  return async () => {
    await Promise.all(started.map((s) => ('stop' in s ? s.stop().catch(() => undefined) : undefined)));
    rmSync(workDir, { recursive: true, force: true });
  };
}
