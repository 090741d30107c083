import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { localOnlyConfig, parseConfigText, readConfigFile } from '../config/load.js';
import { configChangedEvent, configRefusedEvent, contentHash, type ReloadContext } from '../config/reload.js';
import { portCollision } from '../config/port-collision.js';
import type { BrokerConfig } from '../config/schema.js';
import {
  DATA_DIR_ANCESTOR_WARNING,
  dataDirAncestorProblems,
  lockDataDir,
  prepareDataDir,
  type DataDirLock,
} from '../data-dir.js';
import { BulwarkError } from '../errors.js';
import { BulwarkServer } from '../server.js';
import { deferHangups, takeDeferredHangups } from './start-signals.js';
import { warmUpConnectPath, type WarmupResult } from '../warmup/warmup.js';

export interface StartOptions {
  config?: string;
  port?: string;
  dataDir?: string;
  repair?: boolean;
}

/**
 * Configuration from the file (or the local-only default), with command-line overrides applied, and the SHA-256 of
 * the file's content: read once, so the hash SIGHUP compares against is of exactly what the broker parsed.
 */
export function resolveStartConfig(options: StartOptions): { config: BrokerConfig; hash: string } {
  if (!options.config) return { config: applyOverrides(localOnlyConfig(), options), hash: '' };
  const content = readConfigFile(options.config);
  return {
    config: applyOverrides(parseConfigText(content.toString('utf8'), options.config), options),
    hash: contentHash(content),
  };
}

