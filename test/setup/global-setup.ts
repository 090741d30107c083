import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
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

/**
 * Starts each real service once per run, on private loopback ports in a temporary folder. Every temporary file of
 * the run (the tests' own, the brokers' and services' they start) goes under one folder made here, removed at the
 * end: `TMPDIR` points there before any test file runs, so `os.tmpdir()` and `mktemp` in every worker and child
 * process use it. Tests that clean up after themselves still do; those that cannot (a broker killed mid-write,
 * a failed assertion before the cleanup) no longer leave folders behind on the machine.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const runDir = mkdtempSync(join(tmpdir(), 'bulwark-test-run-'));
  // Traversable by others: Mosquitto, started by the bench smoke tests, may drop to its own user to read its files.
  chmodSync(runDir, 0o755);
  const workDir = join(runDir, 'services');
  const started = await Promise.all([
    startPostgres(join(workDir, 'postgres')),
    startMariaDb(join(workDir, 'mariadb')),
    startSlapd(join(workDir, 'slapd')),
  ]);
  const [postgres, mariadb, slapd] = started;
  // Only now: the services' own tools (mariadb-install-db running as user mysql) write temporary files to TMPDIR,
  // and the run folder is not theirs to write.
  process.env.TMPDIR = runDir;
  const provideOne = <T>(s: Started<T>): T | { missing: string } => ('missing' in s ? { missing: s.missing } : s.info);
  project.provide('postgres', provideOne(postgres));
  project.provide('mariadb', provideOne(mariadb));
  project.provide('slapd', provideOne(slapd));
  for (const s of started) if ('missing' in s) console.warn(`[services] ${s.missing}`);
  return async () => {
    await Promise.all(started.map((s) => ('stop' in s ? s.stop().catch(() => undefined) : undefined)));
    rmSync(runDir, { recursive: true, force: true });
  };
}
