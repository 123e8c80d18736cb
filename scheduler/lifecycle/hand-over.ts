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
 * Send an assigned run to its node. With datasets, the run's account is created first (awaited); a
 * run cancelled or failed meanwhile is not sent, and its account is dropped.
 */
export function handOver(ctx: LifecycleContext, handle: NodeHandle | undefined, run: RunRow): void {
  const datasets = ctx.deps.datasets;
  if (!handle) return;
  if (!datasets || datasets.specFor(run.id) !== null) {
    handle.assign(runSpecOf(ctx, run));
    return;
  }
  if (ctx.assigning.has(run.id)) return;
  ctx.assigning.add(run.id);
  const task = (async () => {
    const opened = await datasets.open(run);
    if (!opened.ok) {
      failRun(ctx, run.id, opened.reason);
      await datasets.release(run.id);
      return;
    }
    const current = ctx.deps.store.get(run.id);
    const node = ctx.deps.nodes().find((n) => n.id === run.node) ?? handle;
    if (current?.state !== 'assigned' || current.node !== run.node) {
      await datasets.release(run.id);
      return;
    }
    node.assign(runSpecOf(ctx, current));
  })().finally(() => ctx.assigning.delete(run.id));
  ctx.track(task);
}

/**
 * The run's release policy (decided once, from the datasets it is given) and where its results go:
 * the researcher's project, or the review project for a `review` run (DESIGN §10).
 */
function releaseOf(ctx: LifecycleContext, run: RunRow): { release?: RunSpec['release']; resultsRemote: string } {
  const desk = ctx.deps.release?.desk;
  if (!desk) return { resultsRemote: ctx.deps.resultsRemoteFor(run) };
  const requested = (run.config as { datasets?: string[] | null } | null)?.datasets ?? null;
  const given = ctx.deps.datasets?.forRun(run.user, requested);
  const datasets = given?.ok ? given.datasets.map((d) => ({ name: d.name, release: d.release, approvals: d.approvals })) : [];
  const decided = desk.decide(run.id, datasets);
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
