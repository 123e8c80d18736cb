/**
 * The leader's output release desk (DESIGN §10): a run whose policy is `review` pushes its results
 * to the review project instead of the researcher's; the desk holds it, opens the merge request that
 * output checkers review, counts their approvals from GitLab's API (never from a hook's word), and
 * releases exactly the reviewed commit to the researcher's project, or records that it was withheld.
 *
 * Choices made here:
 * - Everything is re-derived from the database and GitLab on every look (`evaluate`): a hook, the
 *   poll and a leader restart all run the same step, one at a time per run, so a lost hook or a
 *   crash between two steps delays a release and never doubles one.
 * - The merge request is looked for by its source branch before one is created, so a leader that
 *   died after creating it finds it again instead of opening a second.
 * - Approvals are counted as GitLab lists them now: one withdrawn before the count is reached no
 *   longer counts. Each change is an audit event of the run.
 * - A release first fetches the review branch and checks its head is the commit the node pushed;
 *   the push to the researcher's project is create-only and pushes that commit, nothing else.
 * - Changes that must land together are one `state.transaction` (a hold's review fields with `held`;
 *   a decision with the run's end) that only writes the database (a lock conflict reruns it).
 */
import type { RunReleaseRow } from '../../storage/release-store.js';
import type { RunRow } from '../../storage/run-store.js';
import type { RunState } from '../../storage/run-states.js';
import type { StateStores } from '../../storage/state-stores.js';
import { failpoint } from '../common/failpoints.js';
import { errorText } from '../common/errors.js';
import type { Log } from '../common/log.js';
import type { DisclosureChecks, ReleasePolicy, RunRelease } from '../contract/disclosure.js';
import type { RunOutcome } from '../contract/run-spec.js';
import { GitLabError, type CommitStatusState, type GitLabApi, type GitLabReviewApi } from '../gitlab/gitlab-port.js';
import { judgeApprovals } from './approval-count.js';
import { releaseDecision, type DatasetRelease } from './release-policy.js';
import { movedNote, releasedNote, reviewDescription, reviewTitle } from './review-request.js';

/** The leader's `release:` settings the desk works with. */
export interface ReleaseSettings {
  reviewProject: string;
  approvals: number;
  default: ReleasePolicy;
  checks: DisclosureChecks;
}

/** The leader's git, as far as releases need it (the project's mirror does the work). */
export interface ReleaseGit {
  /** Fetch `branch` of the review project into the run's mirror; its head there, or null when the branch is gone. */
  fetchReviewBranch(run: RunRow, branch: string): Promise<string | null>;
  /** Files under `path` at `commit` (fetched before), with sizes. */
  listFiles(run: RunRow, commit: string, path: string): Promise<Array<{ path: string; bytes: number }>>;
  /** Push `commit` (in the run's mirror) to the review project as the new branch `branch` (create-only). */
  pushToReview(run: RunRow, commit: string, branch: string): Promise<{ ok: true } | { ok: false; code: string; reason: string }>;
  /** Push `commit` to the researcher's project as the new branch `branch` (create-only). */
  pushToResearcher(run: RunRow, commit: string, branch: string): Promise<{ ok: true } | { ok: false; code: string; reason: string }>;
}

/** What the desk needs, handed down by the leader's wiring. */
export interface ReleaseDeskDeps {
  /** The leader's stores: `runs` and `releases`, and `transaction` for changes that land together. */
  state: Pick<StateStores, 'runs' | 'releases' | 'transaction'>;
  gitlab: Pick<GitLabApi, 'listProjectMembers'> & GitLabReviewApi;
  git: ReleaseGit;
  /** Post one of the run's commit statuses, in order (commit-statuses.ts). */
  postStatus(runId: string, state: CommitStatusState, description: string, channel: 'run' | 'release'): void;
  /** The review project's git URL for nodes to push to (with credentials). */
  reviewRemote(): string;
  settings: ReleaseSettings;
  log: Log;
  now(): Date;
}

