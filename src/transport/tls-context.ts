import { X509Certificate as NodeX509Certificate, createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { type SecureVersion, type Server, type TLSSocket, type TlsOptions, createSecureContext } from 'node:tls';
import type { X509Crl } from '@peculiar/x509';
import { z } from 'zod';
import type { AuditEvent } from '../../audit/events.js';
import { BulwarkError } from '../errors.js';

const require = createRequire(import.meta.url);

/**
 * @peculiar/x509's CRL parser, loaded the first time a listener has a CRL file: with the ASN.1 modules it brings it
 * is about 19 MB of resident memory, which a broker without CRLs should not carry. It needs the Reflect metadata
 * polyfill loaded first.
 */
function crlParser(): typeof X509Crl {
  require('reflect-metadata');
  return (require('@peculiar/x509') as { X509Crl: typeof X509Crl }).X509Crl;
}

export const tlsSettingsSchema = z
  .object({
    cert_file: z.string().min(1).describe('PEM server certificate, followed by any intermediate CA certificates.'),
    key_file: z.string().min(1).describe('PEM private key of the server certificate (unencrypted; keep it mode 0600).'),
    ca_file: z
      .string()
      .min(1)
      .optional()
      .describe(
        'PEM bundle of CA certificates that issue client certificates. Setting it asks clients for a certificate (mTLS).',
      ),
    crl_file: z
      .string()
      .min(1)
      .optional()
      .describe(
        'PEM file of CRLs (one per CA in the client chains: OpenSSL then requires a CRL for every CA, else UNABLE_TO_GET_CRL). Reloaded on change.',
      ),
    require_certificate: z
      .boolean()
      .default(false)
      .describe(
        'Refuse clients without a valid certificate at the TLS layer, after recording why. Otherwise the `x509` authenticator decides.',
      ),
    min_version: z
      .enum(['TLSv1.2', 'TLSv1.3'])
      .default('TLSv1.2')
      .describe('Lowest TLS version accepted. TLS 1.0 and 1.1 are not offered.'),
    max_version: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.3').describe('Highest TLS version accepted.'),
    ciphers: z
      .string()
      .min(1)
      .optional()
      .describe(
        'OpenSSL cipher list; TLS 1.3 suites (TLS_AES_128_GCM_SHA256, ...) go here too. Default: Node’s secure default list.',
      ),
    honor_cipher_order: z.boolean().default(true).describe('Prefer the server’s cipher order over the client’s.'),
    watch: z
      .boolean()
      .default(true)
      .describe(
        'Reload the certificate, key, CA and CRL files when they change; a bad new pair keeps the old one serving.',
      ),
    reload_debounce_ms: z
      .number()
      .int()
      .min(0)
      .max(60_000)
      .default(200)
      .describe('Changes within this window cause one reload (a certificate and key written one after the other).'),
  })
  .strict();

export type TlsSettings = z.output<typeof tlsSettingsSchema>;

export interface TlsContextOptions {
  certFile: string;
  keyFile: string;
  caFile?: string;
  crlFile?: string;
  /** Ask clients for a certificate. Default: true when `caFile` is set. */
  requestCert?: boolean;
  minVersion?: SecureVersion;
  maxVersion?: SecureVersion;
  ciphers?: string;
  honorCipherOrder?: boolean;
  pskCallback?: (socket: TLSSocket, identity: string) => Buffer | null;
  pskIdentityHint?: string;
  watch?: boolean;
  debounceMs?: number;
  /** Clock for certificate validity checks; tests inject one. */
  now?: () => number;
}

/** What the server certificate currently serving is. */
export interface ServingCertificate {
  subject: string;
  fingerprint256: string;
  serialNumber: string;
  validTo: Date;
}

export type TlsContextEvent =
  | {
      action: 'tls.reloaded';
      certificate: ServingCertificate;
      crl?: { count: number; nextUpdate?: Date };
      warnings: string[];
    }
  | { action: 'tls.reload_failed'; reason: string; file?: string };

export type TlsReloadResult =
  | { kind: 'reloaded'; certificate: ServingCertificate; warnings: string[] }
  | { kind: 'unchanged' }
  | { kind: 'failed'; reason: string; file?: string };

export interface TlsContextManager {
  /** Options for `tls.createServer` (or `https.createServer` for wss): the current material plus policy. */
  serverOptions(): TlsOptions;
  /** Servers whose context `reload()` swaps with `setSecureContext()`. Existing connections keep theirs. */
  attach(server: Server): void;
  detach(server: Server): void;
  /** Reads the files again; swaps only when they changed and the new material is valid. */
  reload(): Promise<TlsReloadResult>;
  readonly certificate: ServingCertificate;
  /** The PEM certificate chain currently serving (for OCSP stapling). */
  readonly certificatePem: string;
  close(): void;
}

interface Material {
  cert: string;
  key: string;
  ca?: string;
  crl?: string[];
  digest: string;
}

/** Node's `crl` option reads only the first CRL of a PEM buffer, so each one is passed separately. */
export function splitCrls(pem: string): string[] {
  return pem.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----\n?/g) ?? [];
}

