/**
 * A node killed at every step of a run, and started again: the run still ends once, as it truly
 * ended, with exactly one results branch and nothing of it left on the engine or the node's disk.
 *
 * Each round runs one pushed run on a node (fake engine, real git: a bare repository stands in for
 * the researcher's project), kills the node at one failpoint (test/support/node-crash-harness.ts: the
 * node's disk copied at that instant, its engine connection dead), starts a new node on that disk
 * and the same engine, and reads what a researcher and an operator would see. The points are every
 * point a run passes (recorded from an undisturbed run of the same kind), in turn, so a new step or
 * failpoint is covered without editing this file.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunOutcome, RunReport, RunSpec } from '../../scheduler/contract/run-spec.js';
import { FakeContainerEngine, type FakeBuild, type FakeContainerScript } from '../../test/doubles/fake-container-engine.js';
import { createBareRemote, createResearcherRepo } from '../../test/support/git-repo.js';
import { aNodeLife, armNodeLives, asLife, killAt, resultsBranches } from '../../test/support/node-crash-harness.js';
import { aRunSpec, busyboxProject } from '../../test/support/test-images.js';
import { formatHours } from '../executor/run-collection.js';
import { runGit } from '../results/node-git.js';

const NOW = new Date('2026-03-05T14:07:09.000Z');
const now = () => NOW;
const branchOf = (runId: string) => `secd-2026-03-05_14.07.09-${runId}`;
const folderOf = (runId: string) => `outputs/2026-03-05_14.07.09-${runId}`;

let disarm: () => void;
beforeAll(() => {
  disarm = armNodeLives();
});
afterAll(() => disarm());

/** How a run goes when nobody kills anything: what it is scripted to do, and how it then ends. */
interface Kind {
  name: string;
  container: FakeContainerScript;
  build?: FakeBuild;
  end: RunOutcome['end'];
  reason: string;
  /** A file of the results folder and what it must hold. */
  file: [string, string];
  /** The run's runfor (default a minute). */
  runforMs?: number;
}

const KINDS: Kind[] = [
  {
    name: 'a run that succeeds',
    container: { exitCode: 0, log: 'epoch 1\n', outputs: { 'model.txt': 'weights\n' } },
    end: 'succeeded',
    reason: 'succeeded; results on branch BRANCH',
    file: ['model.txt', 'weights\n'],
  },
  {
    name: 'a run whose container fails',
    container: { exitCode: 3, log: 'bad row 7\n', outputs: { 'error.txt': 'row 7\n' } },
    end: 'failed',
    reason: 'the container exited with code 3',
    file: ['error.txt', 'row 7\n'],
  },
  {
    name: 'a run stopped at its runfor limit while it works',
    container: { log: 'epoch 1\n', outputs: { 'checkpoint.txt': 'epoch 1\n' } },
    runforMs: 150,
    end: 'timed_out',
    reason: `stopped at its runfor limit of ${formatHours(150)}`,
    file: ['checkpoint.txt', 'epoch 1\n'],
  },
  {
    name: 'a run whose build fails',
    container: {},
    build: { outcome: 'fail', reason: 'unknown instruction: RUNN' },
    end: 'failed',
    reason: 'docker build failed: unknown instruction: RUNN',
    file: ['_secd/build.log', 'ERROR: unknown instruction: RUNN\n[secd] docker build failed: unknown instruction: RUNN\n'],
  },
];

/** A researcher's pushed project, its remote, and the spec the leader sends for its run. */
async function aPushedRun(runId: string, runforMs = 60_000) {
  const repo = await createResearcherRepo();
  const remote = await createBareRemote();
  const commit = await repo.commit('train', { files: busyboxProject('echo training\n') });
  await repo.push(remote.url);
  const spec: RunSpec = aRunSpec(runId, { commit, source: remote.url, resultsRemote: remote.url, runforMs });
  return {
    spec,
    remote,
    close: async () => {
      await repo.close();
      await remote.close();
    },
  };
}

function engineFor(kind: Kind): FakeContainerEngine {
  const engine = new FakeContainerEngine({ now }).scriptContainer(kind.container);
  if (kind.build) engine.scriptBuild(kind.build);
  return engine;
}

