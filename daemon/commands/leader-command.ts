/** `secd leader --config leader.yml`: the scheduler alone (no in-process node); nodes join with `secd node`. */
import type { Command } from 'commander';
import { loadLeaderConfig } from '../config/leader-config.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { createLogger } from '../wiring/logger.js';
import { startLeader } from '../wiring/leader.js';
import { registerDaemonRole } from './daemon-role.js';

/** Add `secd leader` to the program. */
export function registerLeaderCommand(program: Command): void {
  registerDaemonRole(program, {
    name: 'leader',
    description: 'run the leader: webhook intake, verification, queue, node registry, status page and API',
    configFile: 'leader.yml',
    async start(configFile) {
      const config = loadLeaderConfig(configFile);
      const log = createLogger();
      // No node runs here, so the engine is never called; startLeader takes one for `secd up`'s sake.
      const leader = await startLeader(config, { log, engine: createDockerEngine({ logger: log }), localNode: null });
      return {
        log,
        banner: `secd leader: listening at ${leader.url} (nodes connect to ${leader.url.replace(/^http/, 'ws')}/v1/nodes)`,
        close: () => leader.close(),
      };
    },
  });
}
