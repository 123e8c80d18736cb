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

/** What the node is told to run: the stored run, its policy, and its dataset access if any. */
function runSpecOf(ctx: LifecycleContext, run: RunRow): RunSpec {
  const config = run.config as RunConfig;
  const access = ctx.deps.datasets?.specFor(run.id) ?? null;
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
    resultsRemote: ctx.deps.resultsRemoteFor(run),
  };
}
