import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AuditEvent } from '../audit/events.js';
import { Secret } from '../authn/secret.js';
import { BulwarkError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import { ChainAuthorizer, type SourceBinding } from './authorizer.js';
import type { AuthorizationConfig, AuthzSourceConfig } from './config.js';
import { PolicyManager, type PolicyEvent } from './policy-manager.js';
import { PolicyFileSource } from './sources/file.js';
import { JwtClaimSource } from './sources/jwt.js';
import { SqlAclSource } from './sources/sql.js';

/** Finds the shipped `policies/` folder from both the TypeScript sources and the compiled `dist/` tree. */
export function shippedPolicyPath(name = 'default.policy.yaml'): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'policies', name);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new BulwarkError('BULWARK_ERR_CONFIG_INVALID', `shipped policy ${name} not found`);
}

export interface AuthorizationDeps {
  /** Directory relative paths in the configuration are resolved against (the config file's folder). */
  baseDir: string;
  logger?: Logger;
  /** Policy reloads and rejected reloads, for the audit log (see `policyEventToAudit`). */
  onPolicyEvent?: (event: PolicyEvent) => void;
  /** A SQL source failing fast after consecutive failures, and answering again (see `sourceAvailabilityEvent`). */
  onSourceAvailability?: (event: AuditEvent) => void;
}

export interface AuthorizationSubsystem {
  authorizer: ChainAuthorizer;
  /** The SQL sources, for their availability (metrics). */
  sqlSources: readonly SqlAclSource[];
  /** The policy-file manager: `reload('sighup')` on SIGHUP; `current` for explanations. */
  manager: PolicyManager;
  /** Loads the policy (rejecting the start on any error), starts SQL pools and the file watcher. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

function readPassword(s: { password_file?: string; password?: string }, baseDir: string): Secret | undefined {
  if (s.password_file !== undefined) {
    const file = isAbsolute(s.password_file) ? s.password_file : resolve(baseDir, s.password_file);
    try {
      return new Secret(readFileSync(file, 'utf8').split(/\r?\n/)[0] ?? '');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'error';
      throw new BulwarkError('BULWARK_ERR_CONFIG_INVALID', `cannot read password_file: ${code}`, {
        file,
        line: 1,
        column: 1,
      });
    }
  }
  return s.password !== undefined ? new Secret(s.password) : undefined;
}

function binding(s: AuthzSourceConfig, manager: PolicyManager, deps: AuthorizationDeps): SourceBinding {
  switch (s.type) {
    case 'file':
      return { source: new PolicyFileSource(manager, s.id), onError: s.on_error, timeoutMs: 1_000, cacheable: true };
    case 'jwt':
      return { source: new JwtClaimSource(s.id), onError: s.on_error, timeoutMs: 1_000, cacheable: true };
    case 'postgres':
    case 'mysql': {
      const ca = s.tls?.ca_file
        ? readFileSync(isAbsolute(s.tls.ca_file) ? s.tls.ca_file : resolve(deps.baseDir, s.tls.ca_file), 'utf8')
        : undefined;
      const source = new SqlAclSource({
        id: s.id,
        dialect: s.type,
        query: s.query,
        connection: {
          host: s.host,
          port: s.port,
          user: s.user,
          password: readPassword(s, deps.baseDir),
          database: s.database,
          poolSize: s.pool_size,
          tls: s.tls ? { ca, servername: s.tls.server_name, rejectUnauthorized: s.tls.reject_unauthorized } : undefined,
        },
        cacheTtlMs: s.cache_ttl_ms,
        cacheMaxEntries: s.cache_max_entries,
        queryTimeoutMs: s.timeout_ms,
        breaker: { failureThreshold: s.breaker_failure_threshold, resetMs: s.breaker_reset_ms },
        ...(deps.onSourceAvailability ? { onAvailabilityChange: deps.onSourceAvailability } : {}),
        logger: deps.logger,
      });
      return { source, onError: s.on_error, timeoutMs: s.timeout_ms, cacheable: false };
    }
  }
}

/** Builds the authorizer from the `authorization:` configuration section. */
export function createAuthorization(config: AuthorizationConfig, deps: AuthorizationDeps): AuthorizationSubsystem {
  const files =
    config.policy_files.length > 0
      ? config.policy_files.map((f) => (isAbsolute(f) ? f : resolve(deps.baseDir, f)))
      : [shippedPolicyPath()];
  const manager = new PolicyManager({
    files,
    sourceId: 'file',
    runCases: config.run_cases_on_reload,
    debounceMs: config.reload_debounce_ms,
    onEvent: deps.onPolicyEvent,
    logger: deps.logger,
  });
  const ids = new Set<string>();
  for (const s of config.sources) {
    if (ids.has(s.id))
      throw new BulwarkError('BULWARK_ERR_CONFIG_INVALID', `duplicate authorization source id "${s.id}"`);
    ids.add(s.id);
  }
  const bindings = config.sources.map((s) => binding(s, manager, deps));
  const authorizer = new ChainAuthorizer(bindings, { cacheMaxEntries: config.cache_max_entries, logger: deps.logger });
  const usesFiles = config.sources.some((s) => s.type === 'file');
  return {
    authorizer,
    sqlSources: bindings.map((b) => b.source).filter((s): s is SqlAclSource => s instanceof SqlAclSource),
    manager,
    async start() {
      if (usesFiles) {
        const result = await manager.load();
        if (!result.ok) {
          throw new BulwarkError(
            'BULWARK_ERR_POLICY_INVALID',
            result.message,
            undefined,
            'fix the policy and start again',
          );
        }
        if (config.watch) manager.watch();
      }
      await authorizer.start();
    },
    async stop() {
      manager.close();
      await authorizer.stop();
    },
  };
}
