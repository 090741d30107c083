import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { loadConfigFile, localOnlyConfig } from '../config/load.js';
import type { BrokerConfig } from '../config/schema.js';
import { BulwarkError } from '../errors.js';
import { BulwarkServer } from '../server.js';

export interface StartOptions {
  config?: string;
  port?: string;
  dataDir?: string;
  repair?: boolean;
}

/** Configuration from the file (or the local-only default), with command-line overrides applied. */
export function resolveStartConfig(options: StartOptions): BrokerConfig {
  const config = options.config ? loadConfigFile(options.config) : localOnlyConfig();
  if (options.port !== undefined) {
    const port = Number(options.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new Error(`--port: ${options.port} is not a port number`);
    config.listeners[0]!.port = port;
  }
  if (options.dataDir !== undefined) config.data_dir = options.dataDir;
  return config;
}

export function registerStartCommand(program: Command): void {
  program
    .command('start')
    .description(
      'Start the broker. Without -c it listens on 127.0.0.1:1883 only and allows anonymous clients only there ' +
        '(Mosquitto 2 local-only mode), keeping data under ./data.',
    )
    .option('-c, --config <file>', 'YAML configuration file (see docs/configuration.md)')
    .option('-p, --port <port>', 'port of the first listener, overriding the file')
    .option('--data-dir <dir>', 'data directory, overriding the file')
    .option('--repair', 'start from a damaged store, keeping every readable record and logging what was dropped')
    .action(async (options: StartOptions) => {
      let config: BrokerConfig;
      try {
        config = resolveStartConfig(options);
      } catch (error) {
        console.error(
          `bulwark: invalid configuration: ${error instanceof BulwarkError ? error.describe() : (error as Error).message}`,
        );
        process.exit(2);
      }
      let server: BulwarkServer;
      try {
        server = new BulwarkServer({
          config,
          repair: options.repair ?? false,
          baseDir: options.config ? dirname(resolve(options.config)) : process.cwd(),
        });
        await server.start();
      } catch (error) {
        console.error(
          `bulwark: cannot start: ${error instanceof BulwarkError ? error.describe() : (error as Error).message}`,
        );
        process.exit(1);
      }
      let stopping = false;
      const shutdown = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        server.log.info({ signal }, 'shutting down');
        server.stop().then(
          () => process.exit(0),
          (error: unknown) => {
            console.error(`bulwark: error during shutdown: ${(error as Error).message}`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
      process.on('SIGHUP', () => {
        server.log.info('SIGHUP: reloading the policy');
        void server.reloadPolicy('sighup');
      });
      // The ready line comes after the signal handlers, so a supervisor's immediate SIGTERM is a graceful stop.
      for (const line of server.describe()) server.log.info({ listener: line }, `listening: ${line}`);
      console.error(`bulwark: ready; ${server.describe().join('; ')}; data in ${config.data_dir}`);
    });
}
