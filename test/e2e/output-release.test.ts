/**
 * Output release end to end, for real (DESIGN §10): signed pushes through the GitLab double, a
 * temporary MariaDB account for a `review` dataset, the run in Docker, its results pushed to the
 * review project and held there; output checkers approving in the double's merge requests; secd
 * counting only what GitLab's API shows, releasing exactly the reviewed commit, withholding a closed
 * review, and a `direct` dataset's run going straight to the researcher as before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster, type Researcher } from '../support/cluster-harness.js';
import { createResearcherRepo } from '../support/git-repo.js';
import { cleanUp, MARIADB, MARIADB_ADMIN, seedDatabase, testTag } from '../support/mariadb.js';
import { gitOutput as git, outputsFolder } from '../support/repo-reader.js';
import { busyboxProject } from '../support/test-images.js';

const tag = testTag();
const prefix = `secdr${tag}_`;
const WARD = `secdr_${tag}_ward`;
const REVIEW = 'secd/output-review';

// Counts of 3 and 4 are small cells; the header names a forbidden column.
const SCRIPT = `
printf 'ward,count\\nA,3\\nB,4\\nC,250\\n' > /outputs/summary.csv
printf 'patient_id,x\\n1,2\\n' > /outputs/rows.csv
echo "run finished"
`;

/** The results branches (secd-*) of a project's repository on the double. */
function secdBranches(repoDir: string): string[] {
  return git(repoDir, ['for-each-ref', '--format=%(refname:short)', 'refs/heads/'])
    .split('\n')
    .filter((b) => b.startsWith('secd-'));
}

