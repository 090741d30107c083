import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { loadSigningKey, signingKeyFile } from '../../audit/signing-key.js';
import { createVerificationServices, type VerificationConfig } from '../../authn/config.js';
import { PskStore } from '../../authn/psk/store.js';
import type { AuthenticatorContext, ChainConfig } from '../../authn/registry.js';
import { existingUnknownUserSecret } from '../../authn/scram/unknown-user-secret.js';
import { createAuthorization } from '../../authz/create.js';
import { formatDiagnostic } from '../../authz/model.js';
import { authenticatorRegistry } from '../authentication.js';
import { unsafeDataDir } from '../data-dir.js';
import { BulwarkError } from '../errors.js';
import { blocklistPath, readBlocklistFile } from '../guard/blocklist-store.js';
import { silentLogger } from '../log.js';
import { readBearerToken } from '../metrics/bearer-token.js';
import { createTlsContextManager, tlsContextOptionsFrom } from '../transport/tls-context.js';
import { configValuePosition, parseConfigText, readConfigFile } from './load.js';
import type { BrokerConfig } from './schema.js';

/**
 * Settings that name a file the broker reads at start and refuses to start without. Not here: files the broker
 * writes itself (`guard.blocklist.file`, the audit directory) and `ocsp_stapling.response_file`, which a cron job
 * may write after the start (until then handshakes go unstapled).
 */
const INPUT_FILE_KEYS: ReadonlySet<string> = new Set([
  'password_file',
  'secret_file',
  'public_key_file',
  'unknown_user_secret_file',
  'bearer_token_file',
  'signing_key_file',
  'ca_file',
  'cert_file',
  'key_file',
  'crl_file',
  'issuer_file',
  'psk_file',
]);

type Path = readonly (string | number)[];

/** Every input file the configuration names, with where it is named. */
export function inputFiles(config: BrokerConfig): { path: Path; file: string }[] {
  const found: { path: Path; file: string }[] = [];
  const walk = (value: unknown, path: Path): void => {
    if (Array.isArray(value)) {
      value.forEach((item, index) => walk(item, [...path, index]));
      return;
    }
    if (typeof value !== 'object' || value === null) return;
    for (const [key, member] of Object.entries(value)) {
      const at = [...path, key];
      if (
        typeof member === 'string' &&
        (INPUT_FILE_KEYS.has(key) || (key === 'file' && readsFile(path)) || (key === 'path' && isFileStore(path)))
      )
        found.push({ path: at, file: member });
      else if (key === 'policy_files' && Array.isArray(member))
        member.forEach((f, index) => typeof f === 'string' && found.push({ path: [...at, index], file: f }));
      else walk(member, at);
    }
  };
  walk(config, []);
  return found;
}

/** `file` names an input in authentication steps (password file, SCRAM users) and a listener's `psk`. */
function readsFile(path: Path): boolean {
  return path.includes('steps') || path.at(-1) === 'psk';
}

/** A SCRAM step's `store: { type: file, path }` (elsewhere `path` is no file: `metrics.path` is an HTTP path). */
function isFileStore(path: Path): boolean {
  return path.includes('steps') && path.at(-1) === 'store';
}

/**
 * `bulwark config check`: what `bulwark start` would refuse before opening a port, without starting anything. The
 * schema (with the line of each problem); an existing data_dir fit for the broker; every input file readable, the
 * metrics token and the audit signing key as start reads them; each authentication step built (a SCRAM step's
 * unknown-user secret in data_dir read, when it exists); the policy files loaded and their cases run, as at start;
 * each TLS listener's certificate, key, CA bundle and CRLs built into a context; the password, PSK and SCRAM
 * credential files parsed, and the persisted block list read, as start reads them. Not checked: what needs the
 * network (databases, directories, JWKS, OCSP responders). Files of a section that is off are not read, as by start.
 */