/** The commit-status state a released run's `secd` status ends in. */
function statusOfEnd(end: RunState): CommitStatusState {
  return end === 'succeeded' ? 'success' : end === 'cancelled' ? 'canceled' : 'failed';
}

/** The review project branch holding a review run's own commit: what its merge request targets. */
export function reviewBaseBranch(runId: string): string {
  return `secd-base-${runId}`;
}

/** `outputs held for review (1/2 approvals)`. */
export function heldReason(counted: number, required: number): string {
  return `outputs held for review (${counted}/${required} approvals)`;
}

/** The output release desk. */
export class ReleaseDesk {
  private readonly chains = new Map<string, Promise<void>>();
  private reviewProject: { id: number } | null = null;
  private botUserId: number | null | undefined;
  /** Approvers already said not to count, so a poll does not say it again (audit noise). */
  private readonly refusedNoted = new Set<string>();
  /** Review runs whose commit is in the review project (pushing it again is harmless: create-only, same commit). */
  private readonly prepared = new Set<string>();

  constructor(private readonly deps: ReleaseDeskDeps) {}

  /**
   * At hand-over: record the run's policy from the datasets it is given (the first decision stands)
   * and say what the node needs: the checks and, for `review`, the review project to push to.
   */
  async decide(runId: string, datasets: readonly DatasetRelease[]): Promise<{ release: RunRelease; resultsRemote: string | null }> {
    const { releases } = this.deps.state;
    // The store keeps the first decision even when two hand-overs race past the read.
    const row = (await releases.get(runId)) ?? (await releases.decide(runId, releaseDecision(datasets, this.deps.settings)));
    return {
      release: { policy: row.policy, checks: this.deps.settings.checks },
      resultsRemote: row.policy === 'review' ? this.deps.reviewRemote() : null,
    };
  }

  /** Whether a review run's commit still has to be put in the review project before it runs. */
  async needsPreparing(runId: string): Promise<boolean> {
    return !this.prepared.has(runId) && (await this.isReview(runId));
  }

  /**
   * Before a review run goes to its node: its commit goes to the review project as the branch
   * `secd-base-<run id>` (create-only). The node's results commit, made in a shallow checkout on top
   * of that commit, then pushes there complete (GitLab refuses shallow pushes), and the merge request
   * targets that branch, so its diff is exactly the outputs and logs that would leave.
   */
  async prepare(run: RunRow): Promise<{ ok: true } | { ok: false; reason: string }> {
    const pushed = await this.deps.git.pushToReview(run, run.commit, reviewBaseBranch(run.id)).catch((err: unknown) => ({
      ok: false as const,
      code: 'push_failed',
      reason: errorText(err),
    }));
    if (!pushed.ok) return { ok: false, reason: `secd could not put the run's commit in the review project ${this.deps.settings.reviewProject}: ${pushed.reason}` };
    this.prepared.add(run.id);
    return { ok: true };
  }

  /** Whether a run's outputs go through review. */
  async isReview(runId: string): Promise<boolean> {
    return (await this.deps.state.releases.get(runId))?.policy === 'review';
  }

  /** A direct run ended: keep what the checks found (reported only). */
  async recordDirect(runId: string, outcome: RunOutcome): Promise<void> {
    const { releases } = this.deps.state;
    if (await releases.get(runId)) await releases.update(runId, { findings: outcome.disclosure ?? [] });
  }

  /**
   * A review run's results reached the review project: hold it (from `uploading`) and open its
   * review in the background (`track`). False when the run cannot be held (a result without a
   * results branch ends as the node said: nothing reached anyone).
   */
  async hold(run: RunRow, outcome: RunOutcome, track: (p: Promise<unknown>) => void): Promise<boolean> {
    const row = await this.deps.state.releases.get(run.id);
    if (!row || row.policy !== 'review' || outcome.branch === null) return false;
    const branch = outcome.branch;
    const reason = heldReason(0, row.approvalsRequired);
    // The review's fields and the hold land together, or neither does.
    const held = await this.deps.state.transaction(async (s) => {
      await s.releases.update(run.id, {
        findings: outcome.disclosure ?? [],
        reviewBranch: branch,
        ...(outcome.resultsCommit ? { reviewCommit: outcome.resultsCommit } : {}),
        ...(outcome.outputsPath ? { reviewPath: outcome.outputsPath } : {}),
        nodeEnd: outcome.end,
        nodeReason: outcome.reason,
      });
      return s.runs.transition(run.id, 'held', reason, {
        exitCode: outcome.exitCode,
        imageId: outcome.imageId,
        ...(outcome.startedAt ? { startedAt: run.startedAt ?? outcome.startedAt } : {}),
        finishedAt: outcome.finishedAt,
      });
    });
    if (!held.ok) return false;
    this.deps.postStatus(run.id, 'pending', reason, 'release');
    track(this.evaluate(run.id));
    return true;
  }

