/**
 * One planning round, Nomad-style: read a snapshot (queued runs, runs in flight, nodes) in one read
 * transaction, ask the pure planner for a plan (scheduler/plan), reject the runs it finds impossible,
 * then `applyPlan`: one write transaction that re-checks every placement against the state as it is
 * then (scheduler/plan/plan-check.ts: the run still queued, the node still there and up, each GPU
 * still free) and assigns what holds. A refused placement is logged with its reason and its run
 * stays queued: the round plans once more right away (the face, run-lifecycle.ts), and any later
 * event plans again. Nodes are told only after the write committed.
 *
 * The stores are async: a round awaits its reads and its write, and the face chains rounds so two
 * never overlap. The write reads the placed runs again inside its own transaction (a row moved by
 * `secd admin` or a webhook since the snapshot is refused there), and assigns the accepted ones in one
 * batch (RunStore.assignClaimed), which refuses a run that is not queued again.
 */
import type { RunRow, RunStore } from '../../storage/run-store.js';
import { IN_FLIGHT_STATES } from '../../storage/run-states.js';
import type { Log } from '../common/log.js';
import { errorText } from '../common/errors.js';
import { failpoint } from '../common/failpoints.js';
import { planRuns, type Placement, type Plan, type PlannedGpu, type PlannedNode, type PlanSnapshot, type RunningRun } from '../plan/plan.js';
import { checkPlan, type RejectedPlacement } from '../plan/plan-check.js';
import type { RunConfig } from '../policy/project-policy.js';
import { rejectRun, type LifecycleContext } from './lifecycle-context.js';
import type { NodeHandle } from './lifecycle-deps.js';
import { halfLifeOf, postQueuePlaces, withKnownTimes } from './queue-times.js';
import { handOver, handOverMarked } from './hand-over.js';
import { stopRunsOnTroubledGpus } from './node-reports.js';

/** What applying one plan did: the runs now assigned, and the placements refused (runs still queued). */
export interface AppliedPlan {
  applied: Array<{ placement: Placement; run: RunRow }>;
  rejected: RejectedPlacement[];
}

/**
 * Apply a plan's placements in one write transaction, each re-checked against the runs as stored now
 * and `nodes` as they are now (read them again after planning, not from the planner's snapshot).
 * The transaction may run again on a lock conflict: it only reads and writes the state, and what it
 * refused is logged once it committed.
 */
export async function applyPlan(plan: Pick<Plan, 'placements'>, nodes: readonly PlannedNode[], deps: { store: RunStore; log: Log }): Promise<AppliedPlan> {
  const { store, log } = deps;
  const result = await store.inTransaction(async (runs): Promise<AppliedPlan> => {
    // The placed runs still queued, claimed for this transaction (SKIP LOCKED on MySQL: one another
    // writer holds is not waited for; it is refused here and planned again). checkPlan is pure: it asks a map.
    const ids = [...new Set(plan.placements.map((p) => p.runId))];
    const claimed = await runs.claimQueued(ids);
    const states = new Map<string, string>(claimed.map((r) => [r.id, r.state]));
    // The rest say why: moved on (cancelled, superseded) or, still queued, held by another writer now.
    for (const id of ids) {
      if (states.has(id)) continue;
      const run = await runs.get(id);
      if (run) states.set(id, run.state === 'queued' ? 'held by another writer' : run.state);
    }
    const check = checkPlan(plan.placements, {
      runState: (id) => states.get(id) ?? null,
      running: runningRuns(await runs.inStates(IN_FLIGHT_STATES)),
      nodes,
    });
    // One batched write for every accepted placement (RunStore.assignClaimed): the same rows and
    // audit events as one transition each, in placement order.
    const moves = await runs.assignClaimed(
      claimed,
      check.accepted.map((placement) => {
        const gpuNote = placement.gpus.length ? ` with ${placement.gpus.length} GPU(s)` : '';
        return { runId: placement.runId, nodeId: placement.nodeId, gpus: placement.gpus, reason: `assigned to ${placement.nodeId}${gpuNote}` };
      }),
    );
    const applied: AppliedPlan['applied'] = [];
    const rejected = [...check.rejected];
    check.accepted.forEach((placement, i) => {
      const moved = moves[i]!;
      // The check read the run queued in this same transaction, so this holds; if not, the run stays as it is.
      if (moved.ok) applied.push({ placement, run: moved.run });
      else rejected.push({ placement, code: 'run_not_queued', reason: `run ${placement.runId} could not move to assigned (${moved.code})` });
    });
    return { applied, rejected };
  });
  for (const { placement, code, reason } of result.rejected) {
    log.warn({ runId: placement.runId, node: placement.nodeId, gpus: placement.gpus, code }, `placement refused at apply, the run stays queued: ${reason}`);
  }
  return result;
}

