import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, inject, it, vi } from 'vitest';
import { auditMirrorSchema } from '../../../audit/config.js';
import { PostgresAuditMirror } from '../../../audit/mirror.js';
import { verifyAuditLog } from '../../../audit/verify.js';
import { openAuditWriter } from '../../../audit/writer.js';
import { createLogger } from '../../../src/log.js';
import { closedPort } from '../../helpers/authn-wire.js';
import type { SqlServiceInfo } from '../../helpers/services/types.js';
import { auditFiles, deniedPublish, readLines, removeTempDirs, tempDir, writerOptions } from './harness.js';

afterAll(() => removeTempDirs());

const service = inject('postgres');
const info: SqlServiceInfo | undefined = 'missing' in service ? undefined : service;

/** The table definition docs/audit.md gives, under a fresh name. */
function tableDdl(table: string): string[] {
  return [
    `CREATE TABLE ${table} ("@timestamp" timestamptz NOT NULL, seq bigint NOT NULL, action text NOT NULL, outcome text NOT NULL, record jsonb NOT NULL)`,
    `CREATE INDEX ON ${table} ("@timestamp")`,
    `CREATE UNIQUE INDEX ON ${table} (seq)`,
    `CREATE INDEX ON ${table} (action)`,
    `CREATE INDEX ON ${table} (outcome)`,
  ];
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({
    host: info!.host,
    port: info!.port,
    user: info!.user,
    password: info!.password,
    database: info!.database,
  });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function capturedLogger(): { logger: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(
        ...chunk
          .toString()
          .split('\n')
          .filter((l) => l !== ''),
      );
      done();
    },
  });
  return { logger: createLogger('info', sink), lines };
}

function mirrorConfig(
  table: string,
  overrides: Record<string, unknown> = {},
): ReturnType<typeof auditMirrorSchema.parse> {
  const passwordFile = join(tempDir('bulwark-mirror-pw-'), 'pg.password');
  writeFileSync(passwordFile, `${info!.password}\n`, { mode: 0o600 });
  return auditMirrorSchema.parse({
    type: 'postgres',
    host: info!.host,
    port: info!.port,
    database: info!.database,
    user: info!.user,
    password_file: passwordFile,
    table,
    retry_initial: '20ms',
    retry_max: '100ms',
    ...overrides,
  });
}

