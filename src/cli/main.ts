#!/usr/bin/env -S node --max-semi-space-size=2 --no-memory-reducer
// The young generation is capped at 2 MiB (V8's default grows it to 16 MiB): each scavenge then pauses for about
// 1 ms instead of 8-12 ms, which halves the worst-case latency, and an idle connection costs about 3.7 KiB of
// resident memory instead of 5. Throughput stayed within the benchmark's noise (docs/performance.md). `npm start`
// and the benchmark start the broker with the same flag; BULWARK_NODE_OPTIONS in bench/brokers.ts must match.
import { Command } from 'commander';
import { BROKER_VERSION } from '../version.js';
import { deferHangups } from './start-signals.js';

type Registrar = (program: Command) => void;

/**
 * Each command's module is loaded only when that command runs: `bulwark passwd` should not pay for loading the
 * LDAP, SQL and certificate libraries the broker needs.
 */
const commands: Record<string, () => Promise<Registrar>> = {
  start: async () => (await import('./start.js')).registerStartCommand,
  config: async () => (await import('./config.js')).registerConfigCommand,
  passwd: async () => (await import('../../authn/password-file/cli.js')).registerPasswdCommand,
  policy: async () => (await import('../../authz/cli.js')).registerPolicyCommand,
  audit: async () => (await import('../../audit/cli.js')).registerAuditCommand,
  ban: async () => (await import('../guard/cli.js')).registerBanCommand,
  certs: async () => (await import('../../certs/cli.js')).registerCertsCommand,
};

export async function buildProgram(argv: readonly string[]): Promise<Command> {
  const program = new Command('bulwark')
    .description('Bulwark: a security-first MQTT broker')
    .version(BROKER_VERSION)
    .showHelpAfterError();
  const requested = argv.slice(2).find((a) => !a.startsWith('-'));
  const load = requested !== undefined && requested in commands ? [requested] : Object.keys(commands);
  for (const name of load) (await commands[name]!())(program);
  return program;
}

// Before the start command's modules load (most of a second): see start-signals.ts.
if (process.argv.slice(2).find((a) => !a.startsWith('-')) === 'start') deferHangups();

buildProgram(process.argv)
  .then((program) => program.parseAsync(process.argv))
  .catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  });
