import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { auditRecordJsonSchema } from '../../../audit/record-schema.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

describe('audit/schema.json', () => {
  it('is the JSON Schema generated from the record schema the tests validate against', () => {
    const generated = `${JSON.stringify(auditRecordJsonSchema(), null, 2)}\n`;
    if (process.env.BULWARK_WRITE_AUDIT_SCHEMA === '1') writeFileSync(join(ROOT, 'audit/schema.json'), generated);
    expect(JSON.parse(readFileSync(join(ROOT, 'audit/schema.json'), 'utf8'))).toEqual(JSON.parse(generated));
  });
});
