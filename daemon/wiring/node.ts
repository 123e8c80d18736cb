/**
 * Wires a networked node (`secd node`) from node.yml: the only place that creates its container
 * engine, GPU and host telemetry, executor and websocket client. `secd up`'s in-process node is wired
 * by wiring/up.ts (started from wiring/leader.ts) instead, because it reports through the leader's own process.
 *
 * Choices made here:
 * - Every run on disk is recovered (its container adopted) before the first hello, so the leader
 *   never takes one of this node's runs for lost.
 * - The node trusts the cluster's CA (`ca_file`) in addition to the system's, not instead of it:
 *   Node's `ca` option would otherwise replace the system roots.
 * - Closing stops the connection and the telemetry but not the runs: their containers keep going
 *   and the next start adopts them (drain the node first to retire it).
 */
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { rootCertificates } from 'node:tls';
import { connectClient } from '../../scheduler/common/websocket.js';
import type { Log } from '../../scheduler/common/log.js';
import { DEFAULT_LIMITS } from '../config/leader-config.js';
import type { NodeConfig } from '../config/node-config.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { nodeExecutorDeps } from '../executor/node-executor.js';
import { NodeAgent } from '../node/node-agent.js';
import { NodeRuns } from '../node/node-runs.js';
import { createGpuTelemetry } from '../telemetry/gpu-telemetry.js';
import { createHostTelemetry } from '../telemetry/host-telemetry.js';

/** How often the node pings the leader to notice a half-open connection. */
const KEEPALIVE_MS = 15_000;

/** A started node, for main and for tests. */
export interface RunningNode {
  agent: NodeAgent;
  runs: NodeRuns;
  /** Disconnect and stop telemetry; runs keep going for the next start to adopt. */
  close(): void;
}

/** What main (or a test) passes besides the config. */
export interface StartNodeOptions {
  log: Log;
  /** Default: the Docker adapter. */
  engine?: ContainerEngine;
  now?: () => Date;
  /** The name the node reports to the leader; default: os.hostname(). */
  hostname?: string;
}

/** Recover the runs `config.work_dir` holds, then connect to `config.leader` and keep reconnecting. */
export async function startNode(config: NodeConfig, opts: StartNodeOptions): Promise<RunningNode> {
  const { log } = opts;
  const now = opts.now ?? (() => new Date());
  const engine = opts.engine ?? createDockerEngine({ logger: log });
  const executor = nodeExecutorDeps(config, DEFAULT_LIMITS, engine, log, now);
  const runs = new NodeRuns({ executor, workDir: config.work_dir, log });
  const gpu = createGpuTelemetry({ command: config.nvidia_smi, log });
  const host = createHostTelemetry({ diskPath: config.cache_root, log });
  const ca = config.ca_file ? [...rootCertificates, readFileSync(config.ca_file, 'utf8')] : undefined;
  const agent = new NodeAgent({
    nodeId: config.node_id,
    hostname: opts.hostname ?? osHostname(),
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
  await runs.recover();
  agent.start();
  return {
    agent,
    runs,
    close() {
      agent.stop();
      gpu.close();
    },
  };
}
