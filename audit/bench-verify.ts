import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPairSync } from 'node:crypto';
import { sampleEvent } from './bench.js';
import { keyIdOf, type SigningKey } from './signing-key.js';
import { verifyAuditLog } from './verify.js';
import { openAuditWriter } from './writer.js';

/**
 * Verify-speed measurement (a benchmark, not a test): writes N records through the real writer (hash chain,
 * rotation checkpoints, shutdown checkpoint), then verifies the directory in a fresh process so its peak RSS is
 * the verifier's alone.
 *
 *   node dist/audit/bench-verify.js [RECORDS] [ROTATE_MAX_BYTES]
 *   node dist/audit/bench-verify.js --verify DIR      (the child half: prints one JSON line)
 */

export interface VerifySpeed {
  records: number;
  files: number;
  bytes: number;
  seconds: number;
  perSecond: number;
  maxRssMiB: number;
  result: string;
}

function benchKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKey,
    publicKey,
    keyId: keyIdOf(publicKey),
    publicKeyDer: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
  };
}

/** Writes `records` sample denials (plus the writer's own checkpoints) into `dir` with the real writer. */
export async function generateBenchLog(dir: string, records: number, rotateMaxBytes: number): Promise<void> {
  const writer = await openAuditWriter({
    directory: dir,
    signingKey: benchKey(),
    fsync: 'never',
    fsyncIntervalMs: 1000,
    batchDelayMs: 1,
    batchMaxRecords: 4096,
    queueMax: 65_536,
    onFailure: 'fail-closed',
    retryInitialMs: 10,
    retryMaxMs: 100,
    checkpointIntervalMs: 0,
    rotateMaxBytes,
    rotateMaxAgeMs: 86_400_000 * 365,
    retentionMaxFiles: 0,
    retentionMaxAgeMs: 0,
  });
  for (let i = 0; i < records; i++) {
    writer.record(sampleEvent(i));
    if (writer.queueDepth >= 32_768) {
      while (writer.queueDepth > 8_192) await new Promise((r) => setTimeout(r, 1));
    }
  }
  await writer.close();
}

async function verifyChild(dir: string): Promise<void> {
  const start = performance.now();
  const result = await verifyAuditLog(dir);
  const seconds = (performance.now() - start) / 1000;
  const names = readdirSync(dir);
  const bytes = names.reduce((sum, n) => sum + statSync(join(dir, n)).size, 0);
  const out: VerifySpeed = {
    records: result.summary.records,
    files: result.summary.files,
    bytes,
    seconds,
    perSecond: Math.round(result.summary.records / seconds),
    // resourceUsage().maxRSS is in KiB on Linux.
    maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    result: result.kind === 'intact' ? 'intact' : `${result.problem}: ${result.detail}`,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === '--verify' && argv[1]) {
    await verifyChild(argv[1]);
    return;
  }
  const records = Number(argv[0] ?? 1_000_000);
  const rotate = Number(argv[1] ?? 64 * 1024 * 1024);
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-verify-bench-'));
  try {
    const g0 = performance.now();
    await generateBenchLog(dir, records, rotate);
    process.stderr.write(`generated ${records} records in ${((performance.now() - g0) / 1000).toFixed(1)} s\n`);
    const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--verify', dir], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    process.stdout.write(child.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main(process.argv.slice(2));
}
