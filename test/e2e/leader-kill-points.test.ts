/**
 * The leader killed at every step of a run, for real (issue 16): for each failpoint of the leader
 * (scheduler/common/failpoints.ts) a real `secd leader` process is started with
 * `SECD_FAILPOINTS=<point>`, a researcher pushes a signed commit, the leader dies by SIGKILL at that
 * point, and it is started again without it. Then the run must have ended once, `succeeded`, with
 * exactly one results branch and exactly one final `secd` commit status for its commit, and nothing
 * may be left queued. One node and one busybox image serve every round. A second cluster, whose
 * runs go through output review (DESIGN §10), does the same at the release desk's steps: the run is
 * held, an output checker approves, the leader dies, and the run is released once.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiRunsAnswerSchema } from '../../web/api-schema.js';
import { startProcessCluster, type ApiRun, type ProcessCluster } from '../support/process-cluster.js';
import { busyboxProject } from '../support/test-images.js';
import { gitOutput as git, outputsFolder } from '../support/repo-reader.js';

/** Every step boundary of the leader a round kills it at, in the order a run passes them. */
const KILL_POINTS = [
  // intake: the delivery and its run are stored, the webhook not answered
  'leader.intake.stored',
  // verification: the push fetched into the mirror, nothing checked
  'leader.verify.fetched',
  // verification: every commit checked, nothing recorded
  'leader.verify.checked',
  // the commits recorded as verified, the run still `received`
  'leader.checks.verified',
  // the run `queued`, its status not posted and older runs not superseded
  'leader.checks.queued',
  // the plan's write transaction committed, the node not told
  'leader.plan.applied',
  // the node's first phase (building) recorded, its status not posted
  'leader.phase.recorded',
  // the node's result received, nothing recorded
  'leader.result.received',
  // the result recorded, the node not acknowledged, the final status not posted
  'leader.result.recorded',
  // GitLab took the final commit status, the leader has not written that down
  'leader.status.taken',
  // the final commit status posted and recorded
  'leader.status.final',
] as const;

/**
 * The kill points of a review run: the held result re-sent; the release pushed, nothing recorded;
 * inside the release's write (the review decided, the run not ended: rolled back together); the
 * release recorded, no status posted.
 */
const REVIEW_KILL_POINTS = ['leader.result.recorded', 'leader.release.pushed', 'leader.release.deciding', 'leader.release.ended'] as const;
const REVIEW = 'secd/output-review';

const ENDED = ['succeeded', 'failed', 'lost', 'rejected', 'cancelled', 'timed_out', 'withheld'];
const FINAL = ['success', 'failed', 'canceled'];

/** Start the leader with `point` armed: the environment is read when the process is spawned. */
async function startArmed(cluster: ProcessCluster, point: string): Promise<void> {
  // The harness starts its processes with this process's environment (process-cluster.ts).
  process.env.SECD_FAILPOINTS = point;
  const started = cluster.leader.start();
  delete process.env.SECD_FAILPOINTS;
  await started;
}

/** The results branches (secd-*) of a project on the double (a run pushed twice would show two). */
function resultsBranches(cluster: ProcessCluster, project: string): string[] {
  return git(cluster.gitlab.repoDir(project), ['for-each-ref', '--format=%(refname:short)', 'refs/heads/'])
    .split('\n')
    .filter((b) => b.startsWith('secd-'));
}

/** The final statuses named `name` GitLab holds for a commit. */
function finalStatuses(cluster: ProcessCluster, commit: string, name = 'secd'): string[] {
  return cluster.gitlab.statuses.filter((s) => s.sha === commit && s.name === name && FINAL.includes(s.state)).map((s) => s.state);
}

/** The run's state changes (audit notes, which keep the state, left out). */
function transitions(run: ApiRun): string[] {
  return run.events.filter((e) => e.from !== e.to).map((e) => e.to);
}

/** A new researcher, the leader started again with `point` armed, and a signed commit pushed. */
async function pushWithPointArmed(cluster: ProcessCluster, name: string, point: string): Promise<{ project: string; commit: string }> {
  const project = `lab/${name}`;
  const r = await cluster.addResearcher({ username: name, project });
  await cluster.leader.kill('SIGKILL');
  await startArmed(cluster, point);
  const commit = await r.repo.commit(`experiment at ${point}`, {
    signer: r.signer,
    committerEmail: r.user.email,
    files: busyboxProject(`echo "${point}" > $OUTPUT_PATH/point.txt\n`),
  });
  await r.push();
  return { project, commit };
}

