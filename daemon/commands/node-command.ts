/**
 * `secd node --config node.yml`: a GPU machine's daemon (wired in wiring/node.ts). It recovers the
 * runs its work dir holds (adopting their containers), then connects to the leader and keeps
 * reconnecting.
 *
 * SIGTERM/SIGINT close the connection and exit without stopping runs: their containers keep going
 * and the next start adopts them (drain the node first to retire it).
 */
import type { Command } from 'commander';
import { loadNodeConfig } from '../config/node-config.js';
import { createLogger } from '../wiring/logger.js';
import { startNode } from '../wiring/node.js';
import { registerDaemonRole } from './daemon-role.js';

/** Add `secd node` to the program. */
export function registerNodeCommand(program: Command): void {
  registerDaemonRole(program, {
    name: 'node',
    description: 'run a node: report GPUs and host load to the leader and execute the runs it assigns',
    configFile: 'node.yml',
    async start(configFile) {
      const config = loadNodeConfig(configFile);
      const log = createLogger().child({ node: config.node_id });
      const node = await startNode(config, { log });
      return {
        log,
        banner: `secd node: ${config.node_id} connecting to ${config.leader.join(', ')}`,
        close: () => node.close(),
        stopNote: 'stopping (runs keep going; the next start adopts them)',
      };
    },
  });
}