/** The points an undisturbed run of `kind` passes, in order (`name@hit`). */
async function pointsOf(kind: Kind): Promise<string[]> {
  const root = await mkdtemp(join(tmpdir(), 'secd-kill-points-'));
  const run = await aPushedRun('kp0', kind.runforMs);
  try {
    const life = aNodeLife(root, engineFor(kind), now);
    return await asLife(async () => {
      await life.runs.assign(run.spec);
      await life.runs.idle();
    });
  } finally {
    await run.close();
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * One round: the run killed at `point`, the node restarted; what it reports, the remote's branches
 * and what is left of the run. Returns the restarted node's outcome.
 */
async function killRound(kind: Kind, point: string, runId: string, alterDisk?: (runDir: string) => Promise<void>, thenKill?: 'next'): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'secd-kill-round-'));
  const run = await aPushedRun(runId, kind.runforMs);
  try {
    let engine = engineFor(kind);
    const first = aNodeLife(join(root, 'first'), engine, now);
    const killed = await killAt(point, { engine, workDir: first.workDir, runs: first.runs }, () => first.runs.assign(run.spec), join(root, 'next'), run.remote.dir);
    expect(killed.nextRoot, `${point} was never reached`).not.toBeNull();
    await alterDisk?.(join(root, 'next', 'work', 'runs', runId));
    const commitsAtKill = await runGit(['rev-list', '--all'], { cwd: run.remote.dir });
    let lastRoot = join(root, 'next');
    if (thenKill) {
      // The restarted node is killed again as soon as it carries the run on.
      engine = engine.reconnect();
      const second = aNodeLife(lastRoot, engine, now);
      const again = await killAt(thenKill, { engine, workDir: second.workDir, runs: second.runs }, () => second.runs.recover(), join(root, 'third'), run.remote.dir);
      point = `${point} then ${again.point}`;
      if (again.nextRoot !== null) lastRoot = again.nextRoot;
    }

    const engine2 = engine.reconnect();
    const next = aNodeLife(lastRoot, engine2, now);
    await asLife(async () => {
      await next.runs.recover();
      await next.runs.idle();
    });

    // One final outcome, the run's true one, with its branch.
    const pending = next.runs.pendingResults();
    expect(pending.map((p) => p.runId), point).toEqual([runId]);
    const outcome = pending[0]!.outcome;
    expect(outcome, point).toMatchObject({ end: kind.end, reason: kind.reason.replace('BRANCH', branchOf(runId)), branch: branchOf(runId) });
    // Exactly one results branch, at the commit the outcome names, holding what the run wrote.
    const branches = resultsBranches(run.remote.dir);
    expect([...branches.keys()], point).toEqual([branchOf(runId)]);
    expect(outcome.resultsCommit, point).toBe(branches.get(branchOf(runId)));
    if (/^node\.(deliver\.pushed|deliver\.journaled|clean|result)/.test(point)) {
      // Pushed before the kill: the restart pushed nothing more.
      expect(await runGit(['rev-list', '--all'], { cwd: run.remote.dir }), point).toBe(commitsAtKill);
    }
    const show = (file: string) => runGit(['show', `${branchOf(runId)}:${folderOf(runId)}/${file}`], { cwd: run.remote.dir });
    expect(await show(kind.file[0]), point).toContain(kind.file[1]);
    expect((JSON.parse(await show('_secd/run.json')) as RunReport).state, point).toBe(kind.end);
    // Nothing of the run is left on the engine; once the leader has the result, nothing on disk.
    expect(engine2.containers(), point).toEqual([]);
    expect(engine2.volumes(), point).toEqual([]);
    await next.runs.acknowledge(runId);
    expect(await readdir(join(next.workDir, 'runs')), point).toEqual([]);
    await expect(readdir(join(next.workDir, 'kept')), point).rejects.toThrow();
    return point;
  } finally {
    await run.close();
    await rm(root, { recursive: true, force: true });
  }
}

describe('a node killed between its results push and the journal update', () => {
  it('restarts, finds its branch on the remote, and ends the run succeeded with that branch (exactly one results branch)', async () => {
    await killRound(KINDS[0]!, 'node.deliver.pushed@1', 'kp-push');
  });

  it('restarts with its checkout gone (as an older node left it, mid-cleanup) and finds its branch by the journaled commit', async () => {
    await killRound(KINDS[0]!, 'node.deliver.pushed@1', 'kp-gone', (runDir) => rm(join(runDir, 'src'), { recursive: true, force: true }));
  });

  it('restarts before its push with its checkout gone, checks the commit out again and pushes once', async () => {
    await killRound(KINDS[0]!, 'node.deliver.begin@1', 'kp-recheckout', (runDir) => rm(join(runDir, 'src'), { recursive: true, force: true }));
  });

  it('restarts after a kill while the delivered run\'s checkout was being removed, and still ends succeeded with its branch', async () => {
    await killRound(KINDS[0]!, 'node.clean.src-removed@1', 'kp-clean');
  });
});

for (const kind of KINDS) {
  describe(`${kind.name}, the node killed at each point in turn`, () => {
    it('ends once, as it truly ended, with one results branch and nothing left behind', async () => {
      const points = await pointsOf(kind);
      // Every step boundary is passed: a run that skipped one would not be tested at it.
      expect(points.map((p) => p.split('.')[1])).toEqual(expect.arrayContaining(kind.build ? ['prepare', 'build', 'collect', 'deliver', 'clean', 'result'] : ['prepare', 'build', 'start', 'wait', 'collect', 'deliver', 'clean', 'result']));
      let round = 0;
      for (const point of points) await killRound(kind, point, `kp${(round += 1)}`);
      console.log(`${kind.name}: ${points.length} kill points, ${round} rounds: ${points.join(' ')}`);
    }, 180_000);
  });
}

describe('a run that succeeds, the node killed at each point and killed again as soon as it carries the run on', () => {
  it('ends once, as it truly ended, with one results branch and nothing left behind', async () => {
    const kind = KINDS[0]!;
    const points = await pointsOf(kind);
    const rounds: string[] = [];
    for (const point of points) rounds.push(await killRound(kind, point, `kk${rounds.length + 1}`, undefined, 'next'));
    console.log(`killed twice: ${rounds.length} rounds: ${rounds.join(', ')}`);
  }, 180_000);
});
