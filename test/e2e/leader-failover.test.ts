/**
 * Two leaders on one MariaDB state database (DESIGN §11, issue 11), for real: two `secd leader`
 * processes with `state: { mysql }`, one `secd node` listing both, GitLab's webhook going through one
 * address in front of them (test/support/webhook-vip.ts), Docker running the runs.
 *
 * - The active leader is killed with SIGKILL while one run builds, one runs and one waits in the
 *   queue: the standby takes over within the lease and a renewal, the node moves to it, and every
 *   run ends `succeeded` once, with one results branch and one final status.
 * - A webhook delivered to the standby runs (the active leader picks the stored push up).
 * - The active leader paused with SIGSTOP past its lease and then continued writes nothing: it finds
 *   its lease gone and exits (75) for systemd to start it again, as a standby.
 * - A push made while both leaders are stopped runs once one of them is back (the reconciler).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiRunsAnswerSchema, type ApiRun } from '../../web/api-schema.js';
import { startProcessCluster, request, type ClusterResearcher, type ProcessCluster } from '../support/process-cluster.js';
import type { StateDatabase } from '../../storage/sql/state-database.js';
import { scratchState, type ScratchState } from '../support/scratch-state.js';
import { gitOutput as git } from '../support/repo-reader.js';
import { BUSYBOX_IMAGE, busyboxProject } from '../support/test-images.js';

const LEASE_MS = 3000;
const RECONCILE_MS = 2000;
const ENDED = ['succeeded', 'failed', 'lost', 'rejected', 'cancelled', 'timed_out', 'withheld'];
const FINAL = ['success', 'failed', 'canceled'];

/** The lines a leader's log file holds of its latest start (the file keeps every start's). */
function currentStart(log: string): string[] {
  const lines = log.split('\n');
  let at = lines.length - 1;
  while (at > 0 && !lines[at]!.includes('"msg":"leader listening"')) at--;
  return lines.slice(at);
}