describe('outputs of a review dataset leave only after output checkers approve them', () => {
  let cluster: Cluster;
  let ada: Researcher;
  let alice: number;
  let bob: number;
  let reviewId: number;

  beforeAll(async () => {
    await seedDatabase(WARD, ['CREATE TABLE {db}.stays (id INT PRIMARY KEY, days INT)', 'INSERT INTO {db}.stays VALUES (1, 3)']);
    cluster = await startCluster({
      mysql: { ...MARIADB, admin_user: MARIADB_ADMIN.user, admin_password: MARIADB_ADMIN.password, user_prefix: prefix },
      extraConfig: ['release:', `  review_project: ${REVIEW}`, '  approvals: 2', '  poll_interval_ms: 600000'].join('\n'),
    });
    ada = await cluster.addResearcher({ username: 'ada', project: 'lab/ward-study' });
    const review = cluster.addReviewProject(['alice', 'bob']);
    ({ alice, bob } = review.users as { alice: number; bob: number });
    reviewId = review.id;
    // The researcher is a Developer of the review project too: her approval still never counts.
    cluster.gitlab.addMember(reviewId, ada.user.id);

    const d = cluster.leader.datasetStore;
    expect((await d.add({ name: 'ward', kind: 'mysql', mysqlDatabase: WARD })).ok).toBe(true); // review unless told direct
    expect(await d.get('ward')).toMatchObject({ release: 'review', approvals: null });
    await d.grant({ username: 'ada', userId: ada.user.id }, 'ward');
  }, 120_000);

  afterAll(async () => {
    await cluster?.close();
    await cleanUp([WARD], prefix);
  });

  const researcherRepo = () => cluster.gitlab.repoDir('lab/ward-study');
  const reviewRepo = () => cluster.gitlab.repoDir(REVIEW);
  const statusesOf = (sha: string, name: string) =>
    cluster.gitlab.statuses.filter((s) => s.sha === sha && s.name === name).map((s) => `${s.state}: ${s.description}`);
  const mrOf = (branch: string) => cluster.gitlab.mergeRequests(reviewId).find((m) => m.sourceBranch === branch)!;

  async function heldRun(message: string): Promise<{ id: string; commit: string; branch: string }> {
    const pushed = await ada.pushRun(busyboxProject(SCRIPT, 'datasets: [ward]\n'), { message });
    const run = await cluster.waitForState(pushed.id, 'held', 120_000);
    const release = (await cluster.leader.releaseStore.get(run.id))!;
    return { id: run.id, commit: run.commit, branch: release.reviewBranch! };
  }

  it('holds the run with nothing in the researcher project, and releases exactly the reviewed commit after two approvals not the author’s, across a leader restart', async () => {
    const { id, commit, branch } = await heldRun('held study');
    const run = (await cluster.leader.store.get(id))!;
    expect(run).toMatchObject({ state: 'held', reason: 'outputs held for review (0/2 approvals)', branch: null });
    expect(secdBranches(researcherRepo())).toEqual([]);
    // The review project holds the run's own commit (what the review diffs against) and its results.
    expect(secdBranches(reviewRepo()).sort()).toEqual([`secd-base-${id}`, branch].sort());
    expect(git(reviewRepo(), ['rev-parse', `secd-base-${id}`]).trim()).toBe(commit);
    expect(git(reviewRepo(), ['rev-parse', `${branch}^`]).trim()).toBe(commit);
    const reviewed = git(reviewRepo(), ['rev-parse', branch]).trim();
    expect((await cluster.leader.releaseStore.get(id))!.reviewCommit).toBe(reviewed);

    // The merge request lists the files with sizes and the automated findings; the logs are held too.
    const mr = mrOf(branch);
    expect(mr.title).toBe(`Release run ${id}: lab/ward-study@${commit.slice(0, 8)} by ada`);
    const folder = outputsFolder(branch);
    for (const file of ['summary.csv', 'rows.csv', '_secd/run.log', '_secd/build.log', '_secd/run.json']) expect(mr.description).toContain(`${folder}/${file}`);
    expect(mr.description).toMatch(/summary\.csv`: \*\*small_cell\*\*/);
    expect(mr.description).toMatch(/rows\.csv`: \*\*forbidden_column\*\*/);
    const report = JSON.parse(git(reviewRepo(), ['show', `${branch}:${folder}/_secd/run.json`])) as { disclosure: Array<{ file: string; rule: string; detail: string }> };
    expect(report.disclosure.map((f) => `${f.file} ${f.rule}`)).toEqual(expect.arrayContaining(['summary.csv small_cell', 'rows.csv forbidden_column']));
    expect(statusesOf(commit, 'secd/release')).toEqual(['pending: outputs held for review (0/2 approvals)']);

    // The researcher's own approval does not count, even as a Developer of the review project.
    cluster.gitlab.approveMergeRequest(reviewId, mr.iid, ada.user.id);
    await cluster.settle();
    expect((await cluster.leader.store.get(id))!.state).toBe('held');
    expect((await cluster.leader.store.events(id)).map((e) => e.reason)).toContain(
      "approval by ada not counted: the run's researcher (authors never review their own outputs)",
    );

    // One of two keeps it held.
    cluster.gitlab.approveMergeRequest(reviewId, mr.iid, alice);
    await cluster.settle();
    expect(await cluster.leader.store.get(id)).toMatchObject({ state: 'held', reason: 'outputs held for review (1/2 approvals)' });
    expect(secdBranches(researcherRepo())).toEqual([]);

    // The leader restarts while the run is held; the next approval still releases it.
    await cluster.restartLeader();
    cluster.gitlab.approveMergeRequest(reviewId, mr.iid, bob);
    await cluster.settle();
    const released = await cluster.waitForRun(id, 30_000);
    expect(released).toMatchObject({ state: 'succeeded', branch });
    expect(released.reason).toBe(`succeeded; released after review by alice, bob; results on branch ${branch}`);
    expect(git(researcherRepo(), ['rev-parse', branch]).trim()).toBe(reviewed);
    expect(statusesOf(commit, 'secd/release').at(-1)).toBe('success: released after review by alice, bob');
    expect(statusesOf(commit, 'secd').at(-1)).toMatch(/^success: succeeded; released after review by alice, bob/);
    const closed = mrOf(branch);
    expect(closed.state).toBe('closed');
    expect(closed.notes.map((n) => n.body).join('\n')).toContain('@alice, @bob');
    const reasons = (await cluster.leader.store.events(id)).map((e) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining([expect.stringMatching(/^review opened: /), 'approval by alice counted (1/2)', 'approval by bob counted (2/2)']));
  }, 240_000);

  it('a forged approval hook releases nothing, and closing the review withholds the outputs', async () => {
    const { id, commit, branch } = await heldRun('withheld study');
    const mr = mrOf(branch);
    cluster.gitlab.sendMergeRequestHook(reviewId, mr.iid, { action: 'approved', userId: alice });
    cluster.gitlab.sendMergeRequestHook(reviewId, mr.iid, { action: 'approval', userId: bob });
    await cluster.settle();
    expect(await cluster.leader.store.get(id)).toMatchObject({ state: 'held', reason: 'outputs held for review (0/2 approvals)' });
    expect(secdBranches(researcherRepo())).not.toContain(branch);

    cluster.gitlab.approveMergeRequest(reviewId, mr.iid, alice);
    cluster.gitlab.closeMergeRequestAs(reviewId, mr.iid, bob);
    await cluster.settle();
    const withheld = await cluster.waitForRun(id, 30_000);
    expect(withheld).toMatchObject({ state: 'withheld', reason: 'outputs withheld at review by bob', branch: null });
    expect(secdBranches(researcherRepo())).not.toContain(branch);
    expect(statusesOf(commit, 'secd').at(-1)).toBe('failed: outputs withheld at review by bob');
    expect(await cluster.leader.releaseStore.get(id)).toMatchObject({ outcome: 'withheld', decidedBy: 'bob' });
  }, 240_000);

  it('a review branch pushed to after secd put it up releases nothing and says why', async () => {
    const { id, branch } = await heldRun('moved study');
    const mr = mrOf(branch);
    // Someone with push access to the review project moves the branch under the review.
    const other = await createResearcherRepo();
    await other.commit('sneak', { committerEmail: 'x@example.org', files: { 'x.txt': 'x\n' } });
    await other.push(cluster.gitlab.gitUrl(REVIEW), { remoteRef: branch, force: true });
    await other.close();
    cluster.gitlab.approveMergeRequest(reviewId, mr.iid, alice);
    cluster.gitlab.approveMergeRequest(reviewId, mr.iid, bob);
    await cluster.settle();
    const run = (await cluster.leader.store.get(id))!;
    expect(run.state).toBe('held');
    expect(run.reason).toMatch(/^not released: the review branch .* moved to [0-9a-f]{12}/);
    expect(secdBranches(researcherRepo())).not.toContain(branch);
  }, 240_000);

  it('a direct dataset behaves as before: results on the researcher branch at once, findings reported', async () => {
    const d = cluster.leader.datasetStore;
    expect((await d.setPolicy('ward', { release: 'direct' })).ok).toBe(true);
    const pushed = await ada.pushRun(busyboxProject(SCRIPT, 'datasets: [ward]\n'), { message: 'direct study' });
    const run = await cluster.waitForRun(pushed.id, 120_000);
    expect(run.state, run.reason).toBe('succeeded');
    expect(secdBranches(researcherRepo())).toContain(run.branch);
    expect(await cluster.leader.releaseStore.get(run.id)).toMatchObject({ policy: 'direct', outcome: null });
    expect((await cluster.leader.releaseStore.get(run.id))!.findings.map((f) => f.rule)).toEqual(expect.arrayContaining(['small_cell', 'forbidden_column']));
    expect(statusesOf(run.commit, 'secd/release')).toEqual([]);
  }, 240_000);
});
