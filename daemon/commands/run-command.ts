/** `secd run <dir>`: run a project folder locally exactly as the cluster would. */
import type { Command } from 'commander';
import { loadUpConfig } from '../config/up-config.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { createLogger } from '../wiring/logger.js';
import { runLocalProject } from '../wiring/local-run.js';

/** Add `secd run` to the program. */
export function registerRunCommand(program: Command): void {
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
      // A local run is checked as the cluster would check it; nothing is held, but the researcher sees what a reviewer would.
      for (const f of outcome.disclosure ?? []) process.stdout.write(`secd: would be flagged at output review: ${f.file}: ${f.rule} — ${f.detail}\n`);
      process.exitCode = outcome.end === 'succeeded' ? 0 : 1;
    });
}
