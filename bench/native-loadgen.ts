import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export type NativeLoadgen = { ok: true; binary: string } | { ok: false; reason: string };

/**
 * Compiles the C load generator (bench/native/loadgen.c) into the bench's work directory with the machine's C
 * compiler. Built per run, never committed; without a compiler the connect and latency scenarios fall back to the
 * Node load generator, and the run says so.
 */
export function buildNativeLoadgen(repoRoot: string, workDir: string): NativeLoadgen {
  const source = join(repoRoot, 'bench/native/loadgen.c');
  const binary = join(workDir, 'loadgen');
  for (const compiler of ['cc', 'gcc', 'clang']) {
    const r = spawnSync(compiler, ['-O2', '-o', binary, source], { encoding: 'utf8' });
    if (r.error) continue;
    if (r.status === 0) return { ok: true, binary };
    return { ok: false, reason: `${compiler} failed: ${(r.stderr || '').trim().split('\n')[0] ?? ''}` };
  }
  return { ok: false, reason: 'no C compiler (cc, gcc, clang) found' };
}
