import { afterEach, describe, expect, it } from 'vitest';
import type { ReleaseStore } from '../../storage/release-store.js';
import { armFailpoints } from '../common/failpoints.js';
import { silentLog } from '../common/log.js';
import { DEFAULT_DISCLOSURE_CHECKS } from '../contract/disclosure.js';
import type { RunOutcome } from '../contract/run-spec.js';
import { GitLabError, type GitLabMergeRequest } from '../gitlab/gitlab-port.js';
import { lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';
import type { RunLifecycle } from '../lifecycle/run-lifecycle.js';
import { ReleaseDesk, type ReleaseDeskDeps } from './release-desk.js';

const REVIEW_PROJECT = 500;
const BOT = 99;
const RESULTS_COMMIT = 'c'.repeat(40);
const BRANCH = 'secd-20260101-000000-run-1';
const members = [
  { id: 1, username: 'ada', name: 'Ada', state: 'active', access_level: 30 },
  { id: 2, username: 'alice', name: 'Alice', state: 'active', access_level: 30 },
  { id: 3, username: 'bob', name: 'Bob', state: 'active', access_level: 40 },
  { id: BOT, username: 'secd-bot', name: 'secd', state: 'active', access_level: 40 },
];

/** A GitLab review project and the leader's git, in memory, recording what secd does to them. */
function fakeReview() {
  const mrs: Array<GitLabMergeRequest & { description: string; notes: string[] }> = [];
  const approvals = new Map<number, Array<{ id: number; username: string }>>();
  const reviewBranches = new Map<string, string>([[BRANCH, RESULTS_COMMIT]]);
  const pushed: Array<{ project: string; commit: string; branch: string }> = [];
  const user = (id: number) => ({ id, username: members.find((m) => m.id === id)!.username });
  const find = (iid: number) => {
    const mr = mrs.find((m) => m.iid === iid);
    if (!mr) throw new GitLabError(404, `/merge_requests/${iid}`, '404 Not Found');
    return mr;
  };
  const gitlab: ReleaseDeskDeps['gitlab'] = {
    listProjectMembers: async () => members,
    getProjectByPath: async (path) => ({ id: REVIEW_PROJECT, path_with_namespace: path, default_branch: 'main', http_url_to_repo: 'x' }),
    getCurrentUser: async () => ({ id: BOT, username: 'secd-bot', name: 'secd', state: 'active' }) as never,
    createMergeRequest: async (projectId, mr) => {
      if (mrs.some((m) => m.source_branch === mr.sourceBranch && m.state === 'opened')) throw new GitLabError(409, '/merge_requests', 'exists');
      const made = {
        id: 1000 + mrs.length,
        iid: mrs.length + 1,
        project_id: projectId,
        web_url: `https://gitlab.example.org/secd/output-review/-/merge_requests/${mrs.length + 1}`,
        title: mr.title,
        state: 'opened' as const,
        sha: reviewBranches.get(mr.sourceBranch) ?? null,
        source_branch: mr.sourceBranch,
        target_branch: mr.targetBranch,
        closed_by: null,
        description: mr.description,
        notes: [],
      };
      mrs.push(made);
      return made;
    },
    findMergeRequests: async (_p, branch) => mrs.filter((m) => m.source_branch === branch),
    getMergeRequest: async (_p, iid) => find(iid),
    getMergeRequestApprovals: async (_p, iid) => approvals.get(iid) ?? [],
    closeMergeRequest: async (_p, iid) => Object.assign(find(iid), { state: 'closed' as const, closed_by: user(BOT) }),
    addMergeRequestNote: async (_p, iid, body) => {
      find(iid).notes.push(body);
    },
  };
  const git: ReleaseDeskDeps['git'] = {
    fetchReviewBranch: async (_run, branch) => reviewBranches.get(branch) ?? null,
    listFiles: async () => [{ path: `outputs/${BRANCH}/summary.csv`, bytes: 120 }],
    pushToReview: async (_run, commit, branch) => {
      reviewBranches.set(branch, commit);
      return { ok: true };
    },
    pushToResearcher: async (run, commit, branch) => {
      pushed.push({ project: run.project, commit, branch });
      return { ok: true };
    },
  };
  return {
    gitlab,
    git,
    mrs,
    pushed,
    reviewBranches,
    approve: (iid: number, id: number) => approvals.set(iid, [...(approvals.get(iid) ?? []), user(id)]),
    closeAs: (iid: number, id: number) => Object.assign(find(iid), { state: 'closed' as const, closed_by: user(id) }),
  };
}

const outcome = (over: Partial<RunOutcome> = {}): RunOutcome => ({
  end: 'succeeded',
  reason: `succeeded; results on branch ${BRANCH}`,
  exitCode: 0,
  imageId: 'sha256:1',
  branch: BRANCH,
  outputsPath: `outputs/${BRANCH}`,
  startedAt: '2026-01-01T00:00:01.000Z',
  finishedAt: '2026-01-01T00:00:05.000Z',
  resultsCommit: RESULTS_COMMIT,
  disclosure: [{ file: 'summary.csv', rule: 'small_cell', detail: 'row 2, column n: a positive count below 10' }],
  ...over,
});

describe('the release desk', () => {
  let f: LifecycleFixture;
  let review: ReturnType<typeof fakeReview>;
  let releases: ReleaseStore;
  let desk: ReleaseDesk;

  async function build(): Promise<void> {
    review = fakeReview();
    let lifecycle: RunLifecycle | undefined;
    f = await lifecycleFixture([], ({ stores }) => {
      releases = stores.releases;
      desk = new ReleaseDesk({
        state: stores,
        gitlab: review.gitlab,
        git: review.git,
        postStatus: (...a) => lifecycle!.postStatus(...a),
        reviewRemote: () => 'https://oauth2:t@gitlab.example.org/secd/output-review.git',
        settings: { reviewProject: 'secd/output-review', approvals: 2, default: 'direct', checks: DEFAULT_DISCLOSURE_CHECKS },
        log: silentLog,
        now: () => new Date('2026-01-01T00:10:00Z'),
      });
      return { release: { desk, store: releases } };
    });
    lifecycle = f.lifecycle;
  }

  /** A review run that ended on its node and pushed its results for review. */
  async function heldRun(): Promise<string> {
    const { id } = await f.runIn('running', { user: 'ada' });
    const decided = await desk.decide(id, [{ name: 'ward', release: 'review', approvals: null }]);
    expect(decided.resultsRemote).toContain('secd/output-review');
    f.lifecycle.onResult('gpu-01', id, outcome());
    await f.settle();
    return id;
  }

  const releaseStatuses = () => f.statuses.filter((s) => s.name === 'secd/release').map((s) => `${s.state}: ${s.description}`);

  afterEach(async () => {
    await f?.close();
  });

  it('holds a review run and opens one merge request listing its files and findings', async () => {
    await build();
    const id = await heldRun();
    expect(await f.store.get(id)).toMatchObject({ state: 'held', reason: 'outputs held for review (0/2 approvals)', branch: null });
    expect(review.mrs).toHaveLength(1);
    expect(review.mrs[0]!.title).toBe(`Release run ${id}: lab/p1@01010101 by ada`);
    expect(review.mrs[0]!.description).toContain('summary.csv');
    expect(review.mrs[0]!.description).toContain('**small_cell**');
    // The review targets the run's own commit, so its diff is exactly what would leave.
    expect(review.mrs[0]!.target_branch).toBe(`secd-base-${id}`);
    expect(releaseStatuses()).toEqual(['pending: outputs held for review (0/2 approvals)']);
    expect(review.pushed).toEqual([]);
    // Looking again (the poll) does not open a second one.
    f.lifecycle.pollReleases();
    await f.settle();
    expect(review.mrs).toHaveLength(1);
  });

  it("the researcher's own approval does not count; one of two keeps it held; the second releases exactly the reviewed commit", async () => {
    await build();
    const id = await heldRun();
    review.approve(1, 1); // ada, the researcher
    await f.lifecycle.onMergeRequestEvent(REVIEW_PROJECT, 1);
    await f.settle();
    expect((await f.store.get(id))!.state).toBe('held');
    expect((await f.store.events(id)).map((e) => e.reason)).toContain("approval by ada not counted: the run's researcher (authors never review their own outputs)");

    review.approve(1, 2);
    await f.lifecycle.onMergeRequestEvent(REVIEW_PROJECT, 1);
    await f.settle();
    expect(await f.store.get(id)).toMatchObject({ state: 'held', reason: 'outputs held for review (1/2 approvals)' });
    expect(review.pushed).toEqual([]);

    review.approve(1, 3);
    await f.lifecycle.onMergeRequestEvent(REVIEW_PROJECT, 1);
    await f.settle();
    expect(review.pushed).toEqual([{ project: 'lab/p1', commit: RESULTS_COMMIT, branch: BRANCH }]);
    expect(await f.store.get(id)).toMatchObject({ state: 'succeeded', branch: BRANCH });
    expect((await f.store.get(id))!.reason).toBe(`succeeded; released after review by alice, bob; results on branch ${BRANCH}`);
    expect(releaseStatuses().at(-1)).toBe('success: released after review by alice, bob');
    expect(f.statuses.filter((s) => s.name === 'secd').at(-1)).toMatchObject({ state: 'success' });
    expect(review.mrs[0]).toMatchObject({ state: 'closed' });
    expect(review.mrs[0]!.notes[0]).toContain('@alice, @bob');
    expect(await releases.get(id)).toMatchObject({ outcome: 'released', decidedBy: 'alice, bob' });
  });

  it('a hook claiming an approval the API does not show releases nothing', async () => {
    await build();
    const id = await heldRun();
    await f.lifecycle.onMergeRequestEvent(REVIEW_PROJECT, 1);
    await f.lifecycle.onMergeRequestEvent(REVIEW_PROJECT, 1);
    await f.settle();
    expect((await f.store.get(id))!.state).toBe('held');
    expect(review.pushed).toEqual([]);
    // A hook about a merge request secd does not know is nobody's.
    expect(await f.lifecycle.onMergeRequestEvent(REVIEW_PROJECT, 42)).toEqual({ run_id: null });
  });

  it("a leader stopped between the release's decision and the run's end recorded neither: the next look releases it", async () => {
    await build();
    const id = await heldRun();
    review.approve(1, 2);
    review.approve(1, 3);
    const disarm = armFailpoints((name) => {
      if (name === 'leader.release.deciding') throw new Error('stopped at leader.release.deciding');
    });
    try {
      await f.lifecycle.onMergeRequestEvent(REVIEW_PROJECT, 1);
      await f.settle();
    } finally {
      disarm();
    }
    // The decision was written in the transaction that never committed: the run is still held, undecided.
    expect((await f.store.get(id))!.state).toBe('held');
    expect(await releases.get(id)).toMatchObject({ outcome: null, decidedBy: null, decidedAt: null });
    f.lifecycle.pollReleases();
    await f.settle();
    expect(await f.store.get(id)).toMatchObject({ state: 'succeeded', branch: BRANCH });
    expect(await releases.get(id)).toMatchObject({ outcome: 'released', decidedBy: 'alice, bob' });
    // Pushed again on the second look: the same commit to the same branch (create-only, no change).
    expect(review.pushed).toEqual([
      { project: 'lab/p1', commit: RESULTS_COMMIT, branch: BRANCH },
      { project: 'lab/p1', commit: RESULTS_COMMIT, branch: BRANCH },
    ]);
  });

  it('closing the review without the approvals withholds the outputs', async () => {
    await build();
    const id = await heldRun();
    review.approve(1, 2);
    review.closeAs(1, 3);
    await f.lifecycle.onMergeRequestEvent(REVIEW_PROJECT, 1);
    await f.settle();
    expect(await f.store.get(id)).toMatchObject({ state: 'withheld', reason: 'outputs withheld at review by bob', branch: null });
    expect(review.pushed).toEqual([]);
    expect(releaseStatuses().at(-1)).toBe('failed: outputs withheld at review by bob');
  });

  it('a review branch whose head moved releases nothing and says why', async () => {
    await build();
    const id = await heldRun();
    review.reviewBranches.set(BRANCH, 'd'.repeat(40));
    review.approve(1, 2);
    review.approve(1, 3);
    await f.lifecycle.onMergeRequestEvent(REVIEW_PROJECT, 1);
    await f.settle();
    expect((await f.store.get(id))!.state).toBe('held');
    expect((await f.store.get(id))!.reason).toContain(`moved to ${'d'.repeat(12)}`);
    expect(review.pushed).toEqual([]);
    expect(review.mrs[0]!.notes.join('\n')).toContain('Nothing was released');
  });

  it('puts a review run\'s commit in the review project before it runs; a direct run needs nothing', async () => {
    await build();
    const { id, sha } = await f.runIn('assigned');
    await desk.decide(id, [{ name: 'ward', release: 'review', approvals: null }]);
    expect(await desk.needsPreparing(id)).toBe(true);
    expect(await desk.prepare((await f.store.get(id))!)).toEqual({ ok: true });
    expect(review.reviewBranches.get(`secd-base-${id}`)).toBe(sha);
    expect(await desk.needsPreparing(id)).toBe(false);
    const direct = await f.runIn('assigned');
    await desk.decide(direct.id, []);
    expect(await desk.needsPreparing(direct.id)).toBe(false);
  });

  it('a run whose results could not be pushed for review is not held: it fails as the node said', async () => {
    await build();
    const { id } = await f.runIn('running');
    await desk.decide(id, [{ name: 'ward', release: 'review', approvals: 3 }]);
    f.lifecycle.onResult('gpu-01', id, outcome({ end: 'failed', reason: 'results could not be pushed (x)', branch: null, resultsCommit: null }));
    await f.settle();
    expect((await f.store.get(id))!.state).toBe('failed');
    expect(review.mrs).toEqual([]);
  });

  it('a direct run is not held and its findings are kept', async () => {
    await build();
    const { id } = await f.runIn('running');
    const decided = await desk.decide(id, []);
    expect(decided).toMatchObject({ release: { policy: 'direct' }, resultsRemote: null });
    f.lifecycle.onResult('gpu-01', id, outcome());
    await f.settle();
    expect((await f.store.get(id))!.state).toBe('succeeded');
    expect((await releases.get(id))!.findings).toHaveLength(1);
    expect(review.mrs).toEqual([]);
  });
});
