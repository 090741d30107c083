import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BULWARK_NODE_OPTIONS } from '../../../bench/brokers.js';

const repoRoot = resolve(import.meta.dirname, '../../..');

describe("the broker's node options", () => {
  it('are the same in the CLI shebang, in npm start and in the benchmark', () => {
    const options = BULWARK_NODE_OPTIONS.join(' ');
    expect(options).toContain('--max-semi-space-size=');
    expect(options).toContain('--no-memory-reducer');
    const shebang = readFileSync(resolve(repoRoot, 'src/cli/main.ts'), 'utf8').split('\n')[0];
    expect(shebang).toBe(`#!/usr/bin/env -S node ${options}`);
    const pkg = JSON.parse(readFileSync(resolve(repoRoot, 'package.json'), 'utf8')) as { scripts: { start: string } };
    expect(pkg.scripts.start).toContain(`node ${options} dist/src/cli/main.js start`);
  });
});
