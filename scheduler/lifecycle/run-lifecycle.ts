/**
 * The leader's run lifecycle: from an accepted push to a terminal state.
 * It owns `state` (one writer), posts GitLab commit statuses, asks the pure planner for placements
 * and applies them, and turns what nodes report into transitions.
 *
 * This file is the face; each step sits beside it and shares one LifecycleContext:
 * run-checks.ts (verification and policy after intake), plan-apply.ts (a planning round and
 * `applyPlan`, its one re-checked write), hand-over.ts (sending a run to its node),
 * node-reports.ts (phases, results, hellos, lost nodes) and commit-statuses.ts (the ordered
 * pending -> running -> ... poster).
 */
import type { PushEvent } from '../intake/push-event.js';
import type { RunOutcome, RunPhase } from '../contract/run-spec.js';
import type { CommitStatusState } from '../gitlab/gitlab-port.js';
import { failpoint } from '../common/failpoints.js';
import { CommitStatuses } from './commit-statuses.js';
import { FINAL_STATUS_LOOKBACK_MS, isFinalStatus, postMissingFinalStatuses, withFailpointAfterFinalPosts } from './ended-runs.js';
import type { LifecycleContext } from './lifecycle-context.js';
import type { LifecycleDeps } from './lifecycle-deps.js';
import { reconcileHeldRuns, recordPhase, recordResult, sweepLostRuns } from './node-reports.js';
import { scheduleRound } from './plan-apply.js';
import { IntakeGate } from './intake-gate.js';
import { RunChecks } from './run-checks.js';

export type { LifecycleDeps, NodeHandle, PushVerification } from './lifecycle-deps.js';

/** The leader's run lifecycle. */
export class RunLifecycle {
  private scheduleQueued = false;
  /** The queued round re-plans after placements were refused at apply. */
  private replanning = false;
  private isClosed = false;
  private readonly pending = new Set<Promise<unknown>>();
  /** Runs whose final commit status is being posted now. */
  private readonly finalInFlight = new Set<string>();
  private readonly ctx: LifecycleContext;
  private readonly checks: RunChecks;
  private readonly statuses: CommitStatuses;
  /** Holds accepted pushes' background work until the webhooks pause (intake-gate.ts). */
  private readonly gate: IntakeGate;

  constructor(private readonly deps: LifecycleDeps) {
    this.gate = new IntakeGate(deps.settings.intakeGate);
    const statuses = new CommitStatuses({
      store: deps.store,
      ...(deps.release ? { releases: deps.release.store } : {}),
      gitlab: withFailpointAfterFinalPosts(deps.gitlab),
      log: deps.log,
      publicUrl: deps.settings.publicUrl,
      nodes: deps.nodes,
      now: deps.now,
    });
    this.statuses = statuses;
    this.ctx = {
      deps,
      assigning: new Set(),
      finalChecks: new Set(),
      postStatus: (runId, state, description, channel) => {
        const final = channel !== 'release' && isFinalStatus(state);
        // One final status per run: a second ask while the first is on its way (a result re-sent in
        // the same moment) is dropped; once it is settled, `statusPosted` says whether GitLab took it.
        if (final && this.finalInFlight.has(runId)) return;
        if (final) this.finalInFlight.add(runId);
        this.track(
          statuses.post(runId, state, description, channel).then(() => {
            if (!final) return;
            this.finalInFlight.delete(runId);
            // GitLab took (or refused) the run's final status: crash tests stop the leader after it.
            failpoint('leader.status.final');
          }),
        );
      },
      track: (p) => this.track(p),
      scheduleSoon: () => this.scheduleSoon(),
      closed: () => this.isClosed,
    };
    this.checks = new RunChecks(this.ctx, this.gate);
  }

  /**
   * Record an accepted push as a run and start its checks after returning. Once per delivery key,
   * and once per push: the same (project, ref, before, after) delivered again under a new
   * Idempotency-Key (a replay) answers the first run as a duplicate instead of running an old commit
   * again and superseding the current run (issue 13). To run a commit again, push a new commit.
   * Returns what the webhook answer reports.
   */
  acceptPush(push: PushEvent, deliveryKey: string, event: string): { run_id: string; duplicate: boolean } {
    const { store } = this.deps;
    const claimed = store.claimDelivery(deliveryKey, event, () => {
      const earlier = store.findPush(push.project.id, push.ref, push.before, push.after);
      if (earlier) return { run_id: earlier.id, duplicate: true };
      const run = store.createRun({
        id: this.deps.newRunId(),
        projectId: push.project.id,
        project: push.project.path_with_namespace,
        ref: push.ref,
        beforeSha: push.before,
        commit: push.after,
        user: push.user_username,
        userId: push.user_id,
        deliveryKey,
        fetchUrl: push.project.git_http_url,
      });
      return { run_id: run.id, duplicate: false };
    });
    if (!claimed.first) {
      const previous = claimed.outcome as { run_id: string };
      return { run_id: previous.run_id, duplicate: true };
    }
    const { run_id: runId, duplicate } = claimed.value;
    if (duplicate) return { run_id: runId, duplicate: true };
    // Stored (the delivery and its run in one transaction), not answered yet: GitLab sees the
    // connection drop, and a restarted leader checks the `received` run (resume()).
    failpoint('leader.intake.stored');
    // The run is stored: everything else waits until the answer is on its way, and until the
    // webhooks pause (intake-gate.ts): started at once, the status post and the checks (a git spawn
    // blocks the loop for milliseconds) would run while GitLab's next delivery waits. idle() still
    // waits for them.
    this.gate.arrived();
    this.track(
      this.gate.whenQuiet().then(() => {
        this.ctx.postStatus(runId, 'pending', 'verifying the pushed commits');
        this.checks.enqueue(push.project.id, runId);
      }),
    );
    return { run_id: runId, duplicate: false };
  }