describe('two leaders on one MariaDB database', () => {
  let scratch: ScratchState;
  let cluster: ProcessCluster;
  const researchers = new Map<string, ClusterResearcher>();
  let stateDb: StateDatabase | null = null;

  beforeAll(async () => {
    scratch = await scratchState('mysql');
    cluster = await startProcessCluster({
      nodes: [{ id: 'cpu', gpus: null, maxCpuRuns: 2 }],
      ha: { database: scratch.where, leaders: 2, leaseMs: LEASE_MS },
      reportIntervalMs: 250,
      nodeTimeoutMs: 3000,
      leaderConfig: `reconcile_interval_ms: ${RECONCILE_MS}`,
    });
    for (const name of ['ada', 'bob', 'cyd', 'dee', 'eve', 'fay']) researchers.set(name, await cluster.addResearcher({ username: name, project: `lab/${name}` }));
  }, 120_000);
  afterAll(async () => {
    await cluster?.close();
    await scratch?.dispose();
  });

  /** What each leader's /healthz says, in the cluster's order (null: not answering). */
  const roles = async (): Promise<Array<{ role: string; epoch: number } | null>> =>
    Promise.all(
      cluster.leaderUrls.map(async (url) => {
        const r = await request(`${url}/healthz`).catch(() => null);
        return r?.status === 200 ? (JSON.parse(r.body) as { role: string; epoch: number }) : null;
      }),
    );
  /** The index of the active leader, once exactly one is. */
  const activeLeader = () =>
    cluster.waitFor('exactly one active leader', async () => {
      const seen = await roles();
      const active = seen.flatMap((r, i) => (r?.role === 'active' ? [i] : []));
      return active.length === 1 ? active[0]! : undefined;
    }, 30_000);

  const commitFor = (name: string, files: Record<string, string>) => {
    const r = researchers.get(name)!;
    return r.repo.commit(`experiment of ${name}`, { signer: r.signer, committerEmail: r.user.email, files });
  };
  const runOfCommit = async (commit: string): Promise<ApiRun[]> =>
    (await cluster.getJson('/api/v1/runs?limit=1000', apiRunsAnswerSchema)).runs.filter((r) => r.commit === commit) as ApiRun[];
  const resultsBranches = (name: string) =>
    git(cluster.gitlab.repoDir(`lab/${name}`), ['for-each-ref', '--format=%(refname:short)', 'refs/heads/'])
      .split('\n')
      .filter((b) => b.startsWith('secd-'));
  /** Every run as the database holds it, with its audit trail and the deliveries: what a leader writes. */
  const runsState = async () => {
    const db = (stateDb ??= scratch.open()).db;
    return {
      runs: await db.selectFrom('runs').select(['id', 'state', 'reason', 'node', 'branch', 'status_posted', 'finished_at']).orderBy('id').execute(),
      events: await db.selectFrom('run_events').select(['run_id', 'to_state', 'reason']).orderBy('seq').execute(),
      deliveries: (await db.selectFrom('deliveries').select('key').execute()).length,
    };
  };
  const finalStatuses = (commit: string) => cluster.gitlab.statuses.filter((s) => s.sha === commit && s.name === 'secd' && FINAL.includes(s.state)).map((s) => s.state);

  /** Ended once, succeeded, one results branch, one final status. */
  async function expectDeliveredOnce(name: string, runId: string): Promise<void> {
    const run = await cluster.waitForRunState(runId, ENDED, 120_000);
    const ctx = `${name}: ${run.state} (${run.reason})`;
    expect(run.state, ctx).toBe('succeeded');
    const ends = run.events.filter((e) => e.from !== e.to && ENDED.includes(e.to));
    expect(ends.map((e) => e.to), ctx).toEqual(['succeeded']);
    expect(resultsBranches(name), ctx).toEqual([run.branch]);
    await cluster.waitFor(`the final status of ${name}'s run`, async () => finalStatuses(run.commit).length > 0, 20_000);
    expect(finalStatuses(run.commit), ctx).toEqual(['success']);
  }

  it('the active leader killed with runs building, running and queued: the standby takes over and every run ends once', { timeout: 240_000 }, async () => {
    const first = await activeLeader();
    const epochBefore = (await roles())[first]!.epoch;
    // ada's build takes seconds; bob's and cyd's run for seconds; the node has two slots.
    const slowBuild = { ...busyboxProject('echo built > $OUTPUT_PATH/out.txt\n'), Dockerfile: `FROM ${BUSYBOX_IMAGE}\nRUN sleep 6\nCOPY run.sh /run.sh\nCMD ["/bin/sh", "/run.sh"]\n` };
    const slowRun = busyboxProject('sleep 6\necho ran > $OUTPUT_PATH/out.txt\n');
    const runs: Record<string, ApiRun> = {};
    runs.bob = await researchers.get('bob')!.pushRun(slowRun);
    await cluster.waitForRunState(runs.bob.id, ['running']);
    runs.ada = await researchers.get('ada')!.pushRun(slowBuild);
    await cluster.waitForRunState(runs.ada.id, ['building']);
    runs.cyd = await researchers.get('cyd')!.pushRun(slowRun);
    await cluster.waitForRunState(runs.cyd.id, ['queued']);

    await cluster.leaders[first]!.kill('SIGKILL');
    // How long it takes is test/bench/failover.ts's business; here, that it happens.
    const second = await activeLeader();
    expect(second).not.toBe(first);
    expect((await roles())[second]!.epoch).toBeGreaterThan(epochBefore);
    // GitLab's next deliveries go to the leader that answers, as a DNS name or a VIP would move.
    cluster.vip!.pointAt(cluster.leaderUrls[second]!);

    for (const name of ['bob', 'ada', 'cyd']) await expectDeliveredOnce(name, runs[name]!.id);
    const log = await readFile(join(cluster.root, 'node-cpu.log'), 'utf8');
    expect(log).toContain(cluster.leaderUrls[second]!.replace(/^http/, 'ws'));

    // The killed leader comes back as a standby.
    await cluster.leaders[first]!.start();
    expect((await roles())[first]?.role).toBe('standby');
  });

  it('a webhook delivered to the standby runs, checked and planned by the active leader', { timeout: 120_000 }, async () => {
    const active = await activeLeader();
    const standby = 1 - active;
    cluster.vip!.pointAt(cluster.leaderUrls[standby]!);
    const run = await researchers.get('dee')!.pushRun(busyboxProject('echo via-standby > $OUTPUT_PATH/out.txt\n'));
    await expectDeliveredOnce('dee', run.id);
    // The standby (this start of it: its log file holds every start) took the delivery and never led.
    const standbyLog = currentStart(await readFile(join(cluster.root, standby === 0 ? 'leader.log' : 'leader-2.log'), 'utf8'));
    expect(standbyLog.some((l) => l.includes('webhook answered') && l.includes(run.id))).toBe(true);
    expect(standbyLog.filter((l) => l.includes('active: planning'))).toEqual([]);
    cluster.vip!.pointAt(cluster.leaderUrls[active]!);
  });

  it('the active leader paused past its lease and continued writes nothing: it finds the lease gone and exits', { timeout: 120_000 }, async () => {
    const paused = await activeLeader();
    const other = 1 - paused;
    const before = (await roles())[other]!.epoch;
    cluster.leaders[paused]!.signal('SIGSTOP');
    const took = await cluster.waitFor('the other leader to take over', async () => {
      const r = (await roles())[other];
      return r?.role === 'active' ? r : undefined;
    }, 20_000);
    expect(took.epoch).toBeGreaterThan(before);
    cluster.vip!.pointAt(cluster.leaderUrls[other]!);
    // A run under the new leader, while the old one is still stopped.
    const run = await researchers.get('eve')!.pushRun(busyboxProject('echo after-pause > $OUTPUT_PATH/out.txt\n'));
    await expectDeliveredOnce('eve', run.id);
    const eventsBefore = (await cluster.run(run.id)).events.length;
    const stateBefore = await runsState();

    cluster.leaders[paused]!.signal('SIGCONT');
    await cluster.leaders[paused]!.exited();
    expect(cluster.leaders[paused]!.lastExit?.code).toBe(75);
    const pausedLog = await readFile(join(cluster.root, paused === 0 ? 'leader.log' : 'leader-2.log'), 'utf8');
    expect(pausedLog).toContain('lost the leader lease after leading');
    // Nothing of the paused leader landed: the run it never saw is as the new leader left it, and
    // the new leader is still the one active.
    expect((await cluster.run(run.id)).events.length).toBe(eventsBefore);
    // ... and no run, audit event or delivery of any run changed in the database while it woke and left.
    expect(await runsState()).toEqual(stateBefore);
    expect((await roles())[other]).toMatchObject({ role: 'active', epoch: took.epoch });
    await cluster.leaders[paused]!.start();
  });

  it('a push made while both leaders are stopped runs once one is back', { timeout: 180_000 }, async () => {
    for (const l of cluster.leaders) await l.kill('SIGTERM');
    const fay = researchers.get('fay')!;
    // secd knows fay's project only from a run, so one first; then both leaders stop again.
    await cluster.leaders[0]!.start();
    cluster.vip!.pointAt(cluster.leaderUrls[0]!);
    const known = await fay.pushRun(busyboxProject('echo first > $OUTPUT_PATH/out.txt\n'));
    await cluster.waitForRunState(known.id, ENDED, 120_000);
    await cluster.leaders[0]!.kill('SIGTERM');

    const head = await commitFor('fay', busyboxProject('echo missed > $OUTPUT_PATH/out.txt\n'));
    const sent = cluster.gitlab.deliveries.length;
    await fay.push();
    await cluster.gitlab.idle();
    expect(cluster.gitlab.deliveries.slice(sent).every((d) => d.status !== 200)).toBe(true);

    await cluster.leaders[1]!.start();
    const found = await cluster.waitFor('the missed push to become a run', async () => (await runOfCommit(head))[0], 3 * RECONCILE_MS + 20_000);
    const run = await cluster.waitForRunState(found.id, ENDED, 120_000);
    expect(run.state, run.reason).toBe('succeeded');
    expect(run.user).toBe('fay');
    expect((await runOfCommit(head)).map((r) => r.id)).toEqual([run.id]);
  });
});