type Loaded = { ok: true; material: Material } | { ok: false; reason: string; file?: string };

async function readMaterial(options: TlsContextOptions): Promise<Loaded> {
  const files: Array<[keyof Omit<Material, 'digest' | 'crl'> | 'crl', string | undefined]> = [
    ['cert', options.certFile],
    ['key', options.keyFile],
    ['ca', options.caFile],
    ['crl', options.crlFile],
  ];
  const texts: Partial<Record<'cert' | 'key' | 'ca' | 'crl', string>> = {};
  const hash = createHash('sha256');
  for (const [name, file] of files) {
    if (file === undefined) continue;
    try {
      texts[name] = await readFile(file, 'utf8');
    } catch (error) {
      return {
        ok: false,
        reason: `cannot read ${name} file (${(error as NodeJS.ErrnoException).code ?? 'EIO'})`,
        file,
      };
    }
    hash
      .update(name)
      .update('\0')
      .update(texts[name] ?? '')
      .update('\0');
  }
  const material: Material = { cert: texts.cert ?? '', key: texts.key ?? '', digest: hash.digest('hex') };
  if (texts.ca !== undefined) material.ca = texts.ca;
  if (texts.crl !== undefined) {
    material.crl = splitCrls(texts.crl);
    if (material.crl.length === 0)
      return { ok: false, reason: 'CRL file holds no X509 CRL block', file: options.crlFile };
  }
  return { ok: true, material };
}

function describeServing(pem: string): ServingCertificate {
  const cert = new NodeX509Certificate(pem);
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    fingerprint256: cert.fingerprint256,
    serialNumber: cert.serialNumber,
    validTo: new Date(cert.validTo),
  };
}

type Validated =
  | { ok: true; certificate: ServingCertificate; warnings: string[]; crl?: { count: number; nextUpdate?: Date } }
  | { ok: false; reason: string; file?: string };

/** Builds a context from `material` the way the server will, so a bad pair fails here and not on the listener. */
function validate(options: TlsContextOptions, material: Material, base: TlsOptions): Validated {
  const now = options.now?.() ?? Date.now();
  let certificate: ServingCertificate;
  try {
    certificate = describeServing(material.cert);
  } catch {
    return { ok: false, reason: 'certificate file holds no readable PEM certificate', file: options.certFile };
  }
  let notBefore: number;
  try {
    notBefore = new Date(new NodeX509Certificate(material.cert).validFrom).getTime();
  } catch {
    notBefore = 0;
  }
  if (certificate.validTo.getTime() <= now)
    return { ok: false, reason: `certificate expired at ${certificate.validTo.toISOString()}`, file: options.certFile };
  if (notBefore > now)
    return {
      ok: false,
      reason: `certificate is not valid before ${new Date(notBefore).toISOString()}`,
      file: options.certFile,
    };
  try {
    createSecureContext({ ...base, cert: material.cert, key: material.key, ca: material.ca, crl: material.crl });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const file = /key values mismatch|private key|PEM_read_bio_PrivateKey|bad decrypt/i.test(message)
      ? options.keyFile
      : /crl/i.test(message)
        ? options.crlFile
        : undefined;
    return {
      ok: false,
      reason: /key values mismatch/.test(message) ? 'private key does not match the certificate' : message,
      file,
    };
  }
  const warnings: string[] = [];
  let crl: { count: number; nextUpdate?: Date } | undefined;
  if (material.crl) {
    crl = { count: material.crl.length };
    for (const pem of material.crl) {
      try {
        const parsed = new (crlParser())(pem);
        const next = parsed.nextUpdate;
        if (next && (crl.nextUpdate === undefined || next < crl.nextUpdate)) crl.nextUpdate = next;
        if (next && next.getTime() <= now)
          warnings.push(
            `CRL of ${parsed.issuer} expired at ${next.toISOString()}: every client certificate from that CA is refused (CRL_HAS_EXPIRED)`,
          );
      } catch {
        return { ok: false, reason: 'CRL file holds an unreadable CRL', file: options.crlFile };
      }
    }
  }
  const daysLeft = (certificate.validTo.getTime() - now) / 86_400_000;
  if (daysLeft < 14) warnings.push(`server certificate expires in ${Math.floor(daysLeft)} days`);
  return { ok: true, certificate, warnings, crl };
}