/**
 * Plan the queued runs once and apply the plan; resolves to how many placements were refused at
 * apply (the cluster changed under the plan). The face (run-lifecycle.ts) never runs two at once.
 */
export async function scheduleRound(ctx: LifecycleContext): Promise<number> {
  const { store, log } = ctx.deps;
  // A GPU lost under a run is seen here first (a status changed what its node can give: plan again).
  await stopRunsOnTroubledGpus(ctx);
  const snapshot = await readSnapshot(store, () => ctx.deps.nodes().map(plannedNode));
  if (snapshot.queued.length === 0) return 0;
  // Start times and fair share need runfor, start times and decayed usage; waiting runs are told their place.
  const now = ctx.deps.now();
  const timed = await withKnownTimes(store, snapshot, now, halfLifeOf(ctx.deps.settings));
  const plan = planRuns(timed, now);
  await postQueuePlaces(ctx, timed, plan, now);
  for (const impossible of plan.impossible) {
    log.info({ runId: impossible.runId, code: impossible.code }, 'run can never start here: rejected');
    await rejectRun(ctx, impossible.runId, `no node can run it: ${impossible.reason}`);
  }
  if (plan.placements.length === 0) return 0;
  // The nodes as they are now, not as the planner saw them.
  const handles = ctx.deps.nodes();
  // Marked as being handed over before the write (hand-over.ts): from its commit on, a newer push
  // cancels them in the state, where the hand-over looks before it sends them.
  const marked = new Set(plan.placements.map((p) => p.runId).filter((id) => !ctx.assigning.has(id)));
  for (const id of marked) ctx.assigning.add(id);
  let result: AppliedPlan;
  try {
    result = await applyPlan(plan, handles.map(plannedNode), ctx.deps);
  } catch (err) {
    for (const id of marked) ctx.assigning.delete(id);
    throw err;
  }
  const { applied, rejected } = result;
  const assigned = new Set(applied.map((a) => a.run.id));
  for (const id of marked) if (!assigned.has(id)) ctx.assigning.delete(id);
  // Committed, no node told yet: a restarted leader sends `assigned` runs again when their node says hello.
  if (applied.length > 0) failpoint('leader.plan.applied');
  for (const { placement, run } of applied) {
    log.info({ runId: placement.runId, node: placement.nodeId, gpus: placement.gpus }, 'run assigned');
    ctx.deps.onAssigned?.(run);
  }
  // Each run on its own: one that cannot be handed over does not hold back the others.
  await Promise.all(
    applied.map(async ({ run }) => {
      const handle = handles.find((h) => h.id === run.node);
      try {
        if (marked.has(run.id)) await handOverMarked(ctx, handle, run);
        else await handOver(ctx, handle, run);
      } catch (err) {
        ctx.assigning.delete(run.id);
        log.error({ err: errorText(err), runId: run.id, node: run.node }, 'could not hand the run over to its node; it is sent again when the node says hello');
      }
    }),
  );
  return rejected.length;
}

/**
 * What the planner plans from: the queued runs and the runs in flight, read in one transaction, and
 * the nodes (asked only when something is queued).
 */
export async function readSnapshot(store: RunStore, nodes: () => PlannedNode[]): Promise<PlanSnapshot> {
  const { queued, inFlight } = await store.inTransaction(async (runs) => ({
    queued: await runs.inStates(['queued']),
    inFlight: await runs.inStates(IN_FLIGHT_STATES),
  }));
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
