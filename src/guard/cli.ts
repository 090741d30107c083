import type { Command } from 'commander';

// Placeholder until the owning subsystem lands its command; keeps the CLI's shape fixed.
export function registerBanCommand(_program: Command): void {}
