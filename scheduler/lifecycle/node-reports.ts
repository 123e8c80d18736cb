/**
 * What nodes report, turned into transitions: phase changes, results, the runs a (re)connecting node
 * still holds, and nodes that stay away (their runs end `lost`). The node says what a run is; only
 * the lifecycle writes `state`, through the one transition table, so a late or repeated report is
 * a value the table refuses, logged and dropped.
 *
 * A GPU lost under a run (the node's status says `lost` or `error`; daemon/telemetry) stops the run:
 * the leader cancels it on its node with the reason, the node stops the container and still delivers
 * what the run wrote, and its result, `cancelled` by the node's words, is recorded as `failed` with
 * the GPU's reason while the node still reports that GPU in trouble (derived at the result, not
 * remembered, so a leader restart in between loses nothing).
 *
 * Each step is async (the stores are); the face (run-lifecycle.ts) runs one node's reports one
 * after another, in the order the node sent them.
 */
import { IN_FLIGHT_STATES, isInFlight } from '../../storage/run-states.js';
import type { CommitStatusState } from '../gitlab/gitlab-port.js';
import type { RunOutcome, RunPhase } from '../contract/run-spec.js';
import type { RunRow } from '../../storage/run-store.js';
import type { LifecycleContext } from './lifecycle-context.js';
import type { NodeHandle } from './lifecycle-deps.js';
import { handOver } from './hand-over.js';
import { failpoint } from '../common/failpoints.js';
import { onResultOfEndedRun, recordedEndOf } from './ended-runs.js';

/** Default wait for a down node before its runs end `lost`: ten minutes. */
const DEFAULT_LOST_AFTER_MS = 600_000;

/** A node observed a phase change of one of its runs. */
export async function recordPhase(ctx: LifecycleContext, nodeId: string, runId: string, phase: RunPhase, at: string): Promise<void> {
  const run = await ctx.deps.store.get(runId);
  if (!run || run.node !== nodeId) {
    ctx.deps.log.warn({ runId, nodeId, phase }, 'phase report for a run this node does not hold');
    return;
  }
  if (run.state === phase) return;
  const reason =
    phase === 'building' ? 'building the image' : phase === 'running' ? 'container running' : 'pushing results';
  const patch = phase === 'running' ? { startedAt: at } : {};
  const result = await ctx.deps.store.transition(runId, phase, reason, patch);
  if (!result.ok) {
    ctx.deps.log.warn({ runId, phase, result }, 'ignored a phase report the state table does not allow');
    return;
  }
  // The phase recorded, its status not posted: a restarted leader hears the phase again in the node's hello.
  failpoint('leader.phase.recorded');
  if (phase === 'building' || phase === 'running') ctx.postStatus(runId, 'running', reason);
}

/** A handle that reports its GPUs' troubles (scheduler/cluster/remote-node.ts; NodeHandle does not carry it yet). */
type TroubleHandle = NodeHandle & { gpuTroubles?(): Array<{ uuid: string; health: 'lost' | 'error'; problem: string }> };

/** Why a run's GPU is gone (lost or in error on its node now), or null. */
function gpuLossOf(ctx: LifecycleContext, run: Pick<RunRow, 'node' | 'gpus'>): string | null {
  if (run.node === null || run.gpus.length === 0) return null;
  const handle = ctx.deps.nodes().find((n) => n.id === run.node) as TroubleHandle | undefined;
  const troubles = handle?.gpuTroubles?.() ?? [];
  if (troubles.length === 0) return null;
  // A MIG device is gone with its GPU: the handle lists the GPU, the run holds the device.
  const unavailable = new Set(handle!.foreignBusyGpus());
  const hit = troubles.find((t) => run.gpus.includes(t.uuid)) ?? (run.gpus.some((g) => unavailable.has(g) && g.startsWith('MIG-')) ? troubles[0] : undefined);
  if (!hit) return null;
  return `GPU ${hit.uuid} on node ${run.node} is ${hit.health === 'lost' ? 'lost' : 'in error'} (${hit.problem})`;
}

/** Cancel, on their nodes, the runs in flight whose GPU the node reports lost or in error (see the module comment). */
export async function stopRunsOnTroubledGpus(ctx: LifecycleContext): Promise<void> {
  const { store, log } = ctx.deps;
  for (const run of await store.inStates(IN_FLIGHT_STATES)) {
    if (run.state === 'uploading') continue;
    const loss = gpuLossOf(ctx, run);
    if (!loss) continue;
    log.warn({ runId: run.id, node: run.node, gpus: run.gpus }, `stopping the run: ${loss}`);
    ctx.deps.nodes().find((n) => n.id === run.node)?.cancel(run.id, `stopped by secd: ${loss}`);
  }
}

