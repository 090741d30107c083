/** Connection facts of a real service started once per test run by test/setup/global-setup.ts. */
export interface SqlServiceInfo {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** Server process id, so a test can SIGSTOP/SIGCONT it to simulate an unreachable backend. */
  pid: number;
  /**
   * Unix socket where the server's superuser (`root` / `postgres`) connects without a password, for tests that
   * must change a server-wide setting (and restore it).
   */
  adminSocket?: string;
}

export interface LdapServiceInfo {
  url: string;
  ldapsUrl: string | undefined;
  caFile: string | undefined;
  baseDn: string;
  bindDn: string;
  bindPassword: string;
  pid: number;
}

/** A started service, or the reason it could not start (e.g. the package is missing); tests print it. */
export type Started<T> = { info: T; stop: () => Promise<void> } | { missing: string };
