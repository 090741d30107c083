import type { Command } from 'commander';

// Placeholder until the owning subsystem lands its command; keeps the CLI's shape fixed.
export function registerAuditCommand(_program: Command): void {}
