import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/**
 * Transpiles the audit writer (and the src/ modules it imports) to plain ESM in `outDir`, so a child process
 * can run the real writer with plain `node`: the crash test needs a process it can kill -9.
 */
export function buildWriterForChild(outDir: string): void {
  const sources = [
    ...readdirSync(join(ROOT, 'audit'))
      .filter((n) => n.endsWith('.ts'))
      .map((n) => `audit/${n}`),
    'src/errors.ts',
    'src/log.ts',
    'src/owner-only-file.ts',
    'src/sql-drivers.ts',
  ];
  for (const rel of sources) {
    const out = ts.transpileModule(readFileSync(join(ROOT, rel), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      fileName: rel,
    });
    const target = join(outDir, rel.replace(/\.ts$/, '.js'));
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, out.outputText);
  }
  writeFileSync(join(outDir, 'package.json'), '{"type":"module"}\n');
  symlinkSync(join(ROOT, 'node_modules'), join(outDir, 'node_modules'), 'dir');
}
