/**
 * What `secd up` adds to a leader (DESIGN §4): a node in the leader's own process, so one GPU machine
 * can lead and run work while the others join it with `secd node`. The leader's composition root
 * (leader.ts) starts it when its options name a node section; this file wires the node's telemetry
 * and executor and says how the API sees it.
 */
import { cpus as osCpus, hostname as osHostname, loadavg, totalmem } from 'node:os';
import type { Log } from '../../scheduler/common/log.js';
import type { NodeView } from '../../scheduler/cluster/node-view.js';
import { IN_FLIGHT_STATES } from '../../storage/run-states.js';
import type { RunStore } from '../../storage/run-store.js';
import type { LimitsConfig } from '../config/leader-config.js';
import type { LocalNodeConfig } from '../config/up-config.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import { nodeExecutorDeps } from '../executor/node-executor.js';
import { LocalNode } from '../node/local-node.js';
import { startLocalTelemetry } from '../telemetry/local-node-telemetry.js';

/** The started in-process node. */
export interface InProcessNode {
  node: LocalNode;
  /** The node as the API shows it. */
  view(): NodeView;
  /** Stop sampling (the node's runs are closed by `node.close()`). */
  close(): void;
}

/** What the in-process node is given besides its config section. */
export interface InProcessNodeDeps {
  limits: LimitsConfig;
  engine: ContainerEngine;
  log: Log;
  now(): Date;
  store: RunStore;
}

/** Start sampling this machine and create the node (it is attached and recovered by the leader). */
export async function startInProcessNode(config: LocalNodeConfig, deps: InProcessNodeDeps): Promise<InProcessNode> {
  const localId = config.node_id;
  const telemetry = await startLocalTelemetry({
    nvidiaSmi: config.nvidia_smi,
    diskPath: config.cache_root,
    intervalMs: config.report_interval_ms,
    log: deps.log.child({ node: localId }),
    now: deps.now,
    gpusInUse: () => new Set(deps.store.inStates(IN_FLIGHT_STATES).filter((r) => r.node === localId).flatMap((r) => r.gpus)),
  });
  const node = new LocalNode(localId, nodeExecutorDeps(config, deps.limits, deps.engine, deps.log, deps.now), {
    maxCpuRuns: config.max_cpu_runs,
    gpus: () => telemetry.inventory().map((g) => g.uuid),
    foreignBusyGpus: () => telemetry.foreignBusyGpus(),
    log: deps.log.child({ node: localId }),
  });
  return {
    node,
    view() {
      const latest = telemetry.latest();
      const samples = new Map((latest?.gpus ?? []).map((g) => [g.uuid, g]));
      const foreign = new Set(telemetry.foreignBusyGpus());
      return {
        id: node.id,
        hostname: osHostname(),
        state: node.state(),
        lastSeen: latest?.at ?? null,
        cpus: latest?.host.cpus ?? osCpus().length,
        memoryBytes: latest?.host.memoryTotalBytes ?? totalmem(),
        load: latest ? latest.host.load : (loadavg()[0] ?? null),
        memoryFreeBytes: latest?.host.memoryFreeBytes ?? null,
        gpus: telemetry.inventory().map((g) => {
          const s = samples.get(g.uuid);
          return {
            uuid: g.uuid,
            index: g.index,
            name: g.name,
            memoryTotalBytes: s?.memoryTotalBytes ?? g.memoryTotalBytes,
            memoryUsedBytes: s?.memoryUsedBytes ?? null,
            utilizationPct: s?.utilizationPct ?? null,
            temperatureC: s?.temperatureC ?? null,
            powerW: s?.powerW ?? null,
            foreignBusy: foreign.has(g.uuid),
          };
        }),
      };
    },
    close: () => telemetry.close(),
  };
}
