/** `secd leader --config leader.yml`: the scheduler alone (no in-process node); nodes join with `secd node`. */
import type { Command } from 'commander';
import { loadLeaderConfig } from '../config/leader-config.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { createLogger } from '../wiring/logger.js';
import { startLeader } from '../wiring/leader.js';
import { registerDaemonRole } from './daemon-role.js';

/** The exit status of a leader that lost its lease (EX_TEMPFAIL): not a config error, so systemd restarts it. */
export const LOST_LEASE_EXIT = 75;

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
      const leader = await startLeader(config, {
        log,
        engine: createDockerEngine({ logger: log }),
        localNode: null,
        // A leader that led and lost the lease exits at once: systemd starts it again as a standby
        // (leader-role.ts). Nothing it still does could be written (its writes are fenced).
        onLostLease: () => process.exit(LOST_LEASE_EXIT),
      });
      return {
        log,
        banner: `secd leader: listening at ${leader.url} (nodes connect to ${leader.url.replace(/^http/, 'ws')}/v1/nodes)${config.state.engine === 'mysql' ? `; state in ${config.state.database} on ${config.state.host}:${config.state.port}, ${leader.role().role}` : ''}`,
        close: () => leader.close(),
      };
    },
  });
}
