/**
 * One planning round, Nomad-style: read a snapshot (queued runs, runs in flight, nodes) in one read
 * transaction, ask the pure planner for a plan (scheduler/plan), reject the runs it finds impossible,
 * then `applyPlan`: one write transaction that re-checks every placement against the state as it is
 * then (scheduler/plan/plan-check.ts: the run still queued, the node still there and up, each GPU
 * still free) and assigns what holds. A refused placement is logged with its reason and its run
 * stays queued: the round plans once more right away (the face, run-lifecycle.ts), and any later
 * event plans again. Nodes are told only after the write committed.
 */
import type { RunRow, RunStore } from '../../storage/run-store.js';
import { IN_FLIGHT_STATES } from '../../storage/run-states.js';
import type { Log } from '../common/log.js';
import { failpoint } from '../common/failpoints.js';
import { planRuns, type Placement, type Plan, type PlannedGpu, type PlannedNode, type PlanSnapshot, type RunningRun } from '../plan/plan.js';
import { checkPlan, type RejectedPlacement } from '../plan/plan-check.js';
import type { RunConfig } from '../policy/project-policy.js';
import { rejectRun, type LifecycleContext } from './lifecycle-context.js';
import type { NodeHandle } from './lifecycle-deps.js';
import { halfLifeOf, postQueuePlaces, withKnownTimes } from './queue-times.js';
import { handOver } from './hand-over.js';
import { stopRunsOnTroubledGpus } from './node-reports.js';

/** What applying one plan did: the runs now assigned, and the placements refused (runs still queued). */
export interface AppliedPlan {
  applied: Array<{ placement: Placement; run: RunRow }>;
  rejected: RejectedPlacement[];
}

/**
 * Apply a plan's placements in one write transaction, each re-checked against the runs as stored now
 * and `nodes` as they are now (read them again after planning, not from the planner's snapshot).
 */
export function applyPlan(plan: Pick<Plan, 'placements'>, nodes: readonly PlannedNode[], deps: { store: RunStore; log: Log }): AppliedPlan {
  const { store, log } = deps;
  const result = store.inTransaction((): AppliedPlan => {
    const check = checkPlan(plan.placements, {
      runState: (id) => store.get(id)?.state ?? null,
      running: runningRuns(store.inStates(IN_FLIGHT_STATES)),
      nodes,
    });
    const applied: AppliedPlan['applied'] = [];
    const rejected = check.rejected;
    for (const placement of check.accepted) {
      const gpuNote = placement.gpus.length ? ` with ${placement.gpus.length} GPU(s)` : '';
      const moved = store.transition(placement.runId, 'assigned', `assigned to ${placement.nodeId}${gpuNote}`, {
        node: placement.nodeId,
        gpus: placement.gpus,
      });
      // The check read the run queued in this same transaction, so this holds; if not, the run stays as it is.
      if (moved.ok) applied.push({ placement, run: moved.run });
      else rejected.push({ placement, code: 'run_not_queued', reason: `run ${placement.runId} could not move to assigned (${moved.code})` });
    }
    return { applied, rejected };
  });
  for (const { placement, code, reason } of result.rejected) {
    log.warn({ runId: placement.runId, node: placement.nodeId, gpus: placement.gpus, code }, `placement refused at apply, the run stays queued: ${reason}`);
  }
  return result;
}

/**
 * Plan the queued runs once and apply the plan; returns how many placements were refused at apply
 * (the cluster changed under the plan).
 */
export function scheduleRound(ctx: LifecycleContext): number {
  const { store, log } = ctx.deps;
  // A GPU lost under a run is seen here first (a status changed what its node can give: plan again).
  stopRunsOnTroubledGpus(ctx);
  const snapshot = readSnapshot(store, () => ctx.deps.nodes().map(plannedNode));
  if (snapshot.queued.length === 0) return 0;
  // Start times and fair share need runfor, start times and decayed usage; waiting runs are told their place.
  const now = ctx.deps.now();
  const timed = withKnownTimes(store, snapshot, now, halfLifeOf(ctx.deps.settings));
  const plan = planRuns(timed, now);
  postQueuePlaces(ctx, timed, plan, now);
  for (const impossible of plan.impossible) {
    log.info({ runId: impossible.runId, code: impossible.code }, 'run can never start here: rejected');
    rejectRun(ctx, impossible.runId, `no node can run it: ${impossible.reason}`);
  }
  if (plan.placements.length === 0) return 0;
  // The nodes as they are now, not as the planner saw them.
  const handles = ctx.deps.nodes();
  const { applied, rejected } = applyPlan(plan, handles.map(plannedNode), ctx.deps);
  // Committed, no node told yet: a restarted leader sends `assigned` runs again when their node says hello.
  if (applied.length > 0) failpoint('leader.plan.applied');
  for (const { placement, run } of applied) {
    log.info({ runId: placement.runId, node: placement.nodeId, gpus: placement.gpus }, 'run assigned');
    ctx.deps.onAssigned?.(run);
    handOver(ctx, handles.find((h) => h.id === placement.nodeId), run);
  }
  return rejected.length;
}

/**
 * What the planner plans from: the queued runs and the runs in flight, read in one read transaction,
 * and the nodes (asked only when something is queued).
 */
export function readSnapshot(store: RunStore, nodes: () => PlannedNode[]): PlanSnapshot {
  const { queued, inFlight } = store.inTransaction(() => ({ queued: store.inStates(['queued']), inFlight: store.inStates(IN_FLIGHT_STATES) }));
  return {
    queued: queued.map((r) => {
      const config = r.config as RunConfig;
      return { id: r.id, user: r.user, project: r.project, gpus: config.gpus, ...(config.gpuRequest ? { gpuRequest: config.gpuRequest } : {}), queuedAt: r.createdAt };
    }),
    running: runningRuns(inFlight),
    nodes: queued.length === 0 ? [] : nodes(),
  };
}

/**
 * A handle that also says what each GPU is (scheduler/cluster/remote-node.ts): until NodeHandle
 * carries `gpuDetails`, the planner asks for it where a handle has it, and a handle without it has
 * whole GPUs of unknown model and memory (a `MIG-` UUID still a MIG device).
 */
type DetailedHandle = NodeHandle & { gpuDetails?(): PlannedGpu[] };

/** A node as the planner sees it: what it has; the planner subtracts what runs and foreign processes use. */
export function plannedNode(h: DetailedHandle): PlannedNode {
  const details = h.gpuDetails?.();
  const diskLow = h.diskLow?.() ?? null;
  return {
    id: h.id,
    state: h.state(),
    gpus: h.gpus(),
    foreignBusyGpus: h.foreignBusyGpus(),
    cpuSlots: h.cpuSlots(),
    images: h.images?.() ?? [],
    ...(details ? { gpuDetails: details } : {}),
    ...(diskLow !== null ? { diskLow } : {}),
  };
}

/** Runs in flight as holders of their node's GPUs or CPU slot. */
function runningRuns(inFlight: readonly RunRow[]): RunningRun[] {
  return inFlight.flatMap((r) => (r.node ? [{ id: r.id, user: r.user, nodeId: r.node, gpus: r.gpus }] : []));
}
