import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { auditConfigSchema } from '../../../audit/config.js';
import { openAuditWriter } from '../../../audit/writer.js';
import { removeTempDirs, tempDir, writerOptions } from './harness.js';

afterAll(() => removeTempDirs());

const ROOT = resolve(import.meta.dirname, '../../..');

describe('the audit directory the broker creates', () => {
  it('has the mode the configuration reference and docs/audit.md state: 0750, never readable by others', async () => {
    const directory = join(tempDir(), 'audit');
    const writer = await openAuditWriter(writerOptions(directory));
    await writer.close();
    const mode = statSync(directory).mode & 0o777;
    // The umask may take bits away, never add them.
    expect(mode).toBe(0o750 & ~process.umask());
    expect(mode & 0o007).toBe(0);

    const described = auditConfigSchema.shape.directory.description ?? '';
    expect(described).toContain('Created 0750 if missing');
    expect(readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8')).toContain('Created 0750 if missing');
    expect(readFileSync(join(ROOT, 'docs/audit.md'), 'utf8')).toContain('`<data_dir>/audit/` (created mode 0750)');
  });
});
