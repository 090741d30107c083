import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Secret } from '../../../authn/secret.js';
import { canonicalJson } from '../../../audit/canonical.js';
import type { AuditEvent } from '../../../audit/events.js';
import { loadSigningKey, type SigningKey } from '../../../audit/signing-key.js';
import { openAuditWriter, type AuditWriter, type AuditWriterOptions } from '../../../audit/writer.js';

/** Credentials the tests hand to the broker-side code; none may ever reach an audit file or command output. */
export const TEST_SECRETS = ['hunter2-audit-password', 'eyJhbGciOiJIUzI1NiJ9.audit-test-token.sig', 'pa55-auth-data'];

const created: string[] = [];

export function tempDir(prefix = 'bulwark-audit-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
}

let sharedKey: { dir: string; key: SigningKey } | undefined;

/** One generated signing key per test file (created the way the broker creates its default key). */
export function testKey(): { key: SigningKey; publicKeyFile: string; privateKeyFile: string } {
  if (!sharedKey) {
    const dir = tempDir('bulwark-audit-key-');
    sharedKey = { dir, key: loadSigningKey(join(dir, 'audit-signing.key'), true) };
  }
  return {
    key: sharedKey.key,
    publicKeyFile: join(sharedKey.dir, 'audit-signing.pub'),
    privateKeyFile: join(sharedKey.dir, 'audit-signing.key'),
  };
}

export function writerOptions(directory: string, overrides: Partial<AuditWriterOptions> = {}): AuditWriterOptions {
  return {
    directory,
    signingKey: testKey().key,
    fsync: 'never',
    fsyncIntervalMs: 1000,
    batchDelayMs: 1,
    batchMaxRecords: 256,
    queueMax: 100_000,
    onFailure: 'fail-closed',
    retryInitialMs: 5,
    retryMaxMs: 20,
    checkpointIntervalMs: 0,
    rotateMaxBytes: 64 * 1024 * 1024,
    rotateMaxAgeMs: 86_400_000,
    retentionMaxFiles: 0,
    retentionMaxAgeMs: 0,
    ...overrides,
  };
}

/** A denied PUBLISH as the broker records it, with a secret smuggled in where a careless caller might put one. */
export function deniedPublish(i: number, overrides: Partial<AuditEvent> = {}): AuditEvent {
  const leaked = new Secret(TEST_SECRETS[i % TEST_SECRETS.length] as string);
  return {
    event: { action: 'authz.publish_denied', outcome: 'failure', reason: 'no rule allows', code: 'notAuthorized' },
    client: { ip: `10.0.${i % 4}.${(i % 200) + 1}`, port: 40000 + i },
    user: { name: i % 2 === 0 ? 'alice' : 'bob' },
    mqtt: { client_id: `dev-${i}`, topic: `sensors/${i % 3}/temp`, qos: 1, reason_code: 135 },
    authz: { rule: `policies/site.yaml:${10 + (i % 5)}`, source: 'file', action: 'publish' },
    // Secret serialises as [redacted]: the cast mimics a caller passing one where a string is expected.
    labels: { attempt: String(i), password: leaked as unknown as string },
    ...overrides,
  };
}

export async function writeLog(
  directory: string,
  count: number,
  overrides: Partial<AuditWriterOptions> = {},
  event: (i: number) => AuditEvent = deniedPublish,
): Promise<AuditWriter> {
  const writer = await openAuditWriter(writerOptions(directory, overrides));
  for (let i = 0; i < count; i++) writer.record(event(i));
  await writer.close();
  return writer;
}

/**
 * A run that stops the way `kill -9` stops it: every record on disk, no shutdown checkpoint. The writer is
 * abandoned, not closed; its file is never written again.
 */
export async function writeCrashedLog(
  directory: string,
  count: number,
  overrides: Partial<AuditWriterOptions> = {},
): Promise<AuditWriter> {
  const writer = await openAuditWriter(writerOptions(directory, overrides));
  for (let i = 0; i < count; i++) writer.record(deniedPublish(i));
  await writer.flush();
  return writer;
}

export function auditFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.startsWith('audit-') && n.endsWith('.jsonl'))
    .sort()
    .map((n) => join(dir, n));
}

export function readLines(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

export function writeLines(file: string, lines: readonly string[]): void {
  writeFileSync(file, lines.map((l) => `${l}\n`).join(''));
}

/**
 * What an attacker without the signing key can do: recompute `prev_hash` and `hash` of every record from
 * `startPrev` on (the definition is public), leaving checkpoint contents as they are.
 */
export function rechain(
  lines: readonly string[],
  startPrev: string,
  edit?: (r: Record<string, unknown>, index: number, prevHash: string) => void,
): string[] {
  let prev = startPrev;
  return lines.map((line, i) => {
    const r = JSON.parse(line) as Record<string, unknown>;
    edit?.(r, i, prev);
    delete r.hash;
    r.prev_hash = prev;
    const body = canonicalJson(r);
    const hash = createHash('sha256').update(prev).update('\n').update(body).digest('hex');
    prev = hash;
    return `${body.slice(0, -1)},"hash":"${hash}"}`;
  });
}

/** An Ed25519 key the attacker generated, to re-sign a rewritten log. */
export function attackerKey(): { publicKey: string; privateKey: string } {
  return generateKeyPairSync('ed25519', {
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
}

/** Every file under the given directories (and the given texts) that contains a test secret or key material. */
export function findSecrets(dirs: readonly string[], texts: readonly string[] = []): string[] {
  const needles = [...TEST_SECRETS];
  if (sharedKey) {
    const pem = readFileSync(join(sharedKey.dir, 'audit-signing.key'), 'utf8');
    needles.push(pem.split('\n')[1] as string);
  }
  const found: string[] = [];
  const scan = (label: string, text: string): void => {
    for (const n of needles) if (text.includes(n)) found.push(`${label} contains ${n.slice(0, 6)}…`);
  };
  const walk = (path: string): void => {
    const st = statSync(path, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) {
      for (const name of readdirSync(path)) {
        if (name.endsWith('.key')) continue;
        walk(join(path, name));
      }
    } else if (st.isFile()) scan(path, readFileSync(path, 'latin1'));
  };
  for (const d of dirs) walk(d);
  texts.forEach((t, i) => scan(`output #${i}`, t));
  return found;
}

export function allTempDirs(): readonly string[] {
  return created;
}
