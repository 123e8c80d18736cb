/**
 * What the lifecycle's steps share: the deps, the commit-status poster and the face's bookkeeping
 * (background work that idle() waits for, the next planning round, shutdown). RunLifecycle builds one
 * and hands it to each step, so the steps sit in files of their own without importing the face.
 */
import type { RunState } from '../../storage/run-states.js';
import type { CommitStatusState } from '../gitlab/gitlab-port.js';
import type { LifecycleDeps } from './lifecycle-deps.js';

/** The lifecycle's shared state, as its steps see it. */
export interface LifecycleContext {
  readonly deps: LifecycleDeps;
  /** Runs whose dataset account is being created: their node gets the spec once it exists. */
  readonly assigning: Set<string>;
  /** Runs whose missing final status is being looked up in GitLab (ended-runs.ts): one look at a time. */
  readonly finalChecks: Set<string>;
  /** Post a commit status in order (commit-statuses.ts), tracked for idle(); `release` is the run's secd/release status. */
  postStatus(runId: string, state: CommitStatusState, description: string, channel?: 'run' | 'release'): void;
  /** Keep a background step for idle() to wait on. */
  track(p: Promise<unknown>): void;
  /** Plan on the next tick (many events in one tick give one round). */
  scheduleSoon(): void;
  /** Whether close() was called: no new work starts. */
  closed(): boolean;
}

/** End a run `rejected` (it never reached a node) and tell GitLab. */
export function rejectRun(ctx: LifecycleContext, runId: string, reason: string): void {
  if (ctx.deps.store.transition(runId, 'rejected', reason).ok) ctx.postStatus(runId, 'failed', reason);
}

/** End a run after an error: `rejected` while it was still being checked or queued, `failed` after. */
export function failRun(ctx: LifecycleContext, runId: string, reason: string): void {
  const run = ctx.deps.store.get(runId);
  if (!run) return;
  const to: RunState = run.state === 'received' || run.state === 'verified' || run.state === 'queued' ? 'rejected' : 'failed';
  if (ctx.deps.store.transition(runId, to, reason).ok) ctx.postStatus(runId, 'failed', reason);
}
