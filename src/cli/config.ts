import type { Command } from 'commander';
import { renderConfigurationReference } from '../config/reference.js';
import { BulwarkError } from '../errors.js';
import { DATA_DIR_ANCESTOR_WARNING, dataDirAncestorProblems } from '../data-dir.js';

export function registerConfigCommand(program: Command): void {
  const config = program
    .command('config')
    .description('Check a configuration file, or print the configuration reference');
  config
    .command('check')
    .argument('<file>', 'YAML configuration file')
    .description('Validate a configuration file without starting the broker; exits non-zero naming file:line:column')
    .action(async (file: string) => {
      try {
        // Loaded only when it runs, like every subcommand: it brings the policy engine and TLS.
        const { checkConfigFile } = await import('../config/check.js');
        const config = await checkConfigFile(file);
        for (const { folder, problem } of dataDirAncestorProblems(config.data_dir))
          console.error(`${file}: warning: data_dir: ${DATA_DIR_ANCESTOR_WARNING}: ${folder} is ${problem}`);
        console.log(`${file}: OK`);
      } catch (error) {
        console.error(error instanceof BulwarkError ? error.describe() : (error as Error).message);
        process.exitCode = 1;
      }
    });
  config
    .command('reference')
    .description('Print the configuration reference (docs/configuration.md) generated from the schema')
    .action(() => {
      process.stdout.write(renderConfigurationReference());
    });
}