  /** A merge-request hook for project `projectId`: look at the run it reviews again (its content proves nothing). */
  async onMergeRequestEvent(projectId: number, iid: number, track: (p: Promise<unknown>) => void): Promise<{ run_id: string | null }> {
    const row = await this.deps.state.releases.heldByMergeRequest(projectId, iid);
    if (!row) return { run_id: null };
    track(this.evaluate(row.runId));
    return { run_id: row.runId };
  }

  /** Look at every held run again (the poll, and a restarted leader). */
  async pollHeld(): Promise<void> {
    for (const row of await this.deps.state.releases.held()) await this.evaluate(row.runId);
  }

  /**
   * After a restart: a review released since `since` whose merge request is still open (the leader
   * died between ending the run and closing it) gets its note and is closed, as the release would have.
   */
  async closeReleasedReviews(since: Date): Promise<void> {
    const { gitlab, log } = this.deps;
    for (const row of await this.deps.state.releases.list({ outcome: 'released', limit: 100 })) {
      if (row.mrIid === null || row.reviewProjectId === null || row.decidedAt === null || Date.parse(row.decidedAt) < since.getTime()) continue;
      try {
        if ((await gitlab.getMergeRequest(row.reviewProjectId, row.mrIid)).state !== 'opened') continue;
        await gitlab.addMergeRequestNote(row.reviewProjectId, row.mrIid, releasedNote((row.decidedBy ?? '').split(', '), row.reviewBranch ?? '', row.reviewCommit ?? ''));
        await gitlab.closeMergeRequest(row.reviewProjectId, row.mrIid);
      } catch (err) {
        log.warn({ runId: row.runId, err: errorText(err) }, 'released, but could not comment on or close the merge request');
      }
    }
  }

  /** One look at a held run, after any look already running for it; never rejects. */
  evaluate(runId: string): Promise<void> {
    const previous = this.chains.get(runId) ?? Promise.resolve();
    const next = previous.then(() =>
      this.evaluateNow(runId).catch((err: unknown) => this.deps.log.warn({ runId, err: errorText(err) }, 'could not look at the review (will retry)')),
    );
    this.chains.set(runId, next);
    void next.then(() => {
      if (this.chains.get(runId) === next) this.chains.delete(runId);
    });
    return next;
  }

  private async evaluateNow(runId: string): Promise<void> {
    const { runs, releases } = this.deps.state;
    const run = await runs.get(runId);
    let row = await releases.get(runId);
    if (!run || run.state !== 'held' || !row || row.outcome !== null) return;
    if (row.mrIid === null) {
      row = await this.openReview(run, row);
      if (row.mrIid === null) return;
    }
    const { gitlab } = this.deps;
    const projectId = row.reviewProjectId!;
    const [mr, approvers, members, botUserId] = await Promise.all([
      gitlab.getMergeRequest(projectId, row.mrIid!),
      gitlab.getMergeRequestApprovals(projectId, row.mrIid!),
      gitlab.listProjectMembers(projectId),
      this.botUser(),
    ]);
    const verdicts = judgeApprovals(approvers, members, { username: run.user, userId: run.userId, botUserId });
    const counted = await this.recordApprovals(run, row, verdicts);
    if (counted.length >= row.approvalsRequired) {
      await this.release(run, (await releases.get(runId))!, counted);
    } else if (mr.state !== 'opened') {
      await this.withhold(run, mr.closed_by?.username ?? `the merge request being ${mr.state}`);
    }
  }

