/** `secd up`: a leader and its in-process node in one process. */
import type { Command } from 'commander';
import { loadUpConfig, setsListen, withPublicUrl } from '../config/up-config.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { createLogger } from '../wiring/logger.js';
import { startLeader } from '../wiring/leader.js';
import { stopOnSignals } from '../wiring/stop-on-signals.js';

/** Add `secd up` to the program. */
export function registerUpCommand(program: Command): void {
  program
    .command('up')
    .description('run a leader and a node in one process (embedded defaults: state under ./.secd, 127.0.0.1:8080)')
    .option('--config <file>', 'up.yml')
    .option('--public-url <url>', 'the URL GitLab and nodes use; an unset listen follows it')
    .action(async (options: { config?: string; publicUrl?: string }) => {
      const file = options.config ?? null;
      let config = loadUpConfig(file, process.cwd());
      if (options.publicUrl !== undefined) {
        const override = withPublicUrl(config, options.publicUrl, setsListen(file, process.cwd()));
        config = override.config;
        for (const note of override.notes) process.stderr.write(`secd up: ${note}\n`);
      }
      const log = createLogger();
      const leader = await startLeader(config, { log, engine: createDockerEngine({ logger: log, ...(config.node.build?.cgroup_parent ? { buildCgroupParent: config.node.build.cgroup_parent } : {}) }), localNode: config.node });
      process.stdout.write(`secd up: leader at ${leader.url} (status page ${leader.url}/), node ${config.node.node_id}\n`);
      if (!config.gitlab) process.stdout.write('secd up: no gitlab: section in the config, so pushes cannot start runs yet\n');
      stopOnSignals(log, () => leader.close());
    });
}
