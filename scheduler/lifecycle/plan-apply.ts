/**
 * One planning round: a snapshot of the queue, the runs in flight and the nodes goes to the pure
 * planner (scheduler/plan); its impossible runs are rejected and its placements applied, each run
 * moving only while still queued, then handed to its node.
 */
import { IN_FLIGHT_STATES } from '../../storage/run-states.js';
import { planRuns, type PlannedNode } from '../plan/plan.js';
import type { RunConfig } from '../policy/project-policy.js';
import { rejectRun, type LifecycleContext } from './lifecycle-context.js';
import { handOver } from './hand-over.js';

/** Plan the queued runs once and apply the plan. */
export function scheduleRound(ctx: LifecycleContext): void {
  const { store, log } = ctx.deps;
  const queued = store.inStates(['queued']);
  if (queued.length === 0) return;
  const handles = ctx.deps.nodes();
  const active = store.inStates(IN_FLIGHT_STATES);
  // The planner subtracts what running runs hold and what foreign processes use from what nodes have.
  const nodes: PlannedNode[] = handles.map((h) => ({
    id: h.id,
    state: h.state(),
    gpus: h.gpus(),
    foreignBusyGpus: h.foreignBusyGpus(),
    cpuSlots: h.cpuSlots(),
    images: h.images?.() ?? [],
  }));
  const plan = planRuns(
    {
      queued: queued.map((r) => ({
        id: r.id,
        user: r.user,
        project: r.project,
        gpus: (r.config as RunConfig).gpus,
        queuedAt: r.createdAt,
      })),
      running: active.flatMap((r) => (r.node ? [{ id: r.id, user: r.user, nodeId: r.node, gpus: r.gpus }] : [])),
      nodes,
    },
    ctx.deps.now(),
  );
  for (const impossible of plan.impossible) {
    log.info({ runId: impossible.runId, code: impossible.code }, 'run can never start here: rejected');
    rejectRun(ctx, impossible.runId, `no node can run it: ${impossible.reason}`);
  }
  for (const placement of plan.placements) {
    const handle = handles.find((h) => h.id === placement.nodeId);
    // Re-check at apply time: transition() only moves a run that is still queued.
    const gpuNote = placement.gpus.length ? ` with ${placement.gpus.length} GPU(s)` : '';
    const moved = store.transition(placement.runId, 'assigned', `assigned to ${placement.nodeId}${gpuNote}`, {
      node: placement.nodeId,
      gpus: placement.gpus,
    });
    if (!moved.ok || !handle) continue;
    log.info({ runId: placement.runId, node: placement.nodeId, gpus: placement.gpus }, 'run assigned');
    ctx.deps.onAssigned?.(moved.run);
    handOver(ctx, handle, moved.run);
  }
}
