/**
 * Missed pushes (DESIGN §11), with a real `secd leader` process, a real node and Docker: GitLab does
 * not retry a webhook delivery, so a push made while the leader is stopped only runs because the
 * leader, when it comes back, reads the project's head and GitLab's push events itself. It runs once,
 * as the researcher who pushed it, and ends with its results branch; the webhook GitLab failed to
 * send, re-sent afterwards, is the same run. A push whose webhook did arrive is never run again by
 * the rounds that follow.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiRunsAnswerSchema, type ApiRun } from '../../web/api-schema.js';
import { startProcessCluster, type ProcessCluster } from '../support/process-cluster.js';
import { gitOutput as git, outputsFolder } from '../support/repo-reader.js';
import { busyboxProject } from '../support/test-images.js';

const INTERVAL_MS = 1500;
const ENDED = ['succeeded', 'failed', 'lost', 'rejected', 'cancelled', 'timed_out'];

describe('a push made while the leader is down', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await startProcessCluster({ nodes: [{ id: 'cpu', gpus: null }], leaderConfig: `reconcile_interval_ms: ${INTERVAL_MS}` });
  });
  afterAll(async () => {
    await cluster?.close();
  });

  /** Every run the leader has of `commit`. */
  const runsOf = async (commit: string): Promise<ApiRun[]> =>
    (await cluster.getJson('/api/v1/runs?limit=1000', apiRunsAnswerSchema)).runs.filter((r) => r.commit === commit);

  /** The results branches of a run on the double. */
  const resultsBranches = (project: string, runId: string): string[] =>
    git(cluster.gitlab.repoDir(project), ['for-each-ref', '--format=%(refname:short)', 'refs/heads/'])
      .split('\n')
      .filter((b) => b.startsWith('secd-') && b.endsWith(`-${runId}`));

  /** Let at least `n` reconcile rounds pass. */
  const rounds = (n: number) => new Promise((resolve) => setTimeout(resolve, n * INTERVAL_MS + 500));

  it('runs when the leader comes back, once, as its pusher, with its results branch; the re-sent webhook is the same run', { timeout: 180_000 }, async () => {
    const project = 'lab/ada';
    const ada = await cluster.addResearcher({ username: 'ada', project });
    // secd knows the project from an earlier run.
    const first = await ada.pushRun(busyboxProject('echo first > $OUTPUT_PATH/first.txt\n'));
    expect((await cluster.waitForRunState(first.id, ENDED)).state).toBe('succeeded');

    await cluster.leader.kill('SIGTERM');
    const head = await ada.repo.commit('second experiment', {
      signer: ada.signer,
      committerEmail: ada.user.email,
      files: busyboxProject('echo missed > $OUTPUT_PATH/missed.txt\n'),
    });
    const sent = cluster.gitlab.deliveries.length;
    await ada.push();
    await cluster.gitlab.idle();
    // GitLab tried, nobody answered, and it will not try again.
    const failed = cluster.gitlab.deliveries.slice(sent);
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.every((d) => d.status === null && d.error !== null)).toBe(true);

    await cluster.leader.start();
    const found = await cluster.waitFor('the missed push to become a run', async () => (await runsOf(head))[0], 2 * INTERVAL_MS + 10_000);
    expect(found.user).toBe('ada');
    // The leader says where the run came from.
    const leaderLog = (await cluster.logs()).split('\n');
    expect(leaderLog.some((l) => l.includes('missed push found, run started') && l.includes(found.id) && l.includes('"pusher":"ada"'))).toBe(true);
    const run = await cluster.waitForRunState(found.id, ENDED, 90_000);
    expect(run.state, run.reason).toBe('succeeded');
    expect(run.events.map((e) => e.to)).toEqual(['received', 'verified', 'queued', 'assigned', 'building', 'running', 'uploading', 'succeeded']);
    expect(resultsBranches(project, run.id)).toEqual([run.branch]);
    expect(git(cluster.gitlab.repoDir(project), ['show', `${run.branch}:${outputsFolder(run.branch!)}/missed.txt`])).toBe('missed\n');

    // GitLab's "Resend request" of the delivery that failed: the same push, so the same run.
    const resent = await cluster.gitlab.redeliver(failed[0]!.index);
    expect(resent.status).toBe(200);
    expect(JSON.parse(resent.responseBody)).toMatchObject({ action: 'duplicate', run_id: run.id });

    await rounds(2);
    expect((await runsOf(head)).map((r) => r.id)).toEqual([run.id]);
    expect(resultsBranches(project, run.id)).toEqual([run.branch]);
    const successes = cluster.gitlab.statuses.filter((s) => s.sha === head && s.name === 'secd' && s.state === 'success');
    expect(successes).toHaveLength(1);
  });

  it('a push the webhook delivered is not run again by the reconciler rounds that see it', { timeout: 120_000 }, async () => {
    const project = 'lab/bob';
    const bob = await cluster.addResearcher({ username: 'bob', project });
    const pushed = await bob.pushRun(busyboxProject('echo delivered > $OUTPUT_PATH/delivered.txt\n'));
    const run = await cluster.waitForRunState(pushed.id, ENDED);
    expect(run.state, run.reason).toBe('succeeded');
    const readsBefore = cluster.gitlab.apiRequests.filter((r) => r.path === `/api/v4/projects/${bob.project.id}/repository/branches/main`).length;
    await rounds(2);
    // The reconciler did look at this head (more reads of the branch), and started nothing.
    const readsAfter = cluster.gitlab.apiRequests.filter((r) => r.path === `/api/v4/projects/${bob.project.id}/repository/branches/main`).length;
    expect(readsAfter).toBeGreaterThan(readsBefore);
    expect((await runsOf(run.commit)).map((r) => r.id)).toEqual([run.id]);
    expect(resultsBranches(project, run.id)).toEqual([run.branch]);
  });
});
