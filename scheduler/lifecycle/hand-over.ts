/**
 * Sending an assigned run to its node: the run spec the node executes, and with datasets the run's
 * temporary account first, so the credentials exist before the container can start. Used after a
 * plan is applied and when a node comes back without a run it was assigned.
 */
import type { RunRow } from '../../storage/run-store.js';
import type { RunConfig } from '../policy/project-policy.js';
import type { RunSpec } from '../contract/run-spec.js';
import { failRun, type LifecycleContext } from './lifecycle-context.js';
import type { NodeHandle } from './lifecycle-deps.js';

/**
 * Send an assigned run to its node. With datasets, the run's account is created first (awaited);
 * a `review` run's commit is first put in the review project (the release desk's `prepare`). A run
 * cancelled or failed meanwhile is not sent, and its account is dropped.
 */
export function handOver(ctx: LifecycleContext, handle: NodeHandle | undefined, run: RunRow): void {
  const datasets = ctx.deps.datasets;
  if (!handle) return;
  decideRelease(ctx, run);
  const desk = ctx.deps.release?.desk;
  const needsAccount = datasets !== undefined && datasets.specFor(run.id) === null;
  const needsReview = desk?.needsPreparing(run.id) ?? false;
  if (!needsAccount && !needsReview) {
    handle.assign(runSpecOf(ctx, run));
    return;
  }
  if (ctx.assigning.has(run.id)) return;
  ctx.assigning.add(run.id);
  const task = (async () => {
    if (needsReview) {
      const prepared = await desk!.prepare(run);
      if (!prepared.ok) {
        failRun(ctx, run.id, prepared.reason);
        return;
      }
    }
    if (needsAccount) {
      const opened = await datasets.open(run);
      if (!opened.ok) {
        failRun(ctx, run.id, opened.reason);
        await datasets.release(run.id);
        return;
      }
    }
    const current = ctx.deps.store.get(run.id);
    const node = ctx.deps.nodes().find((n) => n.id === run.node) ?? handle;
    if (current?.state !== 'assigned' || current.node !== run.node) {
      if (needsAccount) await datasets.release(run.id);
      return;
    }
    node.assign(runSpecOf(ctx, current));
  })().finally(() => ctx.assigning.delete(run.id));
  ctx.track(task);
}

/** Record the run's release policy once, from the datasets it is given (DESIGN §10). */
function decideRelease(ctx: LifecycleContext, run: RunRow): void {
  const desk = ctx.deps.release?.desk;
  if (!desk) return;
  const requested = (run.config as { datasets?: string[] | null } | null)?.datasets ?? null;
  // By the pusher's user id, as `open` gives them: the policy must be that of the datasets it reads.
  const given = ctx.deps.datasets?.forRun({ user: run.user, userId: run.userId }, requested);
  const datasets = given?.ok ? given.datasets.map((d) => ({ name: d.name, release: d.release, approvals: d.approvals })) : [];
  desk.decide(run.id, datasets);
}

/**
 * The run's release policy (decided at hand-over; the first decision stands) and where its results go:
 * the researcher's project, or the review project for a `review` run (DESIGN §10).
 */
function releaseOf(ctx: LifecycleContext, run: RunRow): { release?: RunSpec['release']; resultsRemote: string } {
  const desk = ctx.deps.release?.desk;
  if (!desk) return { resultsRemote: ctx.deps.resultsRemoteFor(run) };
  const decided = desk.decide(run.id, []);
  return { release: decided.release, resultsRemote: decided.resultsRemote ?? ctx.deps.resultsRemoteFor(run) };
}

/** What the node is told to run: the stored run, its policy, and its dataset access if any. */
function runSpecOf(ctx: LifecycleContext, run: RunRow): RunSpec {
  const config = run.config as RunConfig;
  const access = ctx.deps.datasets?.specFor(run.id) ?? null;
  const release = releaseOf(ctx, run);
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