/** Command-line options win over the file, at start and on every reload alike. */
function applyOverrides(config: BrokerConfig, options: StartOptions): BrokerConfig {
  if (options.port !== undefined) {
    const port = Number(options.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new Error(`--port: ${options.port} is not a port number`);
    config.listeners[0]!.port = port;
    const collision = portCollision(config);
    if (collision) throw new Error(`--port: ${collision.path.join('.')}: ${collision.message}`);
  }
  if (options.dataDir !== undefined) config.data_dir = options.dataDir;
  return config;
}

/**
 * SIGHUP: re-read the configuration file. A file that does not validate is refused (logged with
 * `file:line:column`, recorded as `config.changed` failure) and the broker keeps running as it is; a valid,
 * changed file is applied as far as it can be live and recorded with both content hashes and the changed key
 * paths. The policy is reloaded either way, as before configuration reload existed.
 */
async function reloadOnSignal(server: BulwarkServer, options: StartOptions, state: { hash: string }): Promise<void> {
  const file = options.config;
  if (file === undefined) {
    server.log.info('SIGHUP: reloading the policy');
    await server.reloadPolicy('sighup');
    return;
  }
  server.log.info({ file }, 'SIGHUP: re-reading the configuration and reloading the policy');
  const ctx: ReloadContext = { file, oldHash: state.hash, newHash: undefined, actor: 'signal:SIGHUP' };
  let next: BrokerConfig | undefined;
  try {
    const content = readFileSync(file);
    ctx.newHash = contentHash(content);
    if (ctx.newHash !== state.hash) next = applyOverrides(parseConfigText(content.toString('utf8'), file), options);
  } catch (error: unknown) {
    const message =
      error instanceof BulwarkError
        ? error.describe()
        : `${file}:0:0: cannot read configuration: ${(error as NodeJS.ErrnoException).code ?? 'error'}`;
    server.log.error(
      { file, error: message },
      `configuration reload refused, the running configuration stays: ${message}`,
    );
    server.broker.audit.record(configRefusedEvent(ctx, message));
  }
  if (next) {
    const plan = server.reloadConfig(next);
    state.hash = ctx.newHash as string;
    server.broker.audit.record(configChangedEvent(ctx, plan));
    server.log.info(
      { file, changed: plan.changed, applied: plan.applied, restart_required: plan.restartRequired },
      `configuration reloaded: ${plan.changed.length} settings changed, ${plan.applied.length} applied now`,
    );
    if (plan.restartRequired.length > 0) {
      server.log.warn(
        { file, restart_required: plan.restartRequired },
        `configuration changed, but these settings take effect only after a restart: ${plan.restartRequired.join(', ')}`,
      );
    }
  } else if (ctx.newHash === state.hash) {
    server.log.info({ file }, 'configuration file unchanged');
  }
  await server.reloadPolicy('sighup');
}

/** Said once, before the listeners open: an operator wondering what the start spent its first second on can see it. */
let stopAskedDuringStart: NodeJS.Signals | undefined;

/** A stop signal while the broker starts: noted, and acted on once the start is complete (see the start command). */
function stopOnceStarted(signal: NodeJS.Signals): void {
  if (stopAskedDuringStart !== undefined) {
    console.error(`bulwark: second ${signal} during start-up; exiting without a clean stop`);
    process.exit(1);
  }
  stopAskedDuringStart = signal;
  console.error(`bulwark: ${signal} during start-up; stopping once the broker has started (again to exit at once)`);
}

function logWarmup(server: BulwarkServer, warmup: WarmupResult, asked: number): void {
  if (asked === 0) return;
  const fields = { ...warmup, asked };
  if (warmup.error !== undefined || warmup.accepted < asked)
    server.log.warn(
      fields,
      `start-up warm-up incomplete: ${warmup.accepted} of ${asked} connects accepted${warmup.error ? ` (${warmup.error})` : ''}; the first connects after the start run slower`,
    );
  else server.log.info(fields, `start-up warm-up: ${warmup.accepted} connects in ${warmup.ms} ms`);
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
      deferHangups();
      let config: BrokerConfig;
      // What SIGHUP compares the file with: the content the broker started from.
      const loaded = { hash: '' };
      try {
        const resolved = resolveStartConfig(options);
        config = resolved.config;
        loaded.hash = resolved.hash;
      } catch (error) {
        console.error(
          `bulwark: invalid configuration: ${error instanceof BulwarkError ? error.describe() : (error as Error).message}`,
        );
        process.exit(2);
      }
      let server: BulwarkServer;
      try {
        // Until the broker's own handlers below, a stop signal ends the start at once (through process.exit, so
        // the warm-up's temporary directory is removed on the way out).
        // `on`, not `once`: while `process.exit` runs its handlers (the warm-up folder's removal), a second signal
        // with no listener left would take its default action and kill the process half-way.
        let warmupStopping = false;
        const stopDuringStart = (signal: NodeJS.Signals): void => {
          if (warmupStopping) return;
          warmupStopping = true;
          console.error(`bulwark: ${signal} during start-up; stopping`);
          process.exit(0);
        };
        process.on('SIGTERM', stopDuringStart);
        process.on('SIGINT', stopDuringStart);
        // Before anything reads or writes the data directory: a second broker on it would compact the first one's
        // live journal away. Released on every way out of the process but a kill; a dead broker's lock is taken over.
        prepareDataDir(config.data_dir);
        const lock: DataDirLock = lockDataDir(config.data_dir);
        process.on('exit', () => lock.release());
        const warmup = await warmUpConnectPath(config, config.warmup_connects);
        // From here the start replays the journal and opens the audit log: ending the process in the middle (the
        // signal's default action) would leave both as a crash does. The stop waits for the start to finish. The
        // new handlers come first, so that no moment is left without one.
        process.on('SIGTERM', stopOnceStarted);
        process.on('SIGINT', stopOnceStarted);
        process.off('SIGTERM', stopDuringStart);
        process.off('SIGINT', stopDuringStart);
        server = new BulwarkServer({
          config,
          repair: options.repair ?? false,
          configHash: loaded.hash,
          baseDir: options.config ? dirname(resolve(options.config)) : process.cwd(),
        });
        if (lock.tookOverFrom !== undefined)
          server.log.warn(
            { lock: lock.file, pid: lock.tookOverFrom },
            `took over the lock of broker pid ${lock.tookOverFrom}, which is no longer running`,
          );
        for (const { folder, problem } of dataDirAncestorProblems(config.data_dir))
          server.log.warn({ dataDir: config.data_dir, folder, problem }, DATA_DIR_ANCESTOR_WARNING);
        logWarmup(server, warmup, config.warmup_connects);
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
        server.stop(signal).then(
          () => process.exit(0),
          (error: unknown) => {
            console.error(`bulwark: error during shutdown: ${(error as Error).message}`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
      process.off('SIGTERM', stopOnceStarted);
      process.off('SIGINT', stopOnceStarted);
      if (stopAskedDuringStart !== undefined) {
        shutdown(stopAskedDuringStart);
        return;
      }
      // Reloads run one after another: a second SIGHUP during a reload waits for it.
      let reloading: Promise<void> = Promise.resolve();
      const reload = (): void => {
        reloading = reloading
          .then(() => reloadOnSignal(server, options, loaded))
          .catch((error: unknown) => server.log.error({ error: (error as Error).message }, 'SIGHUP reload failed'));
      };
      process.on('SIGHUP', reload);
      const hangupsDuringStart = takeDeferredHangups();
      // The ready line comes after the signal handlers, so a supervisor's immediate SIGTERM is a graceful stop.
      for (const line of server.describe()) server.log.info({ listener: line }, `listening: ${line}`);
      console.error(`bulwark: ready; ${server.describe().join('; ')}; data in ${config.data_dir}`);
      if (hangupsDuringStart > 0) {
        server.log.info({ signals: hangupsDuringStart }, 'SIGHUP during start-up: reloading now');
        reload();
      }
    });
}
