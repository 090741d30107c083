import { createHash, generateKeyPairSync } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  existsSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { canonicalJson } from '../../../audit/canonical.js';
import { auditRecordSchema } from '../../../audit/record-schema.js';
import { loadSigningKey } from '../../../audit/signing-key.js';
import { verifyAuditLog } from '../../../audit/verify.js';
import { openAuditWriter } from '../../../audit/writer.js';
import { BulwarkError } from '../../../src/errors.js';
import {
  allTempDirs,
  auditFiles,
  deniedPublish,
  findSecrets,
  readLines,
  removeTempDirs,
  tempDir,
  testKey,
  writeCrashedLog,
  writeLog,
  writerOptions,
} from './harness.js';

afterAll(() => {
  expect(findSecrets(allTempDirs())).toEqual([]);
  removeTempDirs();
});

const parse = (line: string): Record<string, unknown> => JSON.parse(line) as Record<string, unknown>;

describe('audit writer and verify on an intact log', () => {
  it('writes one hash-chained record per line that verify accepts with exact counts', async () => {
    const dir = tempDir();
    const writer = await openAuditWriter(writerOptions(dir));
    for (let i = 0; i < 10; i++) writer.record(deniedPublish(i));
    await writer.checkpoint();
    for (let i = 10; i < 20; i++) writer.record(deniedPublish(i));
    await writer.close();

    const files = auditFiles(dir);
    expect(files.map((f) => basename(f))).toEqual(['audit-0000000000000001-000.jsonl']);
    const lines = readLines(files[0] as string);
    expect(lines).toHaveLength(22);
    expect(writer.stats()).toMatchObject({ written: 22, dropped: 0, failures: 0, checkpoints: 2, queueDepth: 0 });

    const result = await verifyAuditLog(dir, {
      publicKeys: [{ keyId: testKey().key.keyId, publicKey: testKey().key.publicKey }],
    });
    expect(result).toEqual({
      kind: 'intact',
      summary: {
        files: 1,
        records: 22,
        firstSeq: 1,
        lastSeq: 22,
        checkpoints: 2,
        keyIds: [testKey().key.keyId],
        trustedKeys: true,
        sealedTornTails: 0,
        retention: undefined,
        uncleanEnds: 0,
        openTail: undefined,
      },
    });
  });

  it('stores each record in canonical form so anyone can recompute its hash from the parsed record', async () => {
    const dir = tempDir();
    await writeLog(dir, 12);
    let prev = '0'.repeat(64);
    for (const line of readLines(auditFiles(dir)[0] as string)) {
      const record = parse(line);
      expect(auditRecordSchema.safeParse(record).success).toBe(true);
      const { hash, ...rest } = record;
      const body = canonicalJson(rest);
      expect(line).toBe(`${body.slice(0, -1)},"hash":"${String(hash)}"}`);
      expect(record.prev_hash).toBe(prev);
      expect(hash).toBe(createHash('sha256').update(prev).update('\n').update(body).digest('hex'));
      prev = hash as string;
    }
  });

  it('writes a secret passed by mistake as [redacted]', async () => {
    const dir = tempDir();
    await writeLog(dir, 3);
    const first = parse(readLines(auditFiles(dir)[0] as string)[0] as string);
    expect(first.labels).toEqual({ attempt: '0', password: '[redacted]' });
  });

  it('ends the log with a shutdown checkpoint that signs the record before it', async () => {
    const dir = tempDir();
    await writeLog(dir, 3);
    const lines = readLines(auditFiles(dir)[0] as string).map(parse);
    const last = lines[lines.length - 1] as Record<string, { action?: string; checkpoint?: unknown; reason?: string }>;
    expect(last.event?.action).toBe('audit.checkpoint');
    expect(last.audit?.reason).toBe('shutdown');
    expect(last.audit?.checkpoint).toMatchObject({
      seq: 3,
      hash: (lines[2] as { hash: string }).hash,
      key_id: testKey().key.keyId,
    });
  });

  it('continues the chain in a new file after a restart and never touches the old file', async () => {
    const dir = tempDir();
    await writeLog(dir, 5);
    const [first] = auditFiles(dir);
    const before = readFileSync(first as string);
    await writeLog(dir, 5);
    expect(readFileSync(first as string).equals(before)).toBe(true);
    const files = auditFiles(dir);
    expect(files.map((f) => basename(f))).toEqual([
      'audit-0000000000000001-000.jsonl',
      'audit-0000000000000007-000.jsonl',
    ]);
    const lastOfFirst = parse(readLines(first as string).pop() as string);
    const firstOfSecond = parse(readLines(files[1] as string)[0] as string);
    expect(firstOfSecond.prev_hash).toBe(lastOfFirst.hash);
    expect(firstOfSecond.seq).toBe(7);
    expect((await verifyAuditLog(dir)).kind).toBe('intact');
  });

  it('rotates by size keeping the chain across files, each rotated file ending with a checkpoint', async () => {
    const dir = tempDir();
    await writeLog(dir, 40, { rotateMaxBytes: 3000, batchMaxRecords: 4 });
    const files = auditFiles(dir);
    expect(files.length).toBeGreaterThan(3);
    for (let i = 1; i < files.length; i++) {
      const prevLast = parse(readLines(files[i - 1] as string).pop() as string);
      expect((prevLast.event as { action: string }).action).toBe('audit.checkpoint');
      expect((prevLast.audit as { reason: string }).reason).toBe('rotation');
      expect(parse(readLines(files[i] as string)[0] as string).prev_hash).toBe(prevLast.hash);
    }
    const result = await verifyAuditLog(dir);
    expect(result.kind).toBe('intact');
    expect(result.summary.files).toBe(files.length);
  });

  it('rotates by age measured on the injected clock', async () => {
    const dir = tempDir();
    let now = Date.parse('2026-11-01T00:00:00Z');
    const writer = await openAuditWriter(writerOptions(dir, { now: () => now, rotateMaxAgeMs: 3_600_000 }));
    writer.record(deniedPublish(1));
    await writer.flush();
    now += 3_600_000;
    writer.record(deniedPublish(2));
    await writer.close();
    expect(auditFiles(dir)).toHaveLength(2);
    expect(parse(readLines(auditFiles(dir)[1] as string)[0] as string)['@timestamp']).toBe('2026-11-01T01:00:00.000Z');
    expect((await verifyAuditLog(dir)).kind).toBe('intact');
  });

  it('appends checkpoints on the configured interval', async () => {
    const dir = tempDir();
    const writer = await openAuditWriter(writerOptions(dir, { checkpointIntervalMs: 10 }));
    writer.record(deniedPublish(1));
    await vi.waitFor(() => expect(writer.stats().checkpoints).toBeGreaterThan(0));
    await writer.close();
    const actions = readLines(auditFiles(dir)[0] as string).map((l) => (parse(l).event as { action: string }).action);
    expect(actions.slice(0, 2)).toEqual(['authz.publish_denied', 'audit.checkpoint']);
  });

  it('deletes the oldest whole files past retention and records it so verify tells retention from tampering', async () => {
    const dir = tempDir();
    await writeLog(dir, 60, { rotateMaxBytes: 3000, batchMaxRecords: 4, retentionMaxFiles: 3 });
    const files = auditFiles(dir);
    expect(files.length).toBeLessThanOrEqual(3);
    const firstSeq = parse(readLines(files[0] as string)[0] as string).seq as number;
    expect(firstSeq).toBeGreaterThan(1);
    const retention = files
      .flatMap((f) => readLines(f).map(parse))
      .filter((r) => (r.event as { action: string }).action === 'audit.retention_deleted');
    expect(retention.length).toBeGreaterThan(0);
    expect(retention.every((r) => (r.audit as { reason: string }).reason === 'max_files')).toBe(true);

    const result = await verifyAuditLog(dir);
    expect(result.kind).toBe('intact');
    expect(result.summary.retention?.deletedThroughSeq).toBe(firstSeq - 1);
    expect(result.summary.firstSeq).toBe(firstSeq);
  });

  it('deletes files whose newest record is older than the retention age, never the file holding the chain head', async () => {
    const dir = tempDir();
    let now = Date.parse('2026-11-01T00:00:00Z');
    const clock = { now: () => now };
    await writeLog(dir, 3, clock);
    now += 3_600_000;
    await writeLog(dir, 3, clock);
    const [oldest, second] = auditFiles(dir);
    now += 3 * 86_400_000;
    await writeLog(dir, 1, { ...clock, retentionMaxAgeMs: 86_400_000 });
    const files = auditFiles(dir);
    expect(files).not.toContain(oldest);
    expect(files).toContain(second);
    const retention = readLines(files[files.length - 1] as string)
      .map(parse)
      .find((r) => (r.event as { action: string }).action === 'audit.retention_deleted');
    expect(retention?.audit).toMatchObject({
      file: basename(oldest as string),
      first_seq: 1,
      last_seq: 4,
      reason: 'max_age',
    });
    const result = await verifyAuditLog(dir);
    expect(result.kind).toBe('intact');
    expect(result.summary.retention).toEqual({ deletedThroughSeq: 4, filesDeleted: 1 });
  });

  it.each(['always', 'interval'] as const)('keeps the log intact with fsync %s', async (fsync) => {
    const dir = tempDir();
    const writer = await openAuditWriter(writerOptions(dir, { fsync, fsyncIntervalMs: 5 }));
    for (let i = 0; i < 30; i++) {
      writer.record(deniedPublish(i));
      if (i % 10 === 0) await writer.flush();
    }
    await writer.close();
    const result = await verifyAuditLog(dir);
    expect(result.kind).toBe('intact');
    expect(result.summary.records).toBe(31);
  });

  it('seals a torn last line at start-up without rewriting it, and verify accepts only the sealed form', async () => {
    const dir = tempDir();
    await writeCrashedLog(dir, 5);
    const [first] = auditFiles(dir);
    const tornBytes = '{"@timestamp":"2026-11-25T10:00:00.000Z","event":{"act';
    appendFileSync(first as string, tornBytes);
    const torn = await verifyAuditLog(dir);
    expect(torn.kind === 'broken' && torn.problem).toBe('truncated');

    const before = readFileSync(first as string);
    await writeLog(dir, 1);
    expect(readFileSync(first as string).equals(before)).toBe(true);
    const second = readLines(auditFiles(dir)[1] as string).map(parse);
    expect(second[0]).toMatchObject({
      seq: 6,
      event: { action: 'audit.torn_tail_sealed', outcome: 'success' },
      audit: {
        file: basename(first as string),
        offset: before.length - tornBytes.length,
        length: tornBytes.length,
        sha256: createHash('sha256').update(tornBytes).digest('hex'),
      },
    });
    const result = await verifyAuditLog(dir);
    expect(result.kind).toBe('intact');
    expect(result.summary.sealedTornTails).toBe(1);
  });

  it('seals torn tails left by two crashes in a row, the second before any record was complete', async () => {
    const dir = tempDir();
    await writeCrashedLog(dir, 3);
    appendFileSync(auditFiles(dir)[0] as string, '{"torn":');
    writeFileSync(join(dir, 'audit-0000000000000004-000.jsonl'), '{"@timestamp":"2026-11-25T10:00:00.000Z","se');
    await writeLog(dir, 1);
    const files = auditFiles(dir);
    expect(basename(files[2] as string)).toBe('audit-0000000000000004-001.jsonl');
    const actions = readLines(files[2] as string).map((l) => (parse(l).event as { action: string }).action);
    expect(actions.slice(0, 2)).toEqual(['audit.torn_tail_sealed', 'audit.torn_tail_sealed']);
    const result = await verifyAuditLog(dir);
    expect(result.kind).toBe('intact');
    expect(result.summary.sealedTornTails).toBe(2);
  });

  it('drops and counts events beyond the queue bound, and fail-closed is not writable while the queue is full', async () => {
    const dir = tempDir();
    const writer = await openAuditWriter(writerOptions(dir, { queueMax: 10, batchDelayMs: 1000 }));
    for (let i = 0; i < 50; i++) writer.record(deniedPublish(i));
    expect(writer.stats()).toMatchObject({ dropped: 40, queueDepth: 10, writable: false });
    expect(writer.writable).toBe(false);
    await writer.flush();
    expect(writer.writable).toBe(true);
    await writer.close();
    expect(writer.stats()).toMatchObject({ written: 11, dropped: 40 });
  });

  it('generates the default signing key 0600 with its public key beside it, and refuses a group-readable key', () => {
    const dir = tempDir();
    const keyFile = join(dir, 'data', 'audit-signing.key');
    const key = loadSigningKey(keyFile, true);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const pub = readFileSync(join(dir, 'data', 'audit-signing.pub'), 'utf8');
    expect(pub).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(loadSigningKey(keyFile, false).keyId).toBe(key.keyId);
    chmodSync(keyFile, 0o640);
    expect(() => loadSigningKey(keyFile, false)).toThrow(BulwarkError);
    expect(() => loadSigningKey(join(dir, 'missing.key'), false)).toThrow(/does not exist/);
  });

  it('never replaces a signing key silently: a deleted or swapped key stops the start while its public key is there', () => {
    const dir = tempDir();
    const keyFile = join(dir, 'data', 'audit-signing.key');
    const pubFile = join(dir, 'data', 'audit-signing.pub');
    const original = loadSigningKey(keyFile, true);
    const pub = readFileSync(pubFile, 'utf8');
    rmSync(keyFile);
    expect(() => loadSigningKey(keyFile, true)).toThrow(/is missing, but its public key .* is there/);
    expect(existsSync(keyFile)).toBe(false);
    expect(readFileSync(pubFile, 'utf8')).toBe(pub);
    // Another key in the file: refused, and the reviewers' public key is left as it was.
    writeFileSync(keyFile, generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }), {
      mode: 0o600,
    });
    expect(() => loadSigningKey(keyFile, true)).toThrow(/does not match its public key/);
    expect(readFileSync(pubFile, 'utf8')).toBe(pub);
    // A deliberate rotation: the old public key moved aside, the new key takes over and gets its own.
    renameSync(pubFile, `${pubFile}.old`);
    const rotated = loadSigningKey(keyFile, true);
    expect(rotated.keyId).not.toBe(original.keyId);
    expect(readFileSync(pubFile, 'utf8')).not.toBe(pub);
  });
});

describe('audit writer start-up on a damaged log', () => {
  it('refuses to start when the newest complete line is not a record', async () => {
    const dir = tempDir();
    await writeLog(dir, 2);
    appendFileSync(auditFiles(dir)[0] as string, 'not a record\n');
    await expect(openAuditWriter(writerOptions(dir))).rejects.toThrow(/holds no readable record/);
  });
});