  /** An authorized webhook arrived (any kind): accepted pushes' background work waits for the hooks to pause. */
  webhookArrived(): void {
    this.gate.arrived();
  }

  /**
   * After a restart: carry every unfinished run on from where SQLite says it is. Each step a killed
   * leader may have left half done is done again here: checks of `received`/`verified` runs, older
   * runs a queued one supersedes, final statuses GitLab never took (ended-runs.ts), then planning.
   */
  resume(): void {
    for (const run of this.deps.store.inStates(['received', 'verified'])) this.checks.enqueue(run.projectId, run.id);
    this.checks.supersedeAfterRestart();
    postMissingFinalStatuses(this.ctx);
    this.scheduleSoon();
    // Held runs wait for their review as they did before the restart: look at each once now. A
    // review released just before the kill may still have its merge request open.
    if (this.deps.release) {
      this.pollReleases();
      this.track(this.deps.release.desk.closeReleasedReviews(new Date(this.deps.now().getTime() - FINAL_STATUS_LOOKBACK_MS)));
    }
  }

  /**
   * A merge-request hook arrived for project `projectId` (the hook's content proves nothing: the
   * release desk reads the review from GitLab). Says which held run it concerns, if any.
   */
  onMergeRequestEvent(projectId: number, iid: number): { run_id: string | null } {
    if (!this.deps.release || this.isClosed) return { run_id: null };
    return this.deps.release.desk.onMergeRequestEvent(projectId, iid, (p) => this.track(p));
  }

  /** Look at every held run's review again (every release.poll_interval_ms, and after a restart). */
  pollReleases(): void {
    if (!this.deps.release || this.isClosed) return;
    this.track(this.deps.release.desk.pollHeld());
  }

  /** Post one of a run's commit statuses in order (the release desk's statuses go through here too). */
  postStatus(runId: string, state: CommitStatusState, description: string, channel: 'run' | 'release' = 'run'): void {
    this.ctx.postStatus(runId, state, description, channel);
  }

  /** A node observed a phase change of one of its runs. */
  onPhase(nodeId: string, runId: string, phase: RunPhase, at: string): void {
    recordPhase(this.ctx, nodeId, runId, phase, at);
  }

  /** A node finished a run: record the end, free its GPUs, tell GitLab, and plan again. */
  onResult(nodeId: string, runId: string, outcome: RunOutcome): void {
    recordResult(this.ctx, nodeId, runId, outcome);
  }

  /** A node (re)connected and listed the runs it still holds (see node-reports.ts). */
  onNodeHello(nodeId: string, held: ReadonlyArray<{ runId: string; phase: 'assigned' | 'finished' | RunPhase }>): void {
    reconcileHeldRuns(this.ctx, nodeId, held);
  }

  /** End `lost` every run whose node has been down longer than `lostAfterMs`; call it periodically. */
  sweepLostRuns(): void {
    sweepLostRuns(this.ctx);
    // The same one-second tick sends status words held back a minute and a running run's time left.
    if (!this.isClosed) for (const p of this.statuses.flush()) this.track(p);
  }

  /** Plan on the next tick (many events in one tick give one planning round). */
  scheduleSoon(): void {
    if (this.scheduleQueued || this.isClosed) return;
    this.scheduleQueued = true;
    setImmediate(() => {
      this.scheduleQueued = false;
      // close() may have come between the request and this tick: its database may be gone.
      if (this.isClosed) return;
      const refused = scheduleRound(this.ctx);
      // A placement refused at apply means the cluster changed under the plan: plan once more at
      // once against the new state. Only once in a row, so a disagreement can never spin.
      this.replanning = refused > 0 && !this.replanning;
      if (this.replanning) this.scheduleSoon();
    });
  }

  /** Wait for every background step started so far (tests and shutdown). */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  /** Stop starting new work. */
  async close(): Promise<void> {
    this.isClosed = true;
    // Work held for a pause starts now (and sees closed()): shutdown does not wait out a burst.
    this.gate.open();
    await this.idle();
  }

  private track(p: Promise<unknown>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }
}
