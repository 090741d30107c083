import { describe, expect, it } from 'vitest';
import { auditConfigSchema, auditMirrorSchema } from '../../../audit/config.js';

const base = { type: 'postgres', database: 'security', user: 'bulwark_audit_writer' } as const;

describe('audit.mirror configuration', () => {
  it('is off unless configured, and fills in its defaults when it is', () => {
    expect(auditConfigSchema.parse({}).mirror).toBeUndefined();
    expect(auditMirrorSchema.parse(base)).toMatchObject({
      host: '127.0.0.1',
      port: 5432,
      table: 'bulwark_audit',
      queue_max: 100_000,
      batch_max_records: 500,
      connect_timeout: 5_000,
      query_timeout: 10_000,
      retry_initial: 1_000,
      retry_max: 60_000,
    });
  });

  it('accepts plain and schema-qualified table names only, since the name is part of the statement', () => {
    for (const table of ['bulwark_audit', 'audit.records', '_t1']) {
      expect(auditMirrorSchema.safeParse({ ...base, table }).success, table).toBe(true);
    }
    for (const table of ['a;drop table x', 'a"b', 'a.b.c', '1abc', 'a b', '']) {
      expect(auditMirrorSchema.safeParse({ ...base, table }).success, table).toBe(false);
    }
  });

  it('wants an absolute password_file and has no inline password', () => {
    expect(auditMirrorSchema.safeParse({ ...base, password_file: '/etc/bulwark/db.pw' }).success).toBe(true);
    expect(auditMirrorSchema.safeParse({ ...base, password_file: 'db.pw' }).success).toBe(false);
    expect(auditMirrorSchema.safeParse({ ...base, password: 'x' }).success).toBe(false);
  });
});
