import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../helpers/cli.js';

/**
 * docs/cli.md shows every command's `--help` under a `## bulwark <command>` heading. Operators read it instead of
 * the source, so it must say what the program says: each block is compared with the real output.
 */
const DOC = resolve(import.meta.dirname, '../../../docs/cli.md');

function documentedCommands(): { command: string[]; block: string }[] {
  const lines = readFileSync(DOC, 'utf8').split('\n');
  const out: { command: string[]; block: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const heading = /^## bulwark ?(.*)$/.exec(lines[i]!);
    if (!heading || lines[i + 2] !== '```') continue;
    const end = lines.indexOf('```', i + 3);
    out.push({ command: heading[1]!.trim().split(/\s+/).filter(Boolean), block: lines.slice(i + 3, end).join('\n') });
  }
  return out;
}

describe('docs/cli.md', () => {
  const commands = documentedCommands();

  it('documents the top-level commands and their subcommands', () => {
    expect(commands.length).toBeGreaterThan(20);
    expect(commands.map((c) => c.command.join(' '))).toEqual(
      expect.arrayContaining(['', 'start', 'policy explain', 'audit verify', 'ban add', 'certs']),
    );
  });

  it('documents every command the program lists', () => {
    const documented = new Set(commands.map((c) => c.command.join(' ')));
    const missing: string[] = [];
    for (const { command, block } of commands) {
      const listed = block.split('\n').slice(block.split('\n').indexOf('Commands:') + 1);
      if (!block.includes('\nCommands:\n')) continue;
      for (const line of listed) {
        const name = /^ {2}(\S+)/.exec(line)?.[1];
        if (name === undefined) {
          if (line.trim() === '') break;
          continue;
        }
        const full = [...command, name].join(' ');
        if (name !== 'help' && !documented.has(full)) missing.push(`bulwark ${full}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('shows exactly what `--help` prints for every documented command', async () => {
    const mismatches: string[] = [];
    // Four at a time: each is a node process loading one command's modules.
    for (let i = 0; i < commands.length; i += 4) {
      await Promise.all(
        commands.slice(i, i + 4).map(async ({ command, block }) => {
          const result = await runCli([...command, '--help']);
          if (result.stdout.trimEnd() !== block.trimEnd())
            mismatches.push(`bulwark ${command.join(' ')}:\n--- docs/cli.md\n${block}\n--- --help\n${result.stdout}`);
        }),
      );
    }
    expect(mismatches).toEqual([]);
  }, 120_000);
});
