/**
 * What happens to runs when processes die, with real processes and real Docker: a node killed with
 * SIGKILL mid-run is marked down, comes back, adopts its container and pushes the results once; a node
 * that goes silent is marked down within node_timeout_ms and carries on when it wakes; a node that
 * never comes back loses its runs after lost_after_ms; a leader killed with runs queued and running
 * comes back and every run ends exactly once; a drained node finishes what it runs and takes nothing new.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import { startProcessCluster, type ApiRun, type ProcessCluster } from '../support/process-cluster.js';
import { busyboxProject } from '../support/test-images.js';
import { gitOutput as git, outputsFolder } from '../support/repo-reader.js';

const RTX2080 = 'openpai_2x-rtx-2080ti_drv410.73.xml';
const NODE_TIMEOUT_MS = 2000;
const LOST_AFTER_MS = 8000;
const ENDED = ['succeeded', 'failed', 'lost', 'rejected', 'cancelled', 'timed_out'];

/** The results branches of a run on the double (a run pushed twice would show two). */
function resultsBranches(cluster: ProcessCluster, project: string, runId: string): string[] {
  return git(cluster.gitlab.repoDir(project), ['for-each-ref', '--format=%(refname:short)', 'refs/heads/'])
    .split('\n')
    .filter((b) => b.startsWith('secd-') && b.endsWith(`-${runId}`));
}

function transitions(run: ApiRun): string[] {
  return run.events.map((e) => e.to);
}