  /** Push the review branch's files into a merge request (found again if one exists). */
  private async openReview(run: RunRow, row: RunReleaseRow): Promise<RunReleaseRow> {
    const { gitlab, git } = this.deps;
    const { releases, runs } = this.deps.state;
    const project = await this.project();
    const branch = row.reviewBranch!;
    const head = await git.fetchReviewBranch(run, branch);
    if (head === null) throw new Error(`the review branch ${branch} is not in the review project`);
    const reviewCommit = row.reviewCommit ?? head;
    await releases.update(run.id, { reviewProjectId: project.id, reviewCommit });
    let mr = (await gitlab.findMergeRequests(project.id, branch)).find((m) => m.state === 'opened') ?? null;
    if (!mr) {
      const files = await git.listFiles(run, reviewCommit, row.reviewPath ?? 'outputs');
      mr = await gitlab.createMergeRequest(project.id, {
        sourceBranch: branch,
        targetBranch: reviewBaseBranch(run.id),
        title: reviewTitle({ runId: run.id, project: run.project, commit: run.commit, user: run.user }),
        description: reviewDescription({
          runId: run.id,
          project: run.project,
          commit: run.commit,
          user: run.user,
          end: row.nodeEnd ?? 'unknown',
          reason: row.nodeReason ?? '',
          datasets: row.datasets,
          approvalsRequired: row.approvalsRequired,
          reviewCommit,
          files,
          findings: row.findings,
        }),
      }).catch(async (err: unknown) => {
        // 409: one is open for this branch after all (made by an earlier try): that one is the review.
        if (!(err instanceof GitLabError && err.status === 409)) throw err;
        const open = (await gitlab.findMergeRequests(project.id, branch)).find((m) => m.state === 'opened');
        if (!open) throw err;
        return open;
      });
    }
    await releases.update(run.id, { mrIid: mr.iid, mrUrl: mr.web_url });
    await runs.note(run.id, `review opened: ${mr.web_url} (${row.approvalsRequired} approvals needed)`);
    return (await releases.get(run.id))!;
  }

  /** Keep the counted approvals (each with when secd first saw it) and audit every change. */
  private async recordApprovals(run: RunRow, row: RunReleaseRow, verdicts: ReturnType<typeof judgeApprovals>): Promise<string[]> {
    const { runs, releases } = this.deps.state;
    const at = this.deps.now().toISOString();
    const before = new Map(row.approvals.map((a) => [a.userId, a]));
    const now = verdicts.filter((v) => v.counted).map((v) => before.get(v.id) ?? { user: v.username, userId: v.id, at });
    const required = row.approvalsRequired;
    for (const a of now) if (!before.has(a.userId)) await runs.note(run.id, `approval by ${a.user} counted (${now.length}/${required})`);
    for (const a of row.approvals) {
      if (!now.some((n) => n.userId === a.userId)) await runs.note(run.id, `approval by ${a.user} withdrawn (${now.length}/${required})`);
    }
    for (const v of verdicts) {
      const key = `${run.id}:${v.id}`;
      if (v.counted || this.refusedNoted.has(key)) continue;
      this.refusedNoted.add(key);
      await runs.note(run.id, `approval by ${v.username} not counted: ${v.why}`);
    }
    const changed = now.length !== row.approvals.length || now.some((a) => !before.has(a.userId));
    if (changed) {
      await releases.update(run.id, { approvals: now });
      if (now.length < required) {
        const reason = heldReason(now.length, required);
        await runs.update(run.id, { reason });
        // GitLab never takes a status from running back to pending: the first approval moves it to
        // running, and later counts show on the run page and in the merge request.
        if (now.length > 0) this.deps.postStatus(run.id, 'running', reason, 'release');
      }
    }
    return now.map((a) => a.user);
  }