/** A node finished a run: record the end, free its GPUs, tell GitLab, and plan again. */
export async function recordResult(ctx: LifecycleContext, nodeId: string, runId: string, given: RunOutcome): Promise<void> {
  const { store, log } = ctx.deps;
  const run = await store.get(runId);
  if (!run || run.node !== nodeId) {
    log.warn({ runId, nodeId }, 'result for a run this node does not hold');
    return;
  }
  // Cancelled because its GPU was lost: that is a failure, and the GPU is why.
  const loss = given.end === 'cancelled' ? gpuLossOf(ctx, run) : null;
  const outcome: RunOutcome = loss ? { ...given, end: 'failed', reason: `failed: ${loss}` } : given;
  // Ended (or held for review) already: the node re-sends until acknowledged (ended-runs.ts). Nothing
  // moves: a held run's re-sent result must not end it past its review.
  const recorded = await recordedEndOf(ctx, run);
  if (recorded !== null) {
    await onResultOfEndedRun(ctx, nodeId, run, recorded, given, outcome);
    return;
  }
  if (run.state === 'assigned' || run.state === 'building' || run.state === 'running') {
    // The node's `uploading` report was lost with a connection (or a leader restart): every run
    // passes through it before its end, so record it first.
    await store.transition(runId, 'uploading', 'pushing results');
  }
  // A review run whose results reached the review project is held there (scheduler/release/).
  const desk = ctx.deps.release?.desk;
  const current = (await store.get(runId))!;
  if (desk && (await desk.isReview(runId)) && (await desk.hold(current, outcome, (p) => ctx.track(p)))) {
    releaseDatasets(ctx, runId, outcome);
    ctx.scheduleSoon();
    return;
  }
  await desk?.recordDirect(runId, outcome);
  const result = await store.transition(runId, outcome.end, outcome.reason, {
    exitCode: outcome.exitCode,
    imageId: outcome.imageId,
    branch: outcome.branch,
    ...(outcome.startedAt ? { startedAt: run.startedAt ?? outcome.startedAt } : {}),
    finishedAt: outcome.finishedAt,
    // A direct run's failed build: its last build.log lines for the run page (a review run returned above).
    ...(outcome.buildLogTail ? { buildLogTail: outcome.buildLogTail } : {}),
  });
  if (!result.ok) {
    log.warn({ runId, outcome: outcome.end, result }, 'ignored a result the state table does not allow');
  } else {
    const state: CommitStatusState =
      outcome.end === 'succeeded' ? 'success' : outcome.end === 'cancelled' ? 'canceled' : 'failed';
    ctx.postStatus(runId, state, outcome.reason);
  }
  releaseDatasets(ctx, runId, outcome);
  ctx.scheduleSoon();
}

/** Drop the ended run's dataset account and record what its socket carried, in the background. */
function releaseDatasets(ctx: LifecycleContext, runId: string, outcome: RunOutcome): void {
  const datasets = ctx.deps.datasets;
  if (datasets) ctx.background('dropping the run\'s dataset account', () => datasets.release(runId, outcome.datasetBytes), { runId });
}

/**
 * A node (re)connected and listed the runs it still holds (spec on its disk). Each of its runs in
 * flight carries on from what the node says; one the node never received is sent again; one the
 * node no longer has ends `lost`. A run the node holds that the leader already ended is cancelled
 * there. Runs the node finished report their results themselves (re-sent until acknowledged).
 */
export async function reconcileHeldRuns(
  ctx: LifecycleContext,
  nodeId: string,
  held: ReadonlyArray<{ runId: string; phase: 'assigned' | 'finished' | RunPhase }>,
): Promise<void> {
  const { store, log } = ctx.deps;
  const handle = ctx.deps.nodes().find((n) => n.id === nodeId);
  const heldById = new Map(held.map((h) => [h.runId, h]));
  const at = ctx.deps.now().toISOString();
  for (const run of await store.inStates(IN_FLIGHT_STATES)) {
    if (run.node !== nodeId) continue;
    const h = heldById.get(run.id);
    if (h === undefined) {
      if (run.state === 'assigned') {
        // Assigned before the node had it on disk (or before a leader restart): send it again.
        await handOver(ctx, handle, run);
        continue;
      }
      const reason = `node ${nodeId} came back without this run (it no longer holds it)`;
      log.warn({ runId: run.id, nodeId, state: run.state }, 'node no longer holds its run');
      if ((await store.transition(run.id, 'lost', reason)).ok) ctx.postStatus(run.id, 'failed', reason);
      continue;
    }
    if (h.phase === 'building' || h.phase === 'running' || h.phase === 'uploading') await recordPhase(ctx, nodeId, run.id, h.phase, at);
  }
  for (const h of held) {
    if (h.phase === 'finished') continue;
    const run = await store.get(h.runId);
    if (!run || run.node !== nodeId) {
      handle?.cancel(h.runId, 'the leader has no record of this run on this node');
    } else if (!isInFlight(run.state)) {
      handle?.cancel(h.runId, `the leader already ended this run (${run.state}: ${run.reason})`);
    }
  }
  ctx.scheduleSoon();
}

/** End `lost` every run whose node has been down longer than `lostAfterMs`. */
export async function sweepLostRuns(ctx: LifecycleContext): Promise<void> {
  const downSince = ctx.deps.nodeDownSince;
  if (!downSince || ctx.closed()) return;
  const { store, log } = ctx.deps;
  const lostAfterMs = ctx.deps.settings.lostAfterMs ?? DEFAULT_LOST_AFTER_MS;
  const now = ctx.deps.now().getTime();
  let lost = 0;
  for (const run of await store.inStates(IN_FLIGHT_STATES)) {
    if (run.node === null) continue;
    const since = downSince(run.node);
    if (since === null || now - since.getTime() < lostAfterMs) continue;
    const minutes = Math.round(((now - since.getTime()) / 60_000) * 10) / 10;
    const reason = `node ${run.node} has been unreachable for ${minutes} min (lost_after is ${lostAfterMs / 60_000} min)`;
    log.warn({ runId: run.id, node: run.node }, 'run lost: its node stayed away');
    if ((await store.transition(run.id, 'lost', reason)).ok) {
      lost++;
      ctx.postStatus(run.id, 'failed', reason);
    }
  }
  if (lost > 0) ctx.scheduleSoon();
}
