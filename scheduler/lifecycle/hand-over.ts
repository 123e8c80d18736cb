/**
 * Sending an assigned run to its node: the run spec the node executes, and with datasets the run's
 * temporary account first, so the credentials exist before the container can start. Used after a
 * plan is applied and when a node comes back without a run it was assigned.
 *
 * A run being handed over is in `ctx.assigning` from before the first await until its node has it
 * (or it is not sent): a newer push then cancels it in the state, and the hand-over, which reads
 * the run again just before it sends it, sends nothing. A planning round marks its placements before
 * it applies them (plan-apply.ts), so no moment between the write and the hand-over is unmarked.
 */
import type { RunRow } from '../../storage/run-store.js';
import type { RunConfig } from '../policy/project-policy.js';
import type { RunSpec } from '../contract/run-spec.js';
import { errorText } from '../common/errors.js';
import { failRun, type LifecycleContext } from './lifecycle-context.js';
import type { NodeHandle } from './lifecycle-deps.js';

/**
 * Send an assigned run to its node, unless a hand-over of it is going on already. With datasets,
 * the run's account is created first; a `review` run's commit is first put in the review project
 * (the release desk's `prepare`). A run cancelled or failed meanwhile is not sent, and its account
 * is dropped. Resolves once the run is sent, or once the slow part (account, review) runs in the
 * background, tracked for idle().
 */
export async function handOver(ctx: LifecycleContext, handle: NodeHandle | undefined, run: RunRow): Promise<void> {
  if (!handle || ctx.assigning.has(run.id)) return;
  ctx.assigning.add(run.id);
  await handOverMarked(ctx, handle, run);
}

/** handOver of a run the caller put in `ctx.assigning` already; the mark is removed when it is done. */
export async function handOverMarked(ctx: LifecycleContext, handle: NodeHandle | undefined, run: RunRow): Promise<void> {
  let inBackground = false;
  try {
    if (!handle) return;
    const datasets = ctx.deps.datasets;
    const desk = ctx.deps.release?.desk;
    await decideRelease(ctx, run);
    const needsAccount = datasets !== undefined && (await datasets.specFor(run.id)) === null;
    const needsReview = desk ? await desk.needsPreparing(run.id) : false;
    if (!needsAccount && !needsReview) {
      await sendIfStillAssigned(ctx, handle, run);
      return;
    }
    inBackground = true;
    const task = (async () => {
      if (needsReview) {
        const prepared = await desk!.prepare(run);
        if (!prepared.ok) {
          await failRun(ctx, run.id, prepared.reason);
          return;
        }
      }
      if (needsAccount) {
        const opened = await datasets.open(run);
        if (!opened.ok) {
          await failRun(ctx, run.id, opened.reason);
          await datasets.release(run.id);
          return;
        }
      }
      if (!(await sendIfStillAssigned(ctx, handle, run)) && needsAccount) await datasets.release(run.id);
    })()
      .catch((err: unknown) => ctx.deps.log.error({ err: errorText(err), runId: run.id }, 'handing a run over to its node failed'))
      .finally(() => ctx.assigning.delete(run.id));
    ctx.track(task);
  } finally {
    if (!inBackground) ctx.assigning.delete(run.id);
  }
}

/**
 * Send the run as it is stored now, if it is still assigned to the node it was assigned to; false
 * when it moved on meanwhile (cancelled, failed). The mark goes in the same turn as the send.
 */
async function sendIfStillAssigned(ctx: LifecycleContext, handle: NodeHandle, run: RunRow): Promise<boolean> {
  const current = await ctx.deps.store.get(run.id);
  if (current?.state !== 'assigned' || current.node !== run.node) return false;
  const spec = await runSpecOf(ctx, current);
  // Read again after the spec's reads: a newer push may have cancelled it meanwhile (it is still marked).
  const still = await ctx.deps.store.get(run.id);
  if (still?.state !== 'assigned' || still.node !== run.node) return false;
  const node = ctx.deps.nodes().find((n) => n.id === run.node) ?? handle;
  node.assign(spec);
  ctx.assigning.delete(run.id);
  return true;
}

/** Record the run's release policy once, from the datasets it is given (DESIGN §10). */
async function decideRelease(ctx: LifecycleContext, run: RunRow): Promise<void> {
  const desk = ctx.deps.release?.desk;
  if (!desk) return;
  const requested = (run.config as { datasets?: string[] | null } | null)?.datasets ?? null;
  // By the pusher's user id, as `open` gives them: the policy must be that of the datasets it reads.
  const given = ctx.deps.datasets ? await ctx.deps.datasets.forRun({ user: run.user, userId: run.userId }, requested) : undefined;
  const datasets = given?.ok ? given.datasets.map((d) => ({ name: d.name, release: d.release, approvals: d.approvals })) : [];
  await desk.decide(run.id, datasets);
}

/**
 * The run's release policy (decided at hand-over; the first decision stands) and where its results go:
 * the researcher's project, or the review project for a `review` run (DESIGN §10).
 */
async function releaseOf(ctx: LifecycleContext, run: RunRow): Promise<{ release?: RunSpec['release']; resultsRemote: string }> {
  const desk = ctx.deps.release?.desk;
  if (!desk) return { resultsRemote: ctx.deps.resultsRemoteFor(run) };
  const decided = await desk.decide(run.id, []);
  return { release: decided.release, resultsRemote: decided.resultsRemote ?? ctx.deps.resultsRemoteFor(run) };
}

/** What the node is told to run: the stored run, its policy, and its dataset access if any. */
async function runSpecOf(ctx: LifecycleContext, run: RunRow): Promise<RunSpec> {
  const config = run.config as RunConfig;
  const access = ctx.deps.datasets ? await ctx.deps.datasets.specFor(run.id) : null;
  const release = await releaseOf(ctx, run);
  return {
    runId: run.id,
    project: run.project,
    commit: run.commit,
    source: ctx.deps.sourceFor(run),
    user: run.user,
    // The cache is keyed by the account, not the name (DESIGN §13); old rows have no id.
    ...(run.userId !== null ? { userId: run.userId } : {}),
    signer: run.signer,
    runforMs: config.runforMs,
    gpus: run.gpus,
    cacheDir: config.cacheDir,
    mountPath: config.mountPath,
    env: access?.env ?? {},
    ...(access ? { datasets: access.datasets } : {}),
    warnings: run.warnings,
    createdAt: run.createdAt,
    resultsRemote: release.resultsRemote,
    ...(release.release ? { release: release.release } : {}),
  };
}