/**
 * Owns a TLS listener's certificate, key, CA bundle and CRLs. Loads them once (a failure then is a startup
 * error), then reloads them when the files change: the new material is validated by building a secure
 * context first, and only then swapped into every attached server. New handshakes use the new context;
 * established connections keep theirs. `rejectUnauthorized` is always false so that the broker can record
 * why a client certificate was refused (Node otherwise resets the socket with no reason under TLS 1.3) and
 * then close the connection itself; callers must check `socket.authorized` when a certificate is required.
 */
export async function createTlsContextManager(
  options: TlsContextOptions,
  onEvent: (event: TlsContextEvent) => void,
): Promise<TlsContextManager> {
  const base: TlsOptions = {
    minVersion: options.minVersion ?? 'TLSv1.2',
    maxVersion: options.maxVersion ?? 'TLSv1.3',
    honorCipherOrder: options.honorCipherOrder ?? true,
    requestCert: options.requestCert ?? options.caFile !== undefined,
    rejectUnauthorized: false,
  };
  if (base.minVersion === 'TLSv1' || base.minVersion === 'TLSv1.1') {
    throw new BulwarkError(
      'BULWARK_ERR_CONFIG_INVALID',
      `TLS minimum version ${base.minVersion} is not supported`,
      undefined,
      'use TLSv1.2 or TLSv1.3',
    );
  }
  if (base.minVersion === 'TLSv1.3' && base.maxVersion === 'TLSv1.2') {
    throw new BulwarkError(
      'BULWARK_ERR_CONFIG_INVALID',
      'TLS max_version is below min_version',
      undefined,
      'raise max_version or lower min_version',
    );
  }
  if (options.ciphers !== undefined) base.ciphers = options.ciphers;
  if (options.pskCallback) base.pskCallback = options.pskCallback;
  if (options.pskIdentityHint !== undefined) base.pskIdentityHint = options.pskIdentityHint;

  const first = await readMaterial(options);
  if (!first.ok)
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      first.reason,
      first.file ? { file: first.file, line: 1, column: 1 } : undefined,
    );
  const firstCheck = validate(options, first.material, base);
  if (!firstCheck.ok) {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      firstCheck.reason,
      firstCheck.file ? { file: firstCheck.file, line: 1, column: 1 } : undefined,
      'fix the TLS files and start again',
    );
  }
  let material = first.material;
  let serving = firstCheck.certificate;
  const servers = new Set<Server>();
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<TlsReloadResult> | undefined;

  const current = (): TlsOptions => ({
    ...base,
    cert: material.cert,
    key: material.key,
    ca: material.ca,
    crl: material.crl,
  });

  const doReload = async (): Promise<TlsReloadResult> => {
    const loaded = await readMaterial(options);
    if (!loaded.ok) {
      onEvent({ action: 'tls.reload_failed', reason: loaded.reason, file: loaded.file });
      return { kind: 'failed', reason: loaded.reason, file: loaded.file };
    }
    if (loaded.material.digest === material.digest) return { kind: 'unchanged' };
    const checked = validate(options, loaded.material, base);
    if (!checked.ok) {
      onEvent({ action: 'tls.reload_failed', reason: checked.reason, file: checked.file });
      return { kind: 'failed', reason: checked.reason, file: checked.file };
    }
    const next = {
      ...base,
      cert: loaded.material.cert,
      key: loaded.material.key,
      ca: loaded.material.ca,
      crl: loaded.material.crl,
    };
    for (const server of servers) {
      try {
        server.setSecureContext(next);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        onEvent({ action: 'tls.reload_failed', reason });
        return { kind: 'failed', reason };
      }
    }
    material = loaded.material;
    serving = checked.certificate;
    onEvent({ action: 'tls.reloaded', certificate: serving, crl: checked.crl, warnings: checked.warnings });
    return { kind: 'reloaded', certificate: serving, warnings: checked.warnings };
  };

  const manager: TlsContextManager = {
    serverOptions: current,
    attach: (server) => void servers.add(server),
    detach: (server) => void servers.delete(server),
    reload: () => {
      inFlight ??= doReload().finally(() => {
        inFlight = undefined;
      });
      return inFlight;
    },
    get certificate() {
      return serving;
    },
    get certificatePem() {
      return material.cert;
    },
    close: () => {
      for (const w of watchers) w.close();
      watchers.length = 0;
      if (timer) clearTimeout(timer);
      servers.clear();
    },
  };

  if (options.watch ?? true) {
    // Watch folders, not files: certbot, Kubernetes secrets and editors replace files by rename or symlink swap.
    const byDir = new Map<string, Set<string>>();
    for (const file of [options.certFile, options.keyFile, options.caFile, options.crlFile]) {
      if (file === undefined) continue;
      const names = byDir.get(dirname(file)) ?? new Set<string>();
      names.add(basename(file));
      byDir.set(dirname(file), names);
    }
    for (const [dir, names] of byDir) {
      const watcher = watch(dir, { persistent: false }, (_event, changed) => {
        if (changed !== null && !names.has(changed) && !changed.startsWith('..')) return;
        if (timer) clearTimeout(timer);
        timer = setTimeout(() => void manager.reload(), options.debounceMs ?? 200);
        timer.unref();
      });
      watcher.on('error', () => undefined);
      watchers.push(watcher);
    }
  }
  return manager;
}

