import type { Command } from 'commander';

export function registerStartCommand(program: Command): void {
  program.command('start').description('start the broker');
}