/** The run of a project as the API lists it, or undefined (also while the leader is down). */
async function runOf(cluster: ProcessCluster, project: string): Promise<ApiRun | undefined> {
  const listed = await cluster.getJson('/api/v1/runs?limit=500', apiRunsAnswerSchema).catch(() => null);
  const run = listed?.runs.find((x) => x.project === project);
  return run ? cluster.run(run.id).catch(() => undefined) : undefined;
}

/** What every round asserts of its run: ended once, succeeded, one results branch with its file, one final status. */
async function expectDeliveredOnce(cluster: ProcessCluster, point: string, project: string, commit: string, run: ApiRun, statusNames: string[]): Promise<void> {
  const ctx = `${point}: ${run.state} (${run.reason})`;
  expect(await readFile(join(cluster.root, 'leader.log'), 'utf8')).toContain(`secd: failpoint ${point} (hit 1): killing the process`);
  expect(run.state, ctx).toBe('succeeded');
  expect(run.commit).toBe(commit);
  expect(transitions(run).filter((s) => ENDED.includes(s)), ctx).toEqual(['succeeded']);
  expect(transitions(run).filter((s) => s === 'assigned'), ctx).toHaveLength(1);
  expect(resultsBranches(cluster, project), ctx).toEqual([run.branch]);
  expect(run.branch).toMatch(new RegExp(`-${run.id}$`));
  const folder = outputsFolder(run.branch!);
  expect(git(cluster.gitlab.repoDir(project), ['show', `${run.branch}:${folder}/point.txt`])).toBe(`${point}\n`);
  await cluster.waitFor(`the final statuses of ${point}`, async () => statusNames.every((n) => finalStatuses(cluster, commit, n).length > 0), 20_000);
  for (const name of statusNames) expect(finalStatuses(cluster, commit, name), `${ctx}: ${name}`).toEqual(['success']);
}

/**
 * A result the node re-sent after a kill (it sends until acknowledged) is acknowledged quietly: no
 * warning that the state table refused it, and no error, since none disagreed with the recorded end.
 */
async function expectQuietAboutResentResults(cluster: ProcessCluster): Promise<void> {
  const lines = (await readFile(join(cluster.root, 'leader.log'), 'utf8')).split('\n');
  expect(lines.filter((l) => l.includes('ignored a result the state table does not allow'))).toEqual([]);
  expect(lines.filter((l) => l.includes('disagrees with the recorded end'))).toEqual([]);
}

