#!/usr/bin/env node
import { Command } from 'commander';
import { registerAuditCommand } from '../../audit/cli.js';
import { registerPasswdCommand } from '../../authn/password-file/cli.js';
import { registerPolicyCommand } from '../../authz/cli.js';
import { registerCertsCommand } from '../../certs/cli.js';
import { registerBanCommand } from '../guard/cli.js';
import { BROKER_VERSION } from '../version.js';
import { registerStartCommand } from './start.js';

export function buildProgram(): Command {
  const program = new Command('bulwark')
    .description('Bulwark: a security-first MQTT broker')
    .version(BROKER_VERSION)
    .showHelpAfterError();
  registerStartCommand(program);
  registerPasswdCommand(program);
  registerPolicyCommand(program);
  registerAuditCommand(program);
  registerBanCommand(program);
  registerCertsCommand(program);
  return program;
}

buildProgram()
  .parseAsync(process.argv)
  .catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  });
