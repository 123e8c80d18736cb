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
 * - It warns at start when it runs on a leader's machine (the host of one of `leader:`'s URLs is
 *   loopback or one of this machine's addresses): its runs' dataset sessions then reach the dataset
 *   server from the leader's address, the one an admin account restricted to the leader
 *   (docs/sysadmin.md §5) may log in from, and only the dataset socket's own-account check stands
 *   between them. The node cannot know the dataset server's accounts, and a run's dataset address
 *   only arrives with the run, so the leader's address is the cheap, early thing to compare.
 */
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname as osHostname, networkInterfaces } from 'node:os';
import { rootCertificates } from 'node:tls';
import { connectClient } from '../../scheduler/common/websocket.js';
import type { Log } from '../../scheduler/common/log.js';
import { DEFAULT_LIMITS } from '../config/leader-config.js';
import type { NodeConfig } from '../config/node-config.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { nodeExecutorDeps } from '../executor/node-executor.js';
import { outputsVolumeProblem } from '../executor/outputs-cap.js';
import { diskWatermarkReason } from '../executor/run-collection.js';
import { NodeAgent } from '../node/node-agent.js';
import { NodeRuns } from '../node/node-runs.js';
import { createGpuTelemetry } from '../telemetry/gpu-telemetry.js';
import { createHostTelemetry } from '../telemetry/host-telemetry.js';
import { withImageSettings } from './build-settings.js';

/**
 * How often the node pings the leader to notice a half-open connection: a leader that froze or was
 * cut off (no FIN ever comes) is left within two of these, so that after a failover the node reaches
 * the new leader within about a lease (10 s) rather than half a minute later. A ping is a few bytes.
 */
const KEEPALIVE_MS = 5000;

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

/** Recover the runs `config.work_dir` holds, then connect to one of `config.leader` and keep reconnecting. */
export async function startNode(config: NodeConfig, opts: StartNodeOptions): Promise<RunningNode> {
  const { log } = opts;
  const now = opts.now ?? (() => new Date());
  const engine = opts.engine ?? createDockerEngine({ logger: log, ...(config.build?.cgroup_parent ? { buildCgroupParent: config.build.cgroup_parent } : {}) });
  const executor = withImageSettings(nodeExecutorDeps(config, DEFAULT_LIMITS, engine, log, now), config);
  const unusable = await outputsVolumeProblem(config.outputs_volume, engine);
  if (unusable !== null) throw new Error(`node.yml: ${unusable}`);
  const runs = new NodeRuns({ executor, workDir: config.work_dir, log });
  const gpu = createGpuTelemetry({ command: config.nvidia_smi, log });
  const host = createHostTelemetry({ diskPath: config.cache_root, log });
  const ca = config.ca_file ? [...rootCertificates, readFileSync(config.ca_file, 'utf8')] : undefined;
  const agent = new NodeAgent({
    nodeId: config.node_id,
    hostname: opts.hostname ?? osHostname(),
    maxCpuRuns: config.max_cpu_runs,
    reportIntervalMs: config.report_interval_ms,
    // The leader places no new run here while this says the disk is under the watermark.
    diskLow: () => diskWatermarkReason(executor.settings),
    runs,
    gpu,
    host,
    log,
    now,
    // Tried in order from the one that last accepted (node-agent.ts); a standby answers 503.
    leaders: config.leader,
    connect: (url, handlers) =>
      connectClient(
        {
          url,
          headers: { authorization: `Bearer ${config.token}`, 'x-secd-node': config.node_id },
          ...(ca ? { ca } : {}),
          keepAliveMs: KEEPALIVE_MS,
        },
        handlers,
      ),
  });
  await runs.recover();
  agent.start();
  for (const leader of config.leader) {
    void leaderOnThisHost(leader).then(
      (address) => {
        if (address === null) return;
        log.warn(
          { leader, address },
          "this node runs on the leader's machine: its runs reach the dataset server from the leader's address, where the admin account may log in; " +
            "each run's socket admits only the run's own account, but prefer nodes on other machines (docs/sysadmin.md, Security)",
        );
      },
      () => undefined,
    );
  }
  return {
    agent,
    runs,
    close() {
      agent.stop();
      gpu.close();
    },
  };
}

/**
 * The address by which `leaderUrl`'s host is this machine (a loopback address, or one of this
 * machine's interface addresses), or null when it is another machine or cannot be resolved.
 */
export async function leaderOnThisHost(
  leaderUrl: string,
  resolve: (host: string) => Promise<string[]> = async (host) => (await lookup(host, { all: true })).map((a) => a.address),
  local: () => string[] = () => Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address)),
): Promise<string | null> {
  let host: string;
  try {
    host = new URL(leaderUrl).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return null;
  }
  const addresses = isIP(host) ? [host] : await resolve(host).catch(() => [] as string[]);
  const mine = new Set(local().map(normalAddress));
  for (const address of addresses) {
    const a = normalAddress(address);
    if (a === '::1' || a.startsWith('127.') || mine.has(a)) return address;
  }
  return null;
}

function normalAddress(address: string): string {
  return address.toLowerCase().replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1').replace(/%.*$/, '');
}
