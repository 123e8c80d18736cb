/**
 * The checks between intake and the queue: every pushed commit verified (verify/), then policy
 * (secd.yml, the Dockerfile, the datasets asked for). A run leaves them `queued` or `rejected` with a
 * reason the researcher sees. One project's runs are checked in push order: they share a mirror, and
 * a newer push supersedes the older runs of its branch.
 *
 * Before a push is queued (and so supersedes older runs) its commit must still be its branch's head,
 * where GitLab can say (GitLabApi.getBranchHead): a replayed old push must not cancel the run of the
 * current commit (issue 13). When GitLab cannot say (no such call, an error, no such branch) the push
 * goes on as before: the check protects the current run, it is not a gate GitLab's outage closes.
 */
import type { RunRow } from '../../storage/run-store.js';
import { IN_FLIGHT_STATES, isInFlight } from '../../storage/run-states.js';
import { errorText } from '../common/errors.js';
import { failpoint } from '../common/failpoints.js';
import { branchOfRef } from '../intake/push-event.js';
import { resolveRunConfig } from '../policy/project-policy.js';
import { plannedNode } from './plan-apply.js';
import type { LifecycleDeps, PushVerification } from './lifecycle-deps.js';
import { failRun, rejectRun, type LifecycleContext } from './lifecycle-context.js';
import type { IntakeGate } from './intake-gate.js';

/** What the checks ask verification (LifecycleDeps.verifyPush's input). */
export type VerifyPushRequest = Parameters<LifecycleDeps['verifyPush']>[0];

// Every `secd` status carries secd.yml's warnings (commit-statuses.ts); re-exported for its tests.
export { withSecdYmlWarnings } from './status-words.js';

/** The lifecycle's checks step, one chain of checks per project. */
export class RunChecks {
  private readonly projectChains = new Map<number, Promise<void>>();

  constructor(
    private readonly ctx: LifecycleContext,
    private readonly gate: IntakeGate,
  ) {}

  /**
   * Check a run once the runs of its project enqueued before it are checked, the webhooks paused
   * and one of the gate's slots is free (intake-gate.ts: a check's git spawns must not fall between
   * the answers of a burst, nor a burst over many projects start a fetch for each at once).
   */
  enqueue(projectId: number, runId: string): void {
    const previous = this.projectChains.get(projectId) ?? Promise.resolve();
    // Waiting behind the project's earlier checks counts as waiting for the pause (whenQuiet's `since`).
    const since = this.gate.now();
    const next = previous
      .then(() => this.gate.whenQuiet(since))
      .then(() => this.gate.withSlot(() => this.check(runId)))
      .catch(async (err: unknown) => {
        this.ctx.deps.log.error({ err, runId }, 'checking a run failed');
        await failRun(this.ctx, runId, `secd could not check this push: ${errorText(err)}`);
      })
      // Ending the run failed too (the state database is unreachable): a restart checks it again.
      .catch((err: unknown) => this.ctx.deps.log.error({ err: errorText(err), runId }, 'could not end a run whose check failed'));
    this.projectChains.set(projectId, next);
    this.ctx.track(next);
  }

  private async check(runId: string): Promise<void> {
    if (this.ctx.closed()) return;
    const { store } = this.ctx.deps;
    let run = await store.get(runId);
    if (run?.state === 'received') {
      await this.verify(run);
      run = await store.get(runId);
    }
    if (run?.state === 'verified') await this.applyPolicy(run);
  }

  private async verify(run: RunRow): Promise<void> {
    const { store, log } = this.ctx.deps;
    // The run belongs to its pusher (DESIGN §13); the request names them by GitLab user id.
    const request: VerifyPushRequest = {
      projectId: run.projectId,
      project: run.project,
      before: run.beforeSha,
      after: run.commit,
      pusher: { id: run.userId, username: run.user },
    };
    const verification = await this.ctx.deps.verifyPush(request);
    if (!verification.ok) {
      log.info({ runId: run.id, code: verification.code, reason: verification.reason }, 'push rejected');
      await rejectRun(this.ctx, run.id, verification.reason);
      return;
    }
    await store.markVerified(run.projectId, verification.commits, verification.head.fingerprint);
    // Killed here, the run is still `received`: a restart verifies it again (its commits count as verified).
    failpoint('leader.checks.verified');
    // Who vouched for which refused commit is part of the run's audit trail.
    for (const vouch of verification.vouched ?? []) {
      await store.note(run.id, `commit ${vouch.commit.slice(0, 8)} vouched for by ${vouch.by} (Secd-Vouches-For)`);
    }
    const n = verification.commits.length;
    await store.transition(run.id, 'verified', `${n} commit${n === 1 ? '' : 's'} verified, signed by ${verification.head.fingerprint}`, {
      signer: verification.head.fingerprint,
    });
  }

