#!/usr/bin/env node
/**
 * The `secd` command: parses arguments, loads configuration, wires real adapters and hands them
 * down. Nothing else in secd reads argv, the environment or the clock on its own.
 */
import { Command, CommanderError } from 'commander';
import { ConfigError, loadUpConfig } from './config.js';
import { createDockerEngine } from './docker-engine.js';
import { createLogger } from './logger.js';
import { startLeader } from './leader.js';
import { runLocalProject } from './local-run.js';
import { buildBaseImage } from './base-image.js';

const program = new Command();
program.name('secd').description('Run machine-learning code on sensitive data from a signed git push').showHelpAfterError();

program
  .command('run')
  .description('run a project folder on this machine exactly as the cluster would; outputs land in <dir>/outputs/')
  .argument('<dir>', 'project folder with a Dockerfile (and optionally secd.yml)')
  .option('--config <file>', 'up.yml whose node: section and limits to use (default: embedded defaults)')
  .action(async (dir: string, options: { config?: string }) => {
    const config = loadUpConfig(options.config ?? null, process.cwd());
    const log = createLogger({ fd: 2, level: process.env.SECD_LOG_LEVEL ?? 'warn' });
    const controller = new AbortController();
    const stop = (signal: string) => controller.abort(`stopped by ${signal}`);
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
    const result = await runLocalProject(dir, config, {
      engine: createDockerEngine({ logger: log }),
      log,
      signal: controller.signal,
      out: { line: (text) => process.stdout.write(`${text}\n`), raw: (chunk) => process.stdout.write(chunk) },
    });
    if (!result.ok) {
      process.stderr.write(`secd: ${result.reason}\n`);
      process.exitCode = 2;
      return;
    }
    const { outcome } = result;
    const why = outcome.end === 'succeeded' ? '' : `: ${outcome.reason}`;
    process.stdout.write(`secd: run ${result.runId} ${outcome.end}${why} — outputs in ${outcome.outputsPath ?? '(none)'}\n`);
    process.exitCode = outcome.end === 'succeeded' ? 0 : 1;
  });

program
  .command('up')
  .description('run a leader and a node in one process (embedded defaults: state under ./.secd, 127.0.0.1:8080)')
  .option('--config <file>', 'up.yml')
  .action(async (options: { config?: string }) => {
    const config = loadUpConfig(options.config ?? null, process.cwd());
    const log = createLogger();
    const leader = await startLeader(config, { log, engine: createDockerEngine({ logger: log }), localNode: config.node });
    process.stdout.write(`secd up: leader at ${leader.url} (status page ${leader.url}/), node ${config.node.node_id}\n`);
    if (!config.gitlab) process.stdout.write('secd up: no gitlab: section in the config, so pushes cannot start runs yet\n');
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      await leader.close();
      process.exit(0);
    };
    process.once('SIGINT', () => void stop('SIGINT'));
    process.once('SIGTERM', () => void stop('SIGTERM'));
  });

program
  .command('base-image')
  .description('build the secd/base image (Debian stable, Python 3, numpy, PyMySQL, the secd SDK) with debootstrap')
  .option('--mirror <url>', 'Debian mirror (default: this machine\'s apt sources)')
  .option('--refresh', 'run debootstrap again instead of re-importing the cached root filesystem')
  .action(async (options: { mirror?: string; refresh?: boolean }) => {
    const config = loadUpConfig(null, process.cwd());
    const log = createLogger({ fd: 2, level: 'warn' });
    const image = await buildBaseImage(createDockerEngine({ logger: log }), {
      ...(options.mirror ? { mirror: options.mirror } : {}),
      cacheDir: `${config.node.work_dir}/base-image`,
      refreshRootfs: options.refresh ?? false,
      onProgress: (line: string) => process.stdout.write(`${line}\n`),
    });
    if (!image.ok) {
      process.stderr.write(`secd base-image: ${image.reason}\n`);
      process.exitCode = 1;
      return;
    }
    process.stdout.write(`secd base-image: built secd/base (${image.imageId})\n`);
  });

program.exitOverride();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode;
  } else if (err instanceof ConfigError) {
    process.stderr.write(`secd: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`secd: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
}