describe.skipIf(!info)('audit.mirror to a real PostgreSQL', () => {
  it('mirrors every record with its indexed columns, using INSERT and nothing else', async () => {
    const table = `audit_mirror_${randomBytes(4).toString('hex')}`;
    await admin(async (c) => {
      for (const sql of tableDdl(table)) await c.query(sql);
      // The broker's role keeps INSERT only, as docs/audit.md tells a DBA to grant it.
      await c.query(`REVOKE ALL ON ${table} FROM ${info!.user}`);
      await c.query(`GRANT INSERT ON ${table} TO ${info!.user}`);
    });
    const dir = tempDir();
    const { logger, lines: logLines } = capturedLogger();
    const mirror = new PostgresAuditMirror({ config: mirrorConfig(table, { batch_max_records: 7 }), logger });
    const writer = await openAuditWriter(writerOptions(dir, { mirror, logger, batchMaxRecords: 5 }));
    for (let i = 0; i < 40; i++) writer.record(deniedPublish(i));
    await writer.checkpoint();
    await writer.close();
    expect(writer.stats().mirror).toMatchObject({ written: 42, dropped: 0, failures: 0, queued: 0 });

    const fileLines = auditFiles(dir).flatMap((f) => readLines(f));
    await admin(async (c) => {
      await expect(c.query(`SELECT count(*) FROM ${table}`)).rejects.toThrow(/permission denied/);
      await c.query(`GRANT SELECT ON ${table} TO ${info!.user}`);
      const rows = await c.query<{ ts: Date; seq: string; action: string; outcome: string; record: unknown }>(
        `SELECT "@timestamp" AS ts, seq, action, outcome, record FROM ${table} ORDER BY seq`,
      );
      expect(rows.rows).toHaveLength(fileLines.length);
      rows.rows.forEach((row, i) => {
        const stored = JSON.parse(fileLines[i] as string) as {
          '@timestamp': string;
          seq: number;
          event: { action: string; outcome: string };
        };
        expect(row.record).toEqual(stored);
        expect(Number(row.seq)).toBe(stored.seq);
        expect(row.ts.toISOString()).toBe(stored['@timestamp']);
        expect([row.action, row.outcome]).toEqual([stored.event.action, stored.event.outcome]);
      });
      await c.query(`DROP TABLE ${table}`);
    });
    expect(logLines.join('\n')).not.toContain(info!.password);
  });

  it('retries while the table is missing and catches up once it exists, the file log unaffected', async () => {
    const table = `audit_mirror_${randomBytes(4).toString('hex')}`;
    const dir = tempDir();
    const { logger, lines: logLines } = capturedLogger();
    const mirror = new PostgresAuditMirror({ config: mirrorConfig(table), logger });
    const writer = await openAuditWriter(writerOptions(dir, { mirror, logger }));
    for (let i = 0; i < 10; i++) writer.record(deniedPublish(i));
    await writer.flush();
    await vi.waitFor(() => expect(mirror.stats().failures).toBeGreaterThan(0), { timeout: 10_000 });
    expect(mirror.stats()).toMatchObject({ failing: true, lastError: '42P01', written: 0 });
    expect(logLines.some((l) => l.includes('audit mirror: cannot write to PostgreSQL'))).toBe(true);
    await admin(async (c) => {
      for (const sql of tableDdl(table)) await c.query(sql);
    });
    await vi.waitFor(() => expect(mirror.stats()).toMatchObject({ failing: false, written: 10, queued: 0 }), {
      timeout: 10_000,
    });
    expect(logLines.some((l) => l.includes('audit mirror: database writable again'))).toBe(true);
    await writer.close();
    expect((await verifyAuditLog(dir)).kind).toBe('intact');
    const count = await admin(async (c) => {
      const r = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
      await c.query(`DROP TABLE ${table}`);
      return Number(r.rows[0]?.n);
    });
    expect(count).toBe(11);
  });

  it('sets aside a record the database refuses for its content, logged by seq, and mirrors everything else', async () => {
    const table = `audit_mirror_${randomBytes(4).toString('hex')}`;
    await admin(async (c) => {
      for (const sql of tableDdl(table)) await c.query(sql);
    });
    const dir = tempDir();
    const { logger, lines: logLines } = capturedLogger();
    const mirror = new PostgresAuditMirror({ config: mirrorConfig(table, { batch_max_records: 4 }), logger });
    const writer = await openAuditWriter(writerOptions(dir, { mirror, logger, batchMaxRecords: 4 }));
    // A client id with U+0000: the file log stores it as \u0000; PostgreSQL's jsonb refuses it (SQLSTATE 22P05).
    for (let i = 0; i < 10; i++)
      writer.record(i === 5 ? deniedPublish(i, { mqtt: { client_id: 'nul\u0000id', topic: 't' } }) : deniedPublish(i));
    await writer.flush();
    await vi.waitFor(() => expect(mirror.stats()).toMatchObject({ queued: 0, written: 9, refused: 1 }), {
      timeout: 10_000,
    });
    expect(mirror.stats()).toMatchObject({ failing: false, dropped: 0 });
    // Records after the refused one keep flowing, in batches again.
    for (let i = 10; i < 20; i++) writer.record(deniedPublish(i));
    await writer.close();
    expect(writer.stats().mirror).toMatchObject({ written: 20, refused: 1, dropped: 0, queued: 0 });

    const fileLines = auditFiles(dir).flatMap((f) => readLines(f));
    const nul = fileLines.find((l) => l.includes('nul\\u0000id')) as string;
    const nulSeq = (JSON.parse(nul) as { seq: number }).seq;
    const refusedLine = logLines.find((l) => l.includes('audit mirror: record refused by the database'));
    expect(refusedLine).toBeDefined();
    expect(JSON.parse(refusedLine as string)).toMatchObject({ seq: nulSeq, code: '22P05', refused: 1 });
    const seqs = await admin(async (c) => {
      const r = await c.query<{ seq: string }>(`SELECT seq FROM ${table} ORDER BY seq`);
      await c.query(`DROP TABLE ${table}`);
      return r.rows.map((row) => Number(row.seq));
    });
    const expected = fileLines.map((l) => (JSON.parse(l) as { seq: number }).seq).filter((q) => q !== nulSeq);
    expect(seqs).toEqual(expected);
    expect((await verifyAuditLog(dir)).kind).toBe('intact');
  });

  it('an unreachable database never blocks the file log: overflow is dropped from the mirror and counted', async () => {
    const dir = tempDir();
    const { logger, lines: logLines } = capturedLogger();
    const mirror = new PostgresAuditMirror({
      config: mirrorConfig('bulwark_audit', { port: await closedPort(), queue_max: 10 }),
      logger,
    });
    const writer = await openAuditWriter(writerOptions(dir, { mirror, logger, batchMaxRecords: 8 }));
    for (let i = 0; i < 50; i++) writer.record(deniedPublish(i));
    await writer.close();
    const stats = writer.stats();
    expect(stats.written).toBe(51);
    expect(stats.dropped).toBe(0);
    // Every record is either dropped from a full mirror queue or lost at shutdown; all are counted.
    expect(stats.mirror).toMatchObject({ written: 0, queued: 0, dropped: 51 });
    expect(stats.mirror?.failures).toBeGreaterThan(0);
    expect(logLines.some((l) => l.includes('audit mirror: records dropped'))).toBe(true);
    expect(logLines.some((l) => l.includes('records not mirrored at shutdown'))).toBe(true);
    expect((await verifyAuditLog(dir)).kind).toBe('intact');
    expect(logLines.join('\n')).not.toContain(info!.password);
  });
});