  private async applyPolicy(run: RunRow): Promise<void> {
    const { deps } = this.ctx;
    // GitLab's answer on the branch head is read while the mirror gives the files (it never rejects).
    const newerPush = this.newerPush(run);
    const [yml, dockerfile] = await Promise.all([
      deps.readFileAt(run.projectId, run.commit, 'secd.yml'),
      deps.readFileAt(run.projectId, run.commit, 'Dockerfile'),
    ]);
    if (!dockerfile) {
      await rejectRun(this.ctx, run.id, `no Dockerfile at the root of commit ${run.commit.slice(0, 8)}: secd builds the repository's Dockerfile`);
      return;
    }
    const largestNodeGpus = Math.max(0, ...deps.nodes().map((n) => n.gpus().length));
    const policy = resolveRunConfig(yml === null ? null : yml.toString('utf8'), {
      maxRunforHours: deps.settings.maxRunforHours,
      maxGpusPerRun: deps.settings.maxGpusPerRun,
      largestNodeGpus,
      // A model, memory or MIG request no node can ever meet is refused now, naming what is missing.
      gpuNodes: deps.nodes().map(plannedNode),
    });
    if (!policy.ok) {
      await rejectRun(this.ctx, run.id, policy.reason);
      return;
    }
    // Grants follow the pusher's GitLab user id (the name is for display only).
    const access = deps.datasets ? await deps.datasets.forRun({ user: run.user, userId: run.userId }, policy.config.datasets) : undefined;
    if (access && !access.ok) {
      await rejectRun(this.ctx, run.id, access.reason);
      return;
    }
    const newer = await newerPush;
    if (newer) {
      await rejectRun(this.ctx, run.id, newer);
      return;
    }
    const queued = await deps.store.transition(run.id, 'queued', 'waiting for a node', {
      config: policy.config,
      warnings: policy.warnings,
    });
    if (!queued.ok) return;
    // Killed here, nothing is lost: resume() plans it, re-posts its status and supersedes older runs.
    failpoint('leader.checks.queued');
    this.ctx.postStatus(run.id, 'pending', 'queued: waiting for a node');
    await this.supersedeOlderRuns(queued.run);
    this.ctx.scheduleSoon();
  }

  /** Why the run must not supersede anything (its commit is no longer its branch's head), or null. */
  private async newerPush(run: RunRow): Promise<string | null> {
    const { gitlab, log } = this.ctx.deps;
    const branch = branchOfRef(run.ref);
    if (!gitlab.getBranchHead || branch === null) return null;
    let head: string | null;
    try {
      head = await gitlab.getBranchHead(run.projectId, branch);
    } catch (err) {
      log.warn({ err, runId: run.id, branch }, 'could not read the branch head from GitLab; the push goes on');
      return null;
    }
    if (head === null || head === run.commit) return null;
    return `a newer push exists: branch ${JSON.stringify(branch)} is at ${head.slice(0, 8)}, not ${run.commit.slice(0, 8)}; this push does not run`;
  }

  /**
   * After a restart: a run queued just before the leader died may not have superseded the older runs
   * of its branch yet. Each project's newest queued-or-later run of a branch does it now (what
   * queueing it would have done; a run superseded already is not active any more).
   */
  async supersedeAfterRestart(): Promise<void> {
    const { store } = this.ctx.deps;
    const newest = new Map<string, RunRow>();
    for (const run of await store.inStates(['queued', ...IN_FLIGHT_STATES])) {
      const key = `${run.projectId}\u0000${run.ref}`;
      const seen = newest.get(key);
      if (!seen || run.createdAt >= seen.createdAt) newest.set(key, run);
    }
    for (const run of newest.values()) await this.supersedeOlderRuns(run);
  }

  /** Older runs of the same branch end `cancelled`; one already on a node is stopped there. */
  private async supersedeOlderRuns(newest: RunRow): Promise<void> {
    const { store } = this.ctx.deps;
    const reason = `superseded by a newer push (${newest.commit.slice(0, 8)}, run ${newest.id})`;
    for (const run of await store.activeRunsOfProject(newest.projectId)) {
      if (run.id === newest.id || run.ref !== newest.ref || run.createdAt > newest.createdAt) continue;
      // A held run has ended on its node; its outputs wait for review, which a new push does not end.
      if (run.state === 'held') continue;
      if (isInFlight(run.state) && !this.ctx.assigning.has(run.id)) {
        const node = this.ctx.deps.nodes().find((n) => n.id === run.node);
        node?.cancel(run.id, reason);
        continue;
      }
      if ((await store.transition(run.id, 'cancelled', reason)).ok) this.ctx.postStatus(run.id, 'canceled', reason);
    }
  }
}
