/**
 * What the lifecycle's steps share: the deps, the commit-status poster and the face's bookkeeping
 * (background work that idle() waits for, the next planning round, shutdown). RunLifecycle builds one
 * and hands it to each step, so the steps sit in files of their own without importing the face.
 *
 * The stores are async (storage/, issue 11): every step that reads or writes the state is an async
 * function, and what the face starts without awaiting goes through `background`, which tracks it for
 * idle() and logs its error instead of leaving an unhandled rejection.
 */
import type { RunState } from '../../storage/run-states.js';
import type { CommitStatusState } from '../gitlab/gitlab-port.js';
import type { LifecycleDeps } from './lifecycle-deps.js';

/** The lifecycle's shared state, as its steps see it. */
export interface LifecycleContext {
  readonly deps: LifecycleDeps;
  /**
   * Runs being handed over to their node (hand-over.ts: the release policy decided, a review
   * prepared, a dataset account created): the node does not have them yet, so a newer push cancels
   * them in the state, not on the node. Set before the hand-over's first await.
   */
  readonly assigning: Set<string>;
  /** Runs whose missing final status is being looked up in GitLab (ended-runs.ts): one look at a time. */
  readonly finalChecks: Set<string>;
  /** Post a commit status in order (commit-statuses.ts), tracked for idle(); `release` is the run's secd/release status. */
  postStatus(runId: string, state: CommitStatusState, description: string, channel?: 'run' | 'release'): void;
  /** Keep a background step for idle() to wait on. */
  track(p: Promise<unknown>): void;
  /** Start `work` without awaiting it: tracked for idle(), its error logged as "`what` failed". */
  background(what: string, work: () => Promise<unknown>, fields?: object): void;
  /** Plan soon (many events close together give one round; never two rounds at once). */
  scheduleSoon(): void;
  /** Whether close() was called: no new work starts. */
  closed(): boolean;
}

/** End a run `rejected` (it never reached a node) and tell GitLab. */
export async function rejectRun(ctx: LifecycleContext, runId: string, reason: string): Promise<void> {
  if ((await ctx.deps.store.transition(runId, 'rejected', reason)).ok) ctx.postStatus(runId, 'failed', reason);
}

/**
 * End a run after an error: `rejected` while it was still being checked or queued, `failed` after.
 * The state read first may have moved by the transition: the store refuses a transition the table
 * does not allow then, and the run keeps the end it got.
 */
export async function failRun(ctx: LifecycleContext, runId: string, reason: string): Promise<void> {
  const run = await ctx.deps.store.get(runId);
  if (!run) return;
  const to: RunState = run.state === 'received' || run.state === 'verified' || run.state === 'queued' ? 'rejected' : 'failed';
  if ((await ctx.deps.store.transition(runId, to, reason)).ok) ctx.postStatus(runId, 'failed', reason);
}
