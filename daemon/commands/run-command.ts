/** `secd run <dir>`: run a project folder locally exactly as the cluster would. */
import type { Command } from 'commander';
import { buildSection } from '../config/node-config.js';
import { loadUpConfig } from '../config/up-config.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { createLogger } from '../wiring/logger.js';
import { parseLocalDatasets } from '../wiring/local-datasets.js';
import { runLocalProject } from '../wiring/local-run.js';

/** Add `secd run` to the program. */
export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('run a project folder on this machine exactly as the cluster would; outputs land in <dir>/outputs/')
    .argument('<dir>', 'project folder with a Dockerfile (and optionally secd.yml)')
    .option('--config <file>', 'up.yml whose node: section and limits to use (default: embedded defaults)')
    .option('--build-network <name>', "Docker network for the build's RUN steps, one that reaches only package mirrors (default: the config's build.network, else none)")
    .option('--build-env <K=V>', 'a variable every RUN step sees, e.g. PIP_INDEX_URL=http://mirror/simple (repeatable; adds to the config\'s build.env)', (kv: string, all: string[]) => [...all, kv], [] as string[])
    .option('--dataset <NAME=DIR>', 'a folder of yours the run reads at /datasets/NAME, as a file dataset on the cluster (repeatable; secd.yml datasets: chooses among them)', (kv: string, all: string[]) => [...all, kv], [] as string[])
    .action(async (dir: string, options: { config?: string; buildNetwork?: string; buildEnv: string[]; dataset: string[] }) => {
      const build = buildOverrides(options.buildNetwork, options.buildEnv);
      const datasets = await parseLocalDatasets(options.dataset, process.cwd());
      const refused = !build.ok ? build.reason : !datasets.ok ? datasets.reason : null;
      if (refused !== null || !build.ok || !datasets.ok) {
        process.stderr.write(`secd: ${refused}\n`);
        process.exitCode = 2;
        return;
      }
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
        build: build.value,
        datasets: datasets.datasets,
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

// The flags through the config's own schema, so a bad name is refused with the same words.
function buildOverrides(network: string | undefined, pairs: string[]): { ok: true; value: { network?: string | null; env: Record<string, string> } } | { ok: false; reason: string } {
  const env: Record<string, string> = {};
  for (const kv of pairs) {
    const i = kv.indexOf('=');
    if (i <= 0) return { ok: false, reason: `--build-env ${JSON.stringify(kv)} must be NAME=value` };
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const parsed = buildSection.safeParse({ ...(network !== undefined ? { network } : {}), env });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const flag = issue.path[0] === 'network' ? '--build-network' : `--build-env ${String(issue.path[1] ?? '')}`;
    return { ok: false, reason: `${flag} ${issue.message}` };
  }
  return { ok: true, value: { ...(network !== undefined ? { network: parsed.data.network } : {}), env: parsed.data.env } };
}
