/**
 * The plan check (Nomad's `plan_apply`): a plan is made from a snapshot, and the cluster moves on
 * while it is made — a run is cancelled, a node goes away, starts draining or times out, a GPU is
 * taken by another run or by a process that is not secd's. So before a plan is written, each
 * placement is checked again against the cluster as it is then:
 *
 * 1. The run is still queued (not cancelled, rejected or placed meanwhile), and placed once.
 * 2. The node is still there (not forgotten or revoked) and `up` (not draining, not down).
 * 3. Each GPU is still the node's, not busy with a foreign process, and held by no run in flight nor
 *    by a placement accepted before it in this plan; a CPU-only run finds a free CPU slot.
 *
 * A placement that fails is rejected with a code and a sentence; its run stays queued and the next
 * round plans it against the new state. The others stand as the planner made them: placements are
 * independent (Nomad's partial commit), so one stale node does not hold back the rest of a plan.
 * Pure like the planner: the leader reads the fresh state inside the write transaction that applies
 * what passes (scheduler/lifecycle/plan-apply.ts).
 *
 * Cost: O(N + R·g + P·g·G) for N nodes, R runs in flight, P placements, g GPUs per run and G per node.
 */
import type { Placement, PlannedNode, RunningRun } from './plan-types.js';

/** The cluster when a plan is applied: read again, not the planner's snapshot. */
export interface FreshState {
  /** The run's state now (only `queued` may be placed), or null when there is no such run. */
  runState(runId: string): string | null;
  /** Runs holding resources now (assigned, building, running or uploading). */
  running: readonly RunningRun[];
  /** Nodes that may be given work now; one forgotten or revoked is absent. */
  nodes: readonly PlannedNode[];
}

/** Why a placement no longer holds. */
export type PlacementRejectCode =
  | 'run_not_queued'
  | 'node_gone'
  | 'node_not_up'
  | 'gpu_gone'
  | 'gpu_foreign_busy'
  | 'gpu_taken'
  | 'no_cpu_slot';

/** A placement refused at apply time; its run stays queued. */
export interface RejectedPlacement {
  placement: Placement;
  code: PlacementRejectCode;
  reason: string;
}

/** The placements that still hold, in plan order, and those that do not. */
export interface PlanCheck {
  accepted: Placement[];
  rejected: RejectedPlacement[];
}

/** Check each placement against `fresh`, by the rules in this module's header. */
export function checkPlan(placements: readonly Placement[], fresh: FreshState): PlanCheck {
  const check: PlanCheck = { accepted: [], rejected: [] };
  if (placements.length === 0) return check;
  const nodes = new Map<string, PlannedNode>();
  for (const node of fresh.nodes) nodes.set(node.id, node);
  // Who holds each GPU, per node, and how many CPU slots are in use; accepted placements join in.
  const holders = new Map<string, Map<string, string>>();
  const cpuInUse = new Map<string, number>();
  const hold = (nodeId: string, runId: string, gpus: readonly string[]): void => {
    if (gpus.length === 0) {
      cpuInUse.set(nodeId, (cpuInUse.get(nodeId) ?? 0) + 1);
      return;
    }
    let held = holders.get(nodeId);
    if (!held) holders.set(nodeId, (held = new Map()));
    for (const g of gpus) held.set(g, runId);
  };
  for (const run of fresh.running) hold(run.nodeId, run.id, run.gpus);
  const placed = new Set<string>();
  for (const placement of placements) {
    const refusal = refusalOf(placement, fresh, nodes.get(placement.nodeId), holders.get(placement.nodeId), cpuInUse, placed);
    if (refusal) {
      check.rejected.push({ placement, ...refusal });
      continue;
    }
    check.accepted.push(placement);
    placed.add(placement.runId);
    hold(placement.nodeId, placement.runId, placement.gpus);
  }
  return check;
}

function refusalOf(
  p: Placement,
  fresh: FreshState,
  node: PlannedNode | undefined,
  holders: Map<string, string> | undefined,
  cpuInUse: Map<string, number>,
  placed: Set<string>,
): { code: PlacementRejectCode; reason: string } | null {
  if (placed.has(p.runId)) return { code: 'run_not_queued', reason: `run ${p.runId} was already placed by this plan` };
  const state = fresh.runState(p.runId);
  if (state === null) return { code: 'run_not_queued', reason: `run ${p.runId} no longer exists` };
  if (state !== 'queued') return { code: 'run_not_queued', reason: `run ${p.runId} is ${state} now, not queued` };
  if (!node) return { code: 'node_gone', reason: `node ${p.nodeId} is gone (forgotten or revoked)` };
  if (node.state !== 'up') return { code: 'node_not_up', reason: `node ${p.nodeId} is ${node.state} now` };
  if (node.diskLow !== undefined) return { code: 'node_not_up', reason: `node ${p.nodeId} is under its disk watermark now: ${node.diskLow}` };
  if (p.gpus.length === 0) {
    const free = node.cpuSlots - (cpuInUse.get(p.nodeId) ?? 0);
    return free > 0 ? null : { code: 'no_cpu_slot', reason: `node ${p.nodeId} has no free CPU slot now` };
  }
  for (const g of p.gpus) {
    if (!node.gpus.includes(g)) return { code: 'gpu_gone', reason: `GPU ${g} is no longer on node ${p.nodeId}` };
    if (node.foreignBusyGpus.includes(g)) {
      return { code: 'gpu_foreign_busy', reason: `GPU ${g} on node ${p.nodeId} is busy with a process that is not secd's` };
    }
    const holder = holders?.get(g);
    if (holder !== undefined) return { code: 'gpu_taken', reason: `GPU ${g} on node ${p.nodeId} is held by run ${holder}` };
  }
  return null;
}
