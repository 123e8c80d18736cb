/** `secd leader --config leader.yml`: the scheduler alone (no in-process node); nodes join with `secd node`. */
import type { Command } from 'commander';
import { loadLeaderConfig } from '../config/leader-config.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { createLogger } from '../wiring/logger.js';
import { startLeader } from '../wiring/leader.js';
import { stopOnSignals } from '../wiring/stop-on-signals.js';

/** Add `secd leader` to the program. */
export function registerLeaderCommand(program: Command): void {
  program
    .command('leader')
    .description('run the leader: webhook intake, verification, queue, node registry, status page and API')
    .requiredOption('--config <file>', 'leader.yml')
    .action(async (options: { config: string }) => {
      const config = loadLeaderConfig(options.config);
      const log = createLogger();
      // No node runs here, so the engine is never called; startLeader takes one for `secd up`'s sake.
      const leader = await startLeader(config, { log, engine: createDockerEngine({ logger: log }), localNode: null });
      // Under systemd stdout is the journal, kept as JSON lines: the plain banner is for terminals only.
      if (process.stdout.isTTY) process.stdout.write(`secd leader: listening at ${leader.url} (nodes connect to ${leader.url.replace(/^http/, 'ws')}/v1/nodes)\n`);
      stopOnSignals(log, () => leader.close());
    });
}