/** Options for `createTlsContextManager` from the listener's `tls` settings; relative paths resolve with `resolvePath`. */
export function tlsContextOptionsFrom(
  settings: TlsSettings,
  resolvePath: (p: string) => string = (p) => p,
): TlsContextOptions {
  const options: TlsContextOptions = {
    certFile: resolvePath(settings.cert_file),
    keyFile: resolvePath(settings.key_file),
    minVersion: settings.min_version,
    maxVersion: settings.max_version,
    honorCipherOrder: settings.honor_cipher_order,
    watch: settings.watch,
    debounceMs: settings.reload_debounce_ms,
  };
  if (settings.ca_file !== undefined) options.caFile = resolvePath(settings.ca_file);
  if (settings.crl_file !== undefined) options.crlFile = resolvePath(settings.crl_file);
  if (settings.ciphers !== undefined) options.ciphers = settings.ciphers;
  return options;
}

/** The audit record for a context event (`tls.reloaded`, `tls.reload_failed`). */
/** `certFile` names the file a successful reload serves, in `policy.file` as docs/audit.md lists it. */
export function tlsEventToAudit(event: TlsContextEvent, listener: string, certFile?: string): AuditEvent {
  if (event.action === 'tls.reload_failed') {
    return {
      event: {
        action: 'tls.reload_failed',
        outcome: 'failure',
        reason: `${event.reason}; the previous certificate keeps serving`,
      },
      mqtt: { listener },
      policy: { ...(event.file !== undefined ? { file: event.file } : {}), error: event.reason },
      actor: 'broker',
    };
  }
  const labels: Record<string, string> = {
    serial: event.certificate.serialNumber,
    not_after: event.certificate.validTo.toISOString(),
  };
  if (event.crl) labels.crl_count = String(event.crl.count);
  if (event.crl?.nextUpdate) labels.crl_next_update = event.crl.nextUpdate.toISOString();
  if (event.warnings.length > 0) labels.warnings = event.warnings.join('; ');
  return {
    event: { action: 'tls.reloaded', outcome: 'success', reason: 'TLS certificate, key, CA or CRL files changed' },
    mqtt: { listener },
    tls: { subject: event.certificate.subject, fingerprint: event.certificate.fingerprint256 },
    ...(certFile !== undefined ? { policy: { file: certFile } } : {}),
    actor: 'broker',
    labels,
  };
}