export async function checkConfigFile(file: string): Promise<BrokerConfig> {
  const text = readConfigFile(file).toString('utf8');
  const config = parseConfigText(text, file);
  const baseDir = dirname(resolve(file));
  const absolute = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  // Start creates a missing one (0700); one that exists must be the broker's own, as start requires.
  if (existsSync(config.data_dir)) {
    const problem = unsafeDataDir(config.data_dir);
    if (problem)
      throw new BulwarkError(
        'BULWARK_ERR_CONFIG_INVALID',
        `data_dir: ${problem.message}`,
        configValuePosition(text, file, ['data_dir']),
        problem.hint,
      );
  }
  for (const input of inputFiles(config)) {
    const section = input.path[0];
    // Start reads neither section's files while it is off.
    if ((section === 'audit' && !config.audit.enabled) || (section === 'metrics' && !config.metrics.enabled)) continue;
    // The audit writer opens its files as written, so a relative one is relative to the working directory (as
    // data_dir is), not to the configuration file: checked where start will look.
    const path = section === 'audit' ? resolve(input.file) : absolute(input.file);
    const problem = unreadable(path);
    if (problem !== undefined)
      throw new BulwarkError(
        'BULWARK_ERR_CONFIG_INVALID',
        `${input.path.join('.')}: ${path}: ${problem}`,
        configValuePosition(text, file, input.path),
      );
  }
  if (config.audit.enabled) checkSigningKey(config, text, file);
  // As start reads it: mode 0600, one line of 16 to 4096 visible characters.
  if (config.metrics.enabled && config.metrics.bearer_token_file !== undefined)
    try {
      readBearerToken(config.metrics.bearer_token_file, baseDir);
    } catch (error) {
      atSetting(error, ['metrics', 'bearer_token_file'], text, file);
    }
  await checkAuthentication(config, text, file, baseDir);
  const authorization = createAuthorization(config.authorization, { baseDir });
  const loaded = await authorization.manager.load();
  if (!loaded.ok) {
    const first = loaded.errors[0];
    throw new BulwarkError(
      'BULWARK_ERR_POLICY_INVALID',
      first ? formatDiagnostic(first) : loaded.message,
      undefined,
      loaded.errors.length > 1 ? `${loaded.errors.length - 1} more: run bulwark policy check` : undefined,
    );
  }
  for (const [index, listener] of config.listeners.entries()) {
    if (listener.psk === undefined) continue;
    const psk = new PskStore({
      file: absolute(listener.psk.file),
      watch: false,
      debounceMs: 0,
      onEvent: () => undefined,
    });
    await psk.check().catch((error: unknown) => atSetting(error, ['listeners', index, 'psk', 'file'], text, file));
  }
  // Start refuses a persisted block list it cannot read (starting without the bans would fail open).
  if (existsSync(config.data_dir)) await readBlocklistFile(blocklistPath(config.data_dir, config.guard.blocklist.file));
  for (const [index, listener] of config.listeners.entries()) {
    if (listener.tls === undefined) continue;
    try {
      const manager = await createTlsContextManager(tlsContextOptionsFrom(listener.tls, absolute), () => undefined);
      manager.close();
    } catch (error) {
      atSetting(error, ['listeners', index, 'tls'], text, file);
    }
  }
  return config;
}

/**
 * Each authentication step built as start builds it: secrets, keys and certificates read and checked (an HMAC
 * secret_file under 32 bytes), its credential files parsed, nothing connected (pools and directories open when
 * start starts the chains). One step at a time, so that a refusal names the step and its line.
 */
async function checkAuthentication(config: BrokerConfig, text: string, file: string, baseDir: string): Promise<void> {
  // The section's schema is generated from the registry, so its static type is loose; it was validated already.
  const global = config.authentication as unknown as ChainConfig & { verification: VerificationConfig };
  const context: AuthenticatorContext = {
    verification: createVerificationServices(global.verification),
    onEvent: () => undefined,
    logger: silentLogger,
    baseDir,
  };
  const chains: { path: Path; chain: ChainConfig }[] = [{ path: ['authentication'], chain: global }];
  config.listeners.forEach((listener, index) => {
    if (listener.authentication)
      chains.push({
        path: ['listeners', index, 'authentication'],
        chain: listener.authentication as unknown as ChainConfig,
      });
  });
  for (const { path, chain } of chains) {
    for (const [index, step] of chain.steps.entries()) {
      try {
        const built = authenticatorRegistry.buildChain({ ...chain, steps: [step] }, context);
        for (const s of built.steps) await s.authenticator.checkFiles?.();
        // Start reads the data directory's unknown-user secret for such a step (and makes it when missing).
        const s = step as { type?: unknown; unknown_user_secret_file?: unknown };
        if (s.type === 'scram' && s.unknown_user_secret_file === undefined && existsSync(config.data_dir))
          existingUnknownUserSecret(config.data_dir);
      } catch (error) {
        atSetting(error, [...path, 'steps', index], text, file);
      }
    }
  }
}

/**
 * The checkpoint signing key as start loads it: mode 0600 and an Ed25519 private key. The default one under
 * data_dir only when it exists, as start generates it otherwise; nothing is created here.
 */
function checkSigningKey(config: BrokerConfig, text: string, file: string): void {
  const configured = config.audit.signing_key_file;
  const keyFile = signingKeyFile(configured, config.data_dir);
  if (configured === undefined && !existsSync(keyFile)) return;
  try {
    loadSigningKey(keyFile, false, configured === undefined);
  } catch (error) {
    if (configured === undefined) throw error;
    atSetting(error, ['audit', 'signing_key_file'], text, file);
  }
}

/**
 * A refusal of start's own code, named by the setting it came from and placed at that setting's line (unless it
 * already names a position of its own, in a file the setting points to). Anything else is thrown as it is.
 */
function atSetting(error: unknown, path: Path, text: string, file: string): never {
  if (!(error instanceof BulwarkError)) throw error;
  throw new BulwarkError(
    error.code,
    `${path.join('.')}: ${error.message}`,
    error.position ?? configValuePosition(text, file, path),
    error.hint,
  );
}

function unreadable(path: string): string | undefined {
  try {
    if (!statSync(path).isFile()) return 'not a file';
    accessSync(path, constants.R_OK);
    return undefined;
  } catch (error) {
    return `cannot read (${(error as NodeJS.ErrnoException).code ?? 'error'})`;
  }
}
