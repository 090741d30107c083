/** A pooled SQL connection as the SQL authenticator uses it. Implementations must never build SQL from values. */
export interface SqlBackend {
  /** Runs a parameterised query; rejects on connection failure, timeout or abort (the connection is discarded). */
  query(text: string, values: readonly (string | null)[], signal: AbortSignal): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

export interface SqlConnectionSettings {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string | undefined;
  poolSize: number;
  connectTimeoutMs: number;
  queryTimeoutMs: number;
  tls: { caFile?: string | undefined; serverName?: string | undefined; rejectUnauthorized: boolean } | undefined;
}
