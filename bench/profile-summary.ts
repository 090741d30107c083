import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `node dist/bench/profile-summary.js FILE.cpuprofile [N]`: the functions where a V8 CPU profile (`node
 * --cpu-prof`, or `npm run bench -- --cpu-prof DIR`) spent its samples, by self time and by inclusive time, and
 * the same grouped by file, so a profile can be read on a machine without Chrome DevTools.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
}

function where(url: string): string {
  if (url === '') return '(native)';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const rel = relative(process.cwd(), path);
  return rel.startsWith('..') ? path : rel;
}

export function summarizeProfile(profile: Profile, top: number): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const total = profile.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const files = new Map<string, number>();
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    if (hits === 0) continue;
    const f = n.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${where(f.url)}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + hits);
    const file = where(f.url).replace(/^node_modules\/([^/]+)\/.*$/, 'node_modules/$1');
    files.set(file, (files.get(file) ?? 0) + hits);
    // Inclusive: count the hit once for every distinct function on the stack.
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const a = (byId.get(id) as ProfileNode).callFrame;
      const k = `${a.functionName || '(anonymous)'} ${where(a.url)}:${a.lineNumber + 1}`;
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + hits);
    }
  }
  const table = (title: string, m: Map<string, number>): string[] => [
    title,
    ...[...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `  ${((v * 100) / total).toFixed(1).padStart(5)}%  ${k}`),
  ];
  const seconds = (profile.endTime - profile.startTime) / 1e6;
  return [
    `${total} samples over ${seconds.toFixed(1)} s`,
    ...table('self time by function:', self),
    ...table('self time by file (node_modules grouped by package):', files),
    ...table('inclusive time by function:', inclusive),
  ].join('\n');
}

const [file, n] = process.argv.slice(2);
if (!file) {
  console.error('usage: node dist/bench/profile-summary.js FILE.cpuprofile [TOP]');
  process.exit(2);
}
console.log(summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as Profile, Number(n ?? 25)));
