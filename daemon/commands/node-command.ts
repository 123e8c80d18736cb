/**
 * `secd node --config node.yml`: a GPU machine's daemon. It recovers the runs its work dir holds
 * (adopting their containers), then connects to the leader and keeps reconnecting.
 *
 * SIGTERM/SIGINT close the connection and exit without stopping runs: their containers keep going
 * and the next start adopts them (drain the node first to retire it).
 */
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { Command } from 'commander';
import { DEFAULT_LIMITS } from '../config/leader-config.js';
import { loadNodeConfig } from '../config/node-config.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { createGpuTelemetry } from '../telemetry/gpu-telemetry.js';
import { createHostTelemetry } from '../telemetry/host-telemetry.js';
import { createLogger } from '../wiring/logger.js';
import { NodeAgent } from '../node/node-agent.js';
import { nodeExecutorDeps } from '../executor/node-executor.js';
import { NodeRuns } from '../node/node-runs.js';
import { connectClient } from '../../scheduler/common/websocket.js';
import { stopOnSignals } from '../wiring/stop-on-signals.js';

/** How often the node pings the leader to notice a half-open connection. */
const KEEPALIVE_MS = 15_000;

/** Add `secd node` to the program. */
export function registerNodeCommand(program: Command): void {
  program
    .command('node')
    .description('run a node: report GPUs and host load to the leader and execute the runs it assigns')
    .requiredOption('--config <file>', 'node.yml')
    .action(async (options: { config: string }) => {
      const config = loadNodeConfig(options.config);
      const log = createLogger().child({ node: config.node_id });
      const now = () => new Date();
      const engine = createDockerEngine({ logger: log });
      const executor = nodeExecutorDeps(config, DEFAULT_LIMITS, engine, log, now);
      const runs = new NodeRuns({ executor, workDir: config.work_dir, log });
      const gpu = createGpuTelemetry({ command: config.nvidia_smi, log });
      const host = createHostTelemetry({ diskPath: config.cache_root, log });
      // The cluster's CA in addition to the system's (Node would otherwise trust only the one given).
      const ca = config.ca_file ? [...rootCertificates, readFileSync(config.ca_file, 'utf8')] : undefined;
      const agent = new NodeAgent({
        nodeId: config.node_id,
        hostname: hostname(),
        maxCpuRuns: config.max_cpu_runs,
        reportIntervalMs: config.report_interval_ms,
        runs,
        gpu,
        host,
        log,
        now,
        connect: (handlers) =>
          connectClient(
            {
              url: config.leader,
              headers: { authorization: `Bearer ${config.token}`, 'x-secd-node': config.node_id },
              ...(ca ? { ca } : {}),
              keepAliveMs: KEEPALIVE_MS,
            },
            handlers,
          ),
      });
      // Every run on disk is known before the first hello, so the leader never takes one for lost.
      await runs.recover();
      agent.start();
      // Under systemd stdout is the journal, kept as JSON lines: the plain banner is for terminals only.
      if (process.stdout.isTTY) process.stdout.write(`secd node: ${config.node_id} connecting to ${config.leader}\n`);
      stopOnSignals(
        log,
        () => {
          agent.stop();
          gpu.close();
        },
        'stopping (runs keep going; the next start adopts them)',
      );
    });
}