describe('a leader killed at any step of a run', () => {
  let direct: ProcessCluster;
  let reviewed: ProcessCluster;
  let reviewId: number;
  let checker: number;

  beforeAll(async () => {
    // Two clusters at once: direct runs, and runs that all go through output review (DESIGN §10),
    // by one checker; held runs are looked at every second besides the hooks.
    [direct, reviewed] = await Promise.all([
      startProcessCluster({ nodes: [{ id: 'cpu', gpus: null, maxCpuRuns: 2 }], reportIntervalMs: 250 }),
      startProcessCluster({
        nodes: [{ id: 'cpu', gpus: null, maxCpuRuns: 2 }],
        reportIntervalMs: 250,
        leaderConfig: ['release:', `  review_project: ${REVIEW}`, '  approvals: 1', '  default: review', '  poll_interval_ms: 1000'].join('\n'),
      }),
    ]);
    checker = reviewed.gitlab.addUser({ username: 'checker', email: 'checker@example.org' }).id;
    reviewId = reviewed.gitlab.addProject({ path: REVIEW, members: [checker] }).id;
  });
  afterAll(async () => {
    await Promise.all([direct?.close(), reviewed?.close()]);
  });

  it.concurrent(
    `every run ends once, succeeded, with one results branch and one final status, at each of ${KILL_POINTS.length} kill points`,
    { timeout: 240_000 },
    async () => {
      const cluster = direct;
      const rounds: Array<{ point: string; project: string; commit: string }> = [];
      let seq = 0;
      for (const point of KILL_POINTS) {
        const { project, commit } = await pushWithPointArmed(cluster, `k${++seq}`, point);
        rounds.push({ point, project, commit });
        await cluster.waitFor(`the leader to die at ${point}`, async () => !cluster.leader.running, 30_000);
        await cluster.leader.start();
        const listed = await cluster.waitFor(`the run of ${point} in the API`, () => runOf(cluster, project));
        const run = await cluster.waitForRunState(listed.id, ENDED, 60_000);
        await expectDeliveredOnce(cluster, point, project, commit, run, ['secd']);
        if (point === 'leader.intake.stored') {
          // GitLab saw the connection drop; the run was stored all the same, and a redelivery of the
          // same delivery (same Idempotency-Key) is answered with that run, started nothing new.
          const dropped = cluster.gitlab.deliveries.find((d) => (JSON.parse(d.body) as { after?: string }).after === commit)!;
          expect(dropped.status).toBeNull();
          const again = await cluster.gitlab.redeliver(dropped.index);
          expect(again.status).toBe(200);
          expect(JSON.parse(again.responseBody)).toMatchObject({ action: 'duplicate', run_id: run.id });
        }
      }
      // Nothing waits, nothing was posted twice while later rounds ran, and one run per push.
      const { runs } = await cluster.getJson('/api/v1/runs?limit=500', apiRunsAnswerSchema);
      expect(runs.filter((run) => !ENDED.includes(run.state)).map((run) => `${run.id} ${run.state}`)).toEqual([]);
      expect((await cluster.getJson('/api/v1/runs?state=queued', apiRunsAnswerSchema)).runs).toEqual([]);
      for (const round of rounds) {
        expect(runs.filter((run) => run.project === round.project), round.point).toHaveLength(1);
        expect(finalStatuses(cluster, round.commit), round.point).toEqual(['success']);
        expect(resultsBranches(cluster, round.project), round.point).toHaveLength(1);
      }
      await expectQuietAboutResentResults(cluster);
    },
  );

  it.concurrent(
    `a held run is released once, with one results branch and one final status of each kind, at each of ${REVIEW_KILL_POINTS.length} release-desk kill points`,
    { timeout: 180_000 },
    async () => {
      const cluster = reviewed;
      let seq = 0;
      for (const point of REVIEW_KILL_POINTS) {
        const { project, commit } = await pushWithPointArmed(cluster, `h${++seq}`, point);
        // Approve the review once it is open; start the leader again once it died; until the run ends.
        let approved = false;
        let restarted = false;
        const run = await cluster.waitFor(
          `the reviewed run of ${point} to end`,
          async () => {
            if (!cluster.leader.running && !restarted) {
              restarted = true;
              await cluster.leader.start();
            }
            const mr = cluster.gitlab.mergeRequests(reviewId).find((m) => m.state === 'opened' && m.title.includes(`${project}@`));
            if (mr && !approved) {
              approved = true;
              cluster.gitlab.approveMergeRequest(reviewId, mr.iid, checker);
            }
            const mine = restarted ? await runOf(cluster, project) : undefined;
            return mine && ENDED.includes(mine.state) ? mine : undefined;
          },
          90_000,
        );
        expect(transitions(run).filter((s) => ENDED.includes(s) || s === 'held'), point).toEqual(['held', 'succeeded']);
        expect(run.reason, point).toContain('released after review by checker');
        // Its review is closed with one release note, whenever the leader died.
        await cluster.waitFor(`the review of ${point} to be closed`, async () => {
          const mr = cluster.gitlab.mergeRequests(reviewId).find((m) => m.title.includes(`${project}@`));
          return mr?.state === 'closed' ? mr : undefined;
        }, 20_000);
        const review = cluster.gitlab.mergeRequests(reviewId).filter((m) => m.title.includes(`${project}@`));
        expect(review, point).toHaveLength(1);
        expect(review[0]!.notes.filter((n) => n.body.startsWith('Released after review')), point).toHaveLength(1);
        await expectDeliveredOnce(cluster, point, project, commit, run, ['secd', 'secd/release']);
      }
      expect((await cluster.getJson('/api/v1/runs?state=queued', apiRunsAnswerSchema)).runs).toEqual([]);
      expect((await cluster.getJson('/api/v1/runs?state=held', apiRunsAnswerSchema)).runs).toEqual([]);
      await expectQuietAboutResentResults(cluster);
    },
  );
});
