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
 *
 * The stores are async (issue 11). What the webhook answer waits for is async here too
 * (`acceptPush`, `onMergeRequestEvent`); everything else keeps a synchronous face and runs its
 * store calls in the background, tracked for idle() and logged when they fail. Choices made:
 * - One planning round at a time: a request while a round runs gives exactly one more round after it
 *   (a round reads the state afresh, so one is enough for any number of requests).
 * - A node's reports (phases, results, its hello) are handled one after another in the order they
 *   came, as they were when the store was synchronous: a result must see the phase sent before it,
 *   and a result re-sent at once must see the first one recorded. Different nodes do not wait for
 *   each other.
 * - One lost-run sweep at a time: the one-second tick skips while the previous sweep still runs.
 */
import type { PushEvent } from '../intake/push-event.js';
import type { RunOutcome, RunPhase } from '../contract/run-spec.js';
import type { CommitStatusState } from '../gitlab/gitlab-port.js';
import { errorText } from '../common/errors.js';
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
  /** A round was asked for and has not started yet. */
  private roundAsked = false;
  /** The round in progress (or waiting for its tick), if any. */
  private round: Promise<void> | null = null;
  /** The queued round re-plans after placements were refused at apply. */
  private replanning = false;
  private sweeping = false;
  private isClosed = false;
  private readonly pending = new Set<Promise<unknown>>();
  /** Each node's reports, handled in the order they came (the tail of its chain). */
  private readonly reportChains = new Map<string, Promise<boolean>>();
  /** Runs whose final commit status is being posted now. */
  private readonly finalInFlight = new Set<string>();
  /** `received` runs whose checks this leader started (pickUpStoredPushes starts each once). */
  private readonly checking = new Set<string>();
  private pickingUp = false;
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
      background: (what, work, fields) => this.background(what, work, fields),
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
   * Resolves to what the webhook answer reports once the delivery and its run are stored.
   */
  async acceptPush(push: PushEvent, deliveryKey: string, event: string): Promise<{ run_id: string; duplicate: boolean }> {
    // The transaction may run again on a lock conflict: it only reads and writes the database.
    // Any leader stores a delivery (DESIGN §11): intake writes are not the active leader's fenced ones.
    const claimed = await (this.deps.intakeStore ?? this.deps.store).claimDelivery(deliveryKey, event, async (runs) => {
      const earlier = await runs.findPush(push.project.id, push.ref, push.before, push.after);
      if (earlier) return { run_id: earlier.id, duplicate: true };
      const run = await runs.createRun({
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
    // A standby only stores the push: the active leader picks it up (pickUpStoredPushes) and checks it.
    if (!this.active()) return { run_id: runId, duplicate: false };
    this.checking.add(runId);
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

  /**
   * Where several leaders share the state (DESIGN §11): start the checks of `received` runs another
   * leader stored (every leader takes webhooks, only the active one checks). Each run once; called
   * every intake poll by the active leader.
   */
  pickUpStoredPushes(): void {
    if (this.isClosed || this.pickingUp || !this.active()) return;
    this.pickingUp = true;
    this.background('picking up pushes other leaders stored', async () => {
      try {
        const waiting = await this.deps.store.inStates(['received']);
        const ids = new Set(waiting.map((r) => r.id));
        for (const id of this.checking) if (!ids.has(id)) this.checking.delete(id);
        for (const run of waiting) {
          if (this.checking.has(run.id) || this.isClosed) continue;
          this.checking.add(run.id);
          this.ctx.postStatus(run.id, 'pending', 'verifying the pushed commits');
          this.checks.enqueue(run.projectId, run.id);
        }
      } finally {
        this.pickingUp = false;
      }
    });
  }

  /** An authorized webhook arrived (any kind): accepted pushes' background work waits for the hooks to pause. */
  webhookArrived(): void {
    this.gate.arrived();
  }

  /**
   * After a restart: carry every unfinished run on from where the state says it is. Each step a
   * killed leader may have left half done is done again here: checks of `received`/`verified` runs,
   * older runs a queued one supersedes, final statuses GitLab never took (ended-runs.ts), then
   * planning. Runs in the background; idle() waits for it. A step that fails is logged and the
   * next one still runs (planning most of all).
   */
  resume(): void {
    this.background('resuming the runs after a restart', async () => {
      const step = (what: string, work: () => Promise<unknown>) =>
        work().catch((err: unknown) => this.deps.log.error({ err: errorText(err) }, `after the restart, ${what} failed`));
      await step('checking the runs not checked yet', async () => {
        for (const run of await this.deps.store.inStates(['received', 'verified'])) {
          this.checking.add(run.id);
          this.checks.enqueue(run.projectId, run.id);
        }
      });
      await step('superseding older runs of newly queued ones', () => this.checks.supersedeAfterRestart());
      await step('posting the final statuses GitLab never took', () => postMissingFinalStatuses(this.ctx));
      this.scheduleSoon();
      // Held runs wait for their review as they did before the restart: look at each once now. A
      // review released just before the kill may still have its merge request open.
      const release = this.deps.release;
      if (release && !this.isClosed) {
        this.pollReleases();
        const since = new Date(this.deps.now().getTime() - FINAL_STATUS_LOOKBACK_MS);
        this.background('closing the merge requests of reviews released before the restart', () => release.desk.closeReleasedReviews(since));
      }
    });
  }

  /**
   * A merge-request hook arrived for project `projectId` (the hook's content proves nothing: the
   * release desk reads the review from GitLab). Says which held run it concerns, if any.
   */
  async onMergeRequestEvent(projectId: number, iid: number): Promise<{ run_id: string | null }> {
    // A standby leaves reviews to the active leader, whose poll reads every held run's review.
    if (!this.deps.release || this.isClosed || !this.active()) return { run_id: null };
    return this.deps.release.desk.onMergeRequestEvent(projectId, iid, (p) => this.track(p));
  }

  /** Look at every held run's review again (every release.poll_interval_ms, and after a restart). */
  pollReleases(): void {
    const release = this.deps.release;
    if (!release || this.isClosed) return;
    this.background('looking at the held runs\' reviews', () => release.desk.pollHeld());
  }

  /** Post one of a run's commit statuses in order (the release desk's statuses go through here too). */
  postStatus(runId: string, state: CommitStatusState, description: string, channel: 'run' | 'release' = 'run'): void {
    this.ctx.postStatus(runId, state, description, channel);
  }

  /** A node observed a phase change of one of its runs (handled after that node's earlier reports). */
  onPhase(nodeId: string, runId: string, phase: RunPhase, at: string): void {
    void this.report(nodeId, `recording phase ${phase} of run ${runId}`, () => recordPhase(this.ctx, nodeId, runId, phase, at));
  }

  /**
   * A node finished a run: record the end, free its GPUs, tell GitLab, and plan again. Callers need
   * not wait. The promise never rejects: it resolves true once the result is recorded (or found
   * recorded already), false when recording it failed (logged), for a caller that acknowledges the
   * result to the node only once it is recorded, so that a failed write is sent again.
   */
  onResult(nodeId: string, runId: string, outcome: RunOutcome): Promise<boolean> {
    return this.report(nodeId, `recording the result of run ${runId}`, () => recordResult(this.ctx, nodeId, runId, outcome));
  }

  /** A node (re)connected and listed the runs it still holds (see node-reports.ts). */
  onNodeHello(nodeId: string, held: ReadonlyArray<{ runId: string; phase: 'assigned' | 'finished' | RunPhase }>): void {
    void this.report(nodeId, `reconciling the runs node ${nodeId} holds`, () => reconcileHeldRuns(this.ctx, nodeId, held));
  }

  /** End `lost` every run whose node has been down longer than `lostAfterMs`; call it periodically. */
  sweepLostRuns(): void {
    if (this.isClosed || this.sweeping) return;
    this.sweeping = true;
    this.background('sweeping for lost runs', async () => {
      try {
        await sweepLostRuns(this.ctx);
        // The same one-second tick sends status words held back a minute and a running run's time left.
        if (!this.isClosed) await this.statuses.flush();
      } finally {
        this.sweeping = false;
      }
    });
  }

  /** Plan soon: many requests close together give one round, and a request during a round one more after it. */
  scheduleSoon(): void {
    if (this.isClosed || this.roundAsked) return;
    this.roundAsked = true;
    // The round in progress starts the next one when it ends.
    if (this.round === null) this.startRound();
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

  /** One round on the next tick; when it ends, another if one was asked for meanwhile. */
  private startRound(): void {
    const round = new Promise<void>((tick) => setImmediate(tick))
      .then(async () => {
        this.roundAsked = false;
        // close() may have come between the request and this tick: its database may be gone.
        if (this.isClosed) return;
        const refused = await scheduleRound(this.ctx);
        // A placement refused at apply means the cluster changed under the plan: plan once more at
        // once against the new state. Only once in a row, so a disagreement can never spin.
        this.replanning = refused > 0 && !this.replanning;
        if (this.replanning) this.roundAsked = true;
      })
      .catch((err: unknown) => this.deps.log.error({ err: errorText(err) }, 'a planning round failed; the next event plans again'))
      .finally(() => {
        this.round = null;
        if (this.roundAsked && !this.isClosed) this.startRound();
        else this.roundAsked = false;
      });
    this.round = round;
    this.track(round);
  }

  /** True unless this leader is a standby (deps.isActive; a lifecycle without it is always active). */
  private active(): boolean {
    return this.deps.isActive?.() ?? true;
  }

  /** Handle one of a node's reports after its earlier ones; resolves whether it was handled (never rejects). */
  private report(nodeId: string, what: string, work: () => Promise<void>): Promise<boolean> {
    const previous = this.reportChains.get(nodeId) ?? Promise.resolve(true);
    const next = previous.then(work).then(
      () => true,
      (err: unknown) => {
        this.deps.log.error({ err: errorText(err), nodeId }, `${what} failed`);
        return false;
      },
    );
    this.reportChains.set(nodeId, next);
    void next.then(() => {
      if (this.reportChains.get(nodeId) === next) this.reportChains.delete(nodeId);
    });
    this.track(next);
    return next;
  }

  private background(what: string, work: () => Promise<unknown>, fields: object = {}): void {
    this.track(
      Promise.resolve()
        .then(work)
        .catch((err: unknown) => this.deps.log.error({ ...fields, err: errorText(err) }, `${what} failed`)),
    );
  }

  /** Keep `p` for idle(); a rejection nobody caught is logged here, never left unhandled. */
  private track(p: Promise<unknown>): void {
    this.pending.add(p);
    void p
      .then(undefined, (err: unknown) => this.deps.log.error({ err: errorText(err) }, 'a background step of the lifecycle failed'))
      .finally(() => this.pending.delete(p));
  }
}