describe('runs survive processes that die', () => {
  let cluster: ProcessCluster;
  let seq = 0;
  const researcher = async () => {
    const name = `r${++seq}`;
    return { r: await cluster.addResearcher({ username: name, project: `lab/${name}` }), project: `lab/${name}` };
  };

  beforeAll(async () => {
    cluster = await startProcessCluster({
      nodes: [
        { id: 'gpu', gpus: RTX2080, maxCpuRuns: 1 },
        { id: 'doomed', gpus: null, maxCpuRuns: 1 },
      ],
      nodeTimeoutMs: NODE_TIMEOUT_MS,
      lostAfterMs: LOST_AFTER_MS,
      reportIntervalMs: 250,
      startNodes: false,
    });
    await cluster.nodes.get('gpu')!.start();
  });
  afterAll(async () => {
    await cluster?.close();
  });

  it('a node killed mid-run is marked down, restarts, adopts its container and pushes the results once', async () => {
    const { r, project } = await researcher();
    const { id } = await r.pushRun(
      busyboxProject('echo before > $OUTPUT_PATH/before.txt\necho started\nsleep 5\necho after > $OUTPUT_PATH/after.txt\necho finished\n', 'gpu: 1\n'),
    );
    await cluster.waitForRunState(id, ['running']);
    const node = cluster.nodes.get('gpu')!;
    const killedAt = Date.now();
    await node.kill('SIGKILL');
    await cluster.waitFor('the node to be down', async () => (await cluster.apiNodes()).find((n) => n.id === 'gpu')?.state === 'down');
    expect(Date.now() - killedAt).toBeLessThan(NODE_TIMEOUT_MS + 1500);
    expect((await cluster.run(id)).state).toBe('running');

    await node.start();
    const run = await cluster.waitForRunState(id, ENDED);
    expect(run.state, run.reason).toBe('succeeded');
    expect(run.node).toBe('gpu');
    expect(transitions(run)).toEqual(['received', 'verified', 'queued', 'assigned', 'building', 'running', 'uploading', 'succeeded']);
    expect(resultsBranches(cluster, project, id)).toEqual([run.branch]);
    const repo = cluster.gitlab.repoDir(project);
    const folder = outputsFolder(run.branch!);
    expect(git(repo, ['show', `${run.branch}:${folder}/before.txt`])).toBe('before\n');
    expect(git(repo, ['show', `${run.branch}:${folder}/after.txt`])).toBe('after\n');
    // The output from before the kill and after it, read back from the engine's log.
    const runLog = git(repo, ['show', `${run.branch}:${folder}/_secd/run.log`]);
    expect(runLog).toContain('started');
    expect(runLog).toContain('finished');
    // Adopted, not run again: one container for this run, and the node says it took it over.
    const nodeLog = await readFile(join(cluster.root, 'node-gpu.log'), 'utf8');
    const mine = nodeLog.split('\n').filter((l) => l.includes(`"run":"${id}"`) || l.includes(`"runId":"${id}"`));
    expect(mine.filter((l) => l.includes('"docker container.create"'))).toHaveLength(1);
    expect(mine.some((l) => l.includes('adopting the run container'))).toBe(true);
    // The commit status follows the transition asynchronously: wait for it, then check it came once.
    const successes = () => cluster.gitlab.statuses.filter((s) => s.sha === run.commit && s.name === 'secd' && s.state === 'success');
    await cluster.waitFor('the success status', async () => successes().length > 0);
    expect(successes()).toHaveLength(1);
  });

  it('a run whose container ended while its node was down is delivered, with its whole log, when the node returns', async () => {
    const { r, project } = await researcher();
    const { id } = await r.pushRun(busyboxProject('echo first line\nsleep 2\necho 7 > $OUTPUT_PATH/seven.txt\necho last line\n'));
    await cluster.waitForRunState(id, ['running']);
    const node = cluster.nodes.get('gpu')!;
    await node.kill('SIGKILL');
    const engine = createDockerEngine();
    await cluster.waitFor('the container to exit while its node is down', async () => {
      const mine = (await engine.findRunContainers()).filter((c) => c.runId === id);
      return mine.length === 1 && mine[0]!.state === 'exited';
    });
    await node.start();
    const run = await cluster.waitForRunState(id, ENDED);
    expect(run.state, run.reason).toBe('succeeded');
    expect(resultsBranches(cluster, project, id)).toEqual([run.branch]);
    const repo = cluster.gitlab.repoDir(project);
    const folder = outputsFolder(run.branch!);
    expect(git(repo, ['show', `${run.branch}:${folder}/seven.txt`])).toBe('7\n');
    expect(git(repo, ['show', `${run.branch}:${folder}/_secd/run.log`])).toBe('first line\nlast line\n');
    expect((await engine.findRunContainers()).filter((c) => c.runId === id)).toEqual([]);
  });

  it('a node that stops answering is down within node_timeout_ms, and its run carries on when it wakes', async () => {
    const { r } = await researcher();
    const { id } = await r.pushRun(busyboxProject('sleep 4\necho done\n'));
    await cluster.waitForRunState(id, ['running']);
    const node = cluster.nodes.get('gpu')!;
    node.signal('SIGSTOP');
    const stoppedAt = Date.now();
    try {
      await cluster.waitFor('the silent node to be down', async () => (await cluster.apiNodes()).find((n) => n.id === 'gpu')?.state === 'down');
      const downAfter = Date.now() - stoppedAt;
      expect(downAfter).toBeGreaterThanOrEqual(NODE_TIMEOUT_MS - 500);
      expect(downAfter).toBeLessThan(NODE_TIMEOUT_MS + 2000);
    } finally {
      node.signal('SIGCONT');
    }
    await cluster.waitFor('the node to be up again', async () => (await cluster.apiNodes()).find((n) => n.id === 'gpu')?.state === 'up');
    const run = await cluster.waitForRunState(id, ENDED);
    expect(run.state, run.reason).toBe('succeeded');
  });

  it('the runs of a node that stays away end lost after lost_after_ms', async () => {
    const doomed = cluster.nodes.get('doomed')!;
    await doomed.start();
    const { r } = await researcher();
    // With the GPU node drained, the doomed node is the only one taking runs.
    await cluster.admin(['node', 'drain', 'gpu']);
    try {
      const { id } = await r.pushRun(busyboxProject('sleep 60\n'));
      const running = await cluster.waitForRunState(id, ['running']);
      expect(running.node).toBe('doomed');
      await doomed.kill('SIGKILL');
      const run = await cluster.waitForRunState(id, ENDED, LOST_AFTER_MS + 10_000);
      expect(run.state).toBe('lost');
      expect(run.reason).toMatch(/node doomed has been unreachable/);
      const lostAfter = Date.parse(run.finished_at!) - Date.parse(run.events.find((e) => e.to === 'running')!.at);
      expect(lostAfter).toBeGreaterThanOrEqual(LOST_AFTER_MS);
    } finally {
      await cluster.admin(['node', 'undrain', 'gpu']);
    }
  });

  it('a leader killed with runs queued and running comes back and every run ends exactly once', { timeout: 150_000 }, async () => {
    const researchers = [await researcher(), await researcher(), await researcher()];
    const pushes: Array<{ id: string; project: string }> = [];
    for (const [i, { r, project }] of researchers.entries()) {
      pushes.push({ id: (await r.pushRun(busyboxProject(`echo run ${i}\nsleep 3\n`))).id, project });
    }
    // One CPU slot on the only node left: one run runs, two wait in the queue.
    await cluster.waitFor('one run running and the others queued', async () => {
      const states = await Promise.all(pushes.map(async (p) => (await cluster.run(p.id)).state));
      return states.filter((s) => s === 'running').length === 1 && states.filter((s) => s === 'queued').length === 2;
    });
    await cluster.leader.kill('SIGKILL');
    // The running run finishes while the leader is away: its result waits on the node's disk.
    await new Promise((r) => setTimeout(r, 3500));
    await cluster.leader.start();
    for (const p of pushes) {
      const run = await cluster.waitForRunState(p.id, ENDED, 90_000);
      expect(run.state, `${run.id}: ${run.reason}`).toBe('succeeded');
      const ends = transitions(run).filter((t) => ENDED.includes(t));
      expect(ends).toEqual(['succeeded']);
      expect(transitions(run).filter((t) => t === 'assigned')).toHaveLength(1);
      expect(resultsBranches(cluster, p.project, p.id)).toEqual([run.branch]);
    }
  });

  it('a drained node finishes its run and takes no new one until undrained', { timeout: 120_000 }, async () => {
    const first = await researcher();
    const second = await researcher();
    const { id: running } = await first.r.pushRun(busyboxProject('sleep 3\n'));
    await cluster.waitForRunState(running, ['running']);
    expect(await cluster.admin(['node', 'drain', 'gpu'])).toContain('draining');
    await cluster.waitFor('the node to show draining', async () => (await cluster.apiNodes()).find((n) => n.id === 'gpu')?.state === 'draining');
    const { id: waiting } = await second.r.pushRun(busyboxProject('echo later\n'));
    expect((await cluster.waitForRunState(running, ENDED)).state).toBe('succeeded');
    // Finished and drained: the queued run is still waiting.
    await new Promise((r) => setTimeout(r, 1000));
    expect((await cluster.run(waiting)).state).toBe('queued');
    await cluster.admin(['node', 'undrain', 'gpu']);
    expect((await cluster.waitForRunState(waiting, ENDED)).state).toBe('succeeded');
  });
});