  /** Release exactly the reviewed commit to the researcher's project. */
  private async release(run: RunRow, row: RunReleaseRow, reviewers: string[]): Promise<void> {
    const { git, gitlab, log } = this.deps;
    const { runs } = this.deps.state;
    const branch = row.reviewBranch!;
    const commit = row.reviewCommit!;
    const head = await git.fetchReviewBranch(run, branch);
    if (head !== commit) {
      const why = head === null ? `the review branch ${branch} is gone` : `the review branch ${branch} moved to ${head.slice(0, 12)}`;
      const reason = `not released: ${why}; secd put ${commit.slice(0, 12)} up for review and releases nothing else`;
      if (run.reason !== reason) {
        await runs.update(run.id, { reason });
        await runs.note(run.id, reason);
        await gitlab.addMergeRequestNote(row.reviewProjectId!, row.mrIid!, movedNote(commit, head)).catch(() => undefined);
      }
      return;
    }
    const pushed = await git.pushToResearcher(run, commit, branch);
    if (!pushed.ok) {
      const reason = `approved by ${reviewers.join(', ')}, but not released yet: ${pushed.reason}`;
      if (run.reason !== reason) {
        await runs.update(run.id, { reason });
        await runs.note(run.id, reason);
      }
      log.warn({ runId: run.id, code: pushed.code, reason: pushed.reason }, 'could not push the released results (will retry)');
      return;
    }
    // Crash tests: pushed, nothing recorded (a restart's poll pushes again: the same commit is no change).
    failpoint('leader.release.pushed');
    const by = reviewers.join(', ');
    const end = (row.nodeEnd ?? 'succeeded') as RunState;
    const released = `released after review by ${by}`;
    const reason = end === 'succeeded' ? `succeeded; ${released}; results on branch ${branch}` : `${row.nodeReason ?? end}; ${released}; outputs on branch ${branch}`;
    const decidedAt = this.deps.now().toISOString();
    // The decision and the run's end in one transaction: a leader killed between them left the run
    // held with its review decided, which no later look took up again (evaluateNow skips decided rows).
    const done = await this.deps.state.transaction(async (s) => {
      await s.releases.update(run.id, { outcome: 'released', decidedBy: by, decidedAt });
      failpoint('leader.release.deciding');
      return s.runs.transition(run.id, end, reason, { branch, ...(run.finishedAt ? { finishedAt: run.finishedAt } : {}) });
    });
    if (!done.ok) return;
    // Crash tests: released and recorded, no status posted, the merge request open.
    failpoint('leader.release.ended');
    this.deps.postStatus(run.id, 'success', released, 'release');
    this.deps.postStatus(run.id, statusOfEnd(end), reason, 'run');
    const projectId = row.reviewProjectId!;
    try {
      await gitlab.addMergeRequestNote(projectId, row.mrIid!, releasedNote(reviewers, branch, commit));
      await gitlab.closeMergeRequest(projectId, row.mrIid!);
    } catch (err) {
      log.warn({ runId: run.id, err: errorText(err) }, 'released, but could not comment on or close the merge request');
    }
  }

  /** The review was closed without the approvals: nothing reaches the researcher. */
  private async withhold(run: RunRow, by: string): Promise<void> {
    const reason = `outputs withheld at review by ${by}`;
    const decidedAt = this.deps.now().toISOString();
    // One transaction, as for a release.
    const done = await this.deps.state.transaction(async (s) => {
      await s.releases.update(run.id, { outcome: 'withheld', decidedBy: by, decidedAt });
      return s.runs.transition(run.id, 'withheld', reason);
    });
    if (!done.ok) return;
    this.deps.postStatus(run.id, 'failed', reason, 'release');
    this.deps.postStatus(run.id, 'failed', reason, 'run');
  }

  private async project(): Promise<{ id: number }> {
    this.reviewProject ??= { id: (await this.deps.gitlab.getProjectByPath(this.deps.settings.reviewProject)).id };
    return this.reviewProject;
  }

  private async botUser(): Promise<number | null> {
    if (this.botUserId === undefined) this.botUserId = (await this.deps.gitlab.getCurrentUser()).id;
    return this.botUserId;
  }
}
