/**
 * What `secd up` adds to a leader (DESIGN §4): a node in the leader's own process, so one GPU machine
 * can lead and run work while the others join it with `secd node`. The leader's composition root
 * (leader.ts) starts it when its options name a node section.
 *
 * The in-process node says what a networked node says — a hello, then a status message every
 * `report_interval_ms`, built by the same code (daemon/telemetry/node-report.ts) — and this file
 * hands those messages to the same places the node registry hands a networked node's: its view goes
 * beside the registry's views to the one API builder (web/api-schema.ts), its statuses to the status
 * page's feed, and the lifecycle gets it as a node handle read with the registry's own rules
 * (scheduler/cluster/node-view.ts).
 */
import { hostname as osHostname } from 'node:os';
import type { Log } from '../../scheduler/common/log.js';
import type { StatusMessage } from '../../scheduler/contract/protocol.js';
import { foreignBusyChanged, gpusOf, plannerGpusOf, troubledGpus, unavailableGpus, type NodeView } from '../../scheduler/cluster/node-view.js';
import type { NodeHandle, RunLifecycle } from '../../scheduler/lifecycle/run-lifecycle.js';
import type { LimitsConfig } from '../config/leader-config.js';
import type { LocalNodeConfig } from '../config/up-config.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import { nodeExecutorDeps } from '../executor/node-executor.js';
import { outputsVolumeProblem } from '../executor/outputs-cap.js';
import { withImageSettings } from './build-settings.js';
import { LocalNode } from '../node/local-node.js';
import { createGpuTelemetry } from '../telemetry/gpu-telemetry.js';
import { createHostTelemetry } from '../telemetry/host-telemetry.js';

/** The started in-process node. */
export interface InProcessNode {
  node: LocalNode;
  /** The node as the lifecycle sees it, like a networked node's handle. */
  handle: NodeHandle;
  /** The node as the API sees it, like a networked node's view. */
  view(): NodeView;
  /** Send its reports to the lifecycle and the status page (both are made after the node). */
  attach(lifecycle: RunLifecycle, onStatus: (nodeId: string, status: StatusMessage) => void): void;
  /** Stop sampling (the node's runs are closed by `node.close()`). */
  close(): void;
}

/** What the in-process node is given besides its config section. */
export interface InProcessNodeDeps {
  limits: LimitsConfig;
  engine: ContainerEngine;
  log: Log;
  now(): Date;
}

/** Create the node and take its first readings (it is attached and recovered by the leader). */
export async function startInProcessNode(config: LocalNodeConfig, deps: InProcessNodeDeps): Promise<InProcessNode> {
  const log = deps.log.child({ node: config.node_id });
  const unusable = await outputsVolumeProblem(config.outputs_volume, deps.engine);
  if (unusable !== null) throw new Error(`node: ${unusable}`);
  const gpu = createGpuTelemetry({ command: config.nvidia_smi, log });
  const host = createHostTelemetry({ diskPath: config.cache_root, log });
  const node = new LocalNode(config.node_id, withImageSettings(nodeExecutorDeps(config, deps.limits, deps.engine, deps.log, deps.now), config), {
    hostname: osHostname(),
    maxCpuRuns: config.max_cpu_runs,
    reportIntervalMs: config.report_interval_ms,
    sensors: { gpu, host },
    log,
    now: deps.now,
  });
  await node.startReporting();
  const handle: NodeHandle = {
    id: node.id,
    // It runs in the leader's process: while there is a leader, it is up.
    state: () => 'up',
    gpus: () => gpusOf(node.hello()),
    // Lost GPUs as well as foreign-busy ones are given to nobody; MIG devices and models for requests.
    foreignBusyGpus: () => unavailableGpus(node.hello(), node.status()),
    gpuDetails: () => plannerGpusOf(node.hello()),
    gpuTroubles: () => troubledGpus(node.status()),
    cpuSlots: () => config.max_cpu_runs,
    images: () => node.images(),
    assign: (spec) => node.assign(spec),
    cancel: (runId, reason) => node.cancel(runId, reason),
  };
  return {
    node,
    handle,
    view: () => ({ id: node.id, state: 'up', lastSeen: node.status()?.at ?? null, hello: node.hello(), status: node.status() }),
    attach(lifecycle, onStatus) {
      let before = node.status();
      node.attach({
        onPhase: (nodeId, runId, phase, at) => lifecycle.onPhase(nodeId, runId, phase, at),
        onResult: (nodeId, runId, outcome) => lifecycle.onResult(nodeId, runId, outcome),
        onStatus: (nodeId, status) => {
          onStatus(nodeId, status);
          // As the registry does for a networked node: a GPU freed (or taken) by a foreign process changes the plan.
          if (foreignBusyChanged(before, status)) lifecycle.scheduleSoon();
          before = status;
        },
      });
    },
    close() {
      node.stopReporting();
      gpu.close();
    },
  };
}
