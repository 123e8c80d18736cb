/**
 * A networked node's runs from the researcher's side, without Docker: the fake engine plays builds and
 * containers, git is real (a local bare repository stands in for GitLab's copy), so each test reads
 * the outcome the leader hears, the results branch and its `_secd/run.json`.
 *
 * A restart is played as it happens: the fake engine's daemon dies at a chosen call (its executor
 * hears nothing more), a new NodeRuns on the same work dir and a new connection to the same engine
 * recovers, and the run is started over, adopted or delivered from what the journal says.
 */
import { chmod, cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLog } from '../../scheduler/common/log.js';
import type { RunOutcome, RunPhase, RunReport, RunSpec } from '../../scheduler/contract/run-spec.js';
import { FakeContainerEngine, type FakeCall } from '../../test/doubles/fake-container-engine.js';
import { createBareRemote, createResearcherRepo, type ResearcherRepo } from '../../test/support/git-repo.js';
import { aRunSpec, busyboxProject, testExecutorSettings } from '../../test/support/test-images.js';
import type { ExecutorDeps } from '../executor/executor-deps.js';
import { loadJournal, runWorkspace } from '../executor/run-workspace.js';
import { runGit } from '../results/node-git.js';
import { NodeRuns } from './node-runs.js';

const NOW = new Date('2026-03-05T14:07:09.000Z');
const branchOf = (runId: string) => `secd-2026-03-05_14.07.09-${runId}`;
const folderOf = (runId: string) => `outputs/2026-03-05_14.07.09-${runId}`;

let root: string;
let repo: ResearcherRepo;
let remote: Awaited<ReturnType<typeof createBareRemote>>;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'secd-node-runs-'));
  repo = await createResearcherRepo();
  remote = await createBareRemote();
});

afterEach(async () => {
  await repo.close();
  await remote.close();
  await rm(root, { recursive: true, force: true });
});

/** One node daemon: its runs, over one connection to the engine, and what it told the leader. */
function aNode(engine: FakeContainerEngine) {
  const deps: ExecutorDeps = {
    engine,
    log: silentLog,
    now: () => NOW,
    settings: testExecutorSettings(root),
    ensureBaseImage: () => Promise.reject(new Error('these projects do not use secd/base')),
  };
  const runs = new NodeRuns({ executor: deps, workDir: deps.settings.workDir, log: silentLog });
  const phases: Array<[string, RunPhase]> = [];
  const results = new Map<string, RunOutcome>();
  const onPhase: Array<(runId: string, phase: RunPhase) => void> = [];
  runs.attach({
    phase: (runId, phase) => {
      phases.push([runId, phase]);
      for (const f of onPhase) f(runId, phase);
    },
    result: (runId, outcome) => results.set(runId, outcome),
  });
  return { runs, phases, results, onPhase };
}

/** The researcher pushed a busybox project; the spec the leader sends for it. */
async function aPushedRun(runId: string): Promise<RunSpec> {
  const commit = await repo.commit('train', { files: busyboxProject('echo training\n') });
  await repo.push(remote.url);
  return aRunSpec(runId, { commit, source: remote.url, resultsRemote: remote.url });
}

// The node's daemon dies as its run's container starts; resolves just after.
function haltWhenRunning(engine: FakeContainerEngine, node: ReturnType<typeof aNode>): Promise<void> {
  return new Promise((resolve) =>
    node.onPhase.push((_, phase) => {
      if (phase !== 'running') return;
      engine.halt();
      setImmediate(resolve);
    }),
  );
}

/** Run `spec` on a node over `engine` until its container runs, then crash that daemon; the next daemon's view of the engine. */
async function crashWhileRunning(spec: RunSpec, engine: FakeContainerEngine): Promise<FakeContainerEngine> {
  const first = aNode(engine);
  const died = haltWhenRunning(engine, first);
  await first.runs.assign(spec);
  await died;
  return engine.reconnect();
}

/** A file of the results branch, as the researcher would fetch it. */
function readBranch(runId: string, file: string): Promise<string> {
  return runGit(['show', `${branchOf(runId)}:${folderOf(runId)}/${file}`], { cwd: remote.dir });
}

async function runJson(runId: string): Promise<RunReport> {
  return JSON.parse(await readBranch(runId, '_secd/run.json')) as RunReport;
}

// The engine's daemon dies at the first call for which `when` holds; resolves just after.
function haltWhen(engine: FakeContainerEngine, when: (call: FakeCall) => boolean): Promise<void> {
  return new Promise((resolve) => {
    engine.haltWhen = (call) => {
      if (!when(call)) return false;
      setImmediate(resolve);
      return true;
    };
  });
}

describe('a node delivering results', () => {
  it('pushes the results branch, reports success with it, and forgets the run once acknowledged', async () => {
    const spec = await aPushedRun('ok1');
    const engine = new FakeContainerEngine({ now: () => NOW }).scriptContainer({ exitCode: 0, log: 'epoch 1\n', outputs: { 'accuracy.txt': '0.93\n' } });
    const node = aNode(engine);

    await node.runs.assign(spec);
    await node.runs.idle();

    expect(node.results.get('ok1')).toMatchObject({ end: 'succeeded', reason: `succeeded; results on branch ${branchOf('ok1')}`, branch: branchOf('ok1') });
    expect(node.phases.map(([, p]) => p)).toEqual(['building', 'running', 'uploading']);
    expect(await readBranch('ok1', 'accuracy.txt')).toBe('0.93\n');
    expect(await readBranch('ok1', '_secd/run.log')).toBe('epoch 1\n');
    expect(await runJson('ok1')).toMatchObject({ run_id: 'ok1', state: 'succeeded', commit: spec.commit, exit_code: 0 });
    expect(node.runs.held()).toEqual([{ run_id: 'ok1', phase: 'finished', outcome: node.results.get('ok1') }]);
    await node.runs.acknowledge('ok1');
    expect(node.runs.held()).toEqual([]);
    expect(await readdir(join(root, 'work', 'runs'))).toEqual([]);
  });

  it('a push the remote refuses fails the run, says the run itself had succeeded, and keeps the result until acknowledged', async () => {
    const spec = await aPushedRun('rj1');
    await writeFile(join(remote.dir, 'hooks', 'pre-receive'), '#!/bin/sh\necho "results are not accepted here" >&2\nexit 1\n');
    await chmod(join(remote.dir, 'hooks', 'pre-receive'), 0o755);
    const node = aNode(new FakeContainerEngine({ now: () => NOW }));

    await node.runs.assign(spec);
    await node.runs.idle();

    const outcome = node.results.get('rj1');
    expect(outcome).toMatchObject({ end: 'failed', branch: null, outputsPath: null });
    expect(outcome?.reason).toMatch(new RegExp(`^results could not be pushed \\(the remote refused ${branchOf('rj1')}: .*pre-receive hook declined.*\\); they are kept on node gpu-test; the run had succeeded$`));
    expect(await remote.tip(`refs/heads/${branchOf('rj1')}`)).toBeNull();
    expect(node.runs.pendingResults()).toEqual([{ runId: 'rj1', outcome }]);
  });

  it('a results branch someone else pushed first is left as it is: the run fails, names it, and its outputs stay on the node', async () => {
    const spec = await aPushedRun('sq1');
    // A project member guessed the branch from the run's id and start time and pushed forged outputs.
    await repo.commit('forged', { files: { [`${folderOf('sq1')}/accuracy.txt`]: '0.99\n' } });
    await repo.push(remote.url, { remoteRef: `refs/heads/${branchOf('sq1')}` });
    const forged = await remote.tip(`refs/heads/${branchOf('sq1')}`);
    const node = aNode(new FakeContainerEngine({ now: () => NOW }).scriptContainer({ exitCode: 0, outputs: { 'accuracy.txt': '0.61\n' } }));

    await node.runs.assign(spec);
    await node.runs.idle();

    const outcome = node.results.get('sq1');
    expect(outcome).toMatchObject({ end: 'failed', branch: null, outputsPath: null });
    expect(outcome?.reason).toBe(
      `results could not be pushed (results branch ${branchOf('sq1')} was pushed by someone else: its head ${forged} is not the commit secd made; ` +
        'secd left it as it is); they are kept on node gpu-test; the run had succeeded',
    );
    expect(await remote.tip(`refs/heads/${branchOf('sq1')}`)).toBe(forged);
    expect(await readBranch('sq1', 'accuracy.txt')).toBe('0.99\n');
    // The genuine outputs stay on the node's disk, also once the leader has the result.
    await node.runs.acknowledge('sq1');
    const kept = join(root, 'work', 'kept', 'sq1');
    expect(await readFile(join(kept, 'outputs', 'accuracy.txt'), 'utf8')).toBe('0.61\n');
    expect(await readdir(kept)).not.toContain('spec.json');
    expect(await readdir(join(root, 'work', 'runs'))).toEqual([]);
  });
});

describe('a node restarted with a run in each phase', () => {
  it('building: the build starts over and the run is delivered once', async () => {
    const spec = await aPushedRun('b1');
    const engine = new FakeContainerEngine({ now: () => NOW });
    const died = haltWhen(engine, (call) => call.op === 'buildImage');
    await aNode(engine).runs.assign(spec);
    await died;
    expect(await loadJournal(runWorkspace(join(root, 'work'), 'b1'))).toMatchObject({ phase: 'building' });

    const next = aNode(engine.reconnect().scriptContainer({ exitCode: 0, outputs: { 'after.txt': 'rebuilt\n' } }));
    await next.runs.recover();
    await next.runs.idle();

    expect(next.results.get('b1')).toMatchObject({ end: 'succeeded', branch: branchOf('b1') });
    expect(next.phases.map(([, p]) => p)).toEqual(['building', 'running', 'uploading']);
    expect(await readBranch('b1', 'after.txt')).toBe('rebuilt\n');
    expect(await runJson('b1')).toMatchObject({ state: 'succeeded' });
  });

  it('running: the container is adopted, waited for, its whole log read back and its outputs delivered', async () => {
    const spec = await aPushedRun('r1');
    const engine = new FakeContainerEngine({ now: () => NOW })
      .scriptBuild({ outcome: 'succeed', log: ['Step 1/3 : FROM secd-test/busybox:1'] })
      .scriptContainer({ log: 'epoch 1\n', outputs: { 'model.txt': 'weights\n' } });
    const first = aNode(engine);
    const died = haltWhenRunning(engine, first);
    await first.runs.assign(spec);
    await died;
    expect(await loadJournal(runWorkspace(join(root, 'work'), 'r1'))).toMatchObject({ phase: 'running' });

    const engine2 = engine.reconnect();
    const next = aNode(engine2);
    next.onPhase.push((runId, phase) => phase === 'running' && engine2.exitContainer(runId, 0));
    await next.runs.recover();
    await next.runs.idle();

    expect(next.results.get('r1')).toMatchObject({ end: 'succeeded', branch: branchOf('r1'), exitCode: 0 });
    expect(engine2.calls.map((c) => c.op)).not.toContain('buildImage');
    expect(engine2.calls.map((c) => c.op)).toContain('adoptContainer');
    expect(await readBranch('r1', 'model.txt')).toBe('weights\n');
    expect(await readBranch('r1', '_secd/run.log')).toBe('epoch 1\n');
    // The build log of the daemon before the restart is delivered too.
    expect(await readBranch('r1', '_secd/build.log')).toContain('Step 1/3 : FROM secd-test/busybox:1\n');
    expect(engine2.containers()).toEqual([]);
  });

  it('running, stopped before its new container was journaled: the container is made again from the built image, and the run is delivered once', async () => {
    const spec = await aPushedRun('c1');
    const engine = new FakeContainerEngine({ now: () => NOW });
    const died = haltWhen(engine, (call) => call.op === 'runContainer');
    await aNode(engine).runs.assign(spec);
    await died;
    expect(await loadJournal(runWorkspace(join(root, 'work'), 'c1'))).toMatchObject({ phase: 'running', containerId: null });

    const next = aNode(engine.reconnect().scriptContainer({ exitCode: 0, outputs: { 'again.txt': 'ran once\n' } }));
    await next.runs.recover();
    await next.runs.idle();

    expect(next.results.get('c1')).toMatchObject({ end: 'succeeded', branch: branchOf('c1') });
    expect(await readBranch('c1', 'again.txt')).toBe('ran once\n');
    // The image was built before the restart: the step carried on is the container's, not the build's.
    expect(next.phases.map(([, p]) => p)).toEqual(['running', 'uploading']);
  });

  it('running: a container carrying the run\'s labels that the node did not make is neither adopted nor removed', async () => {
    const spec = await aPushedRun('sp1');
    const engine2 = await crashWhileRunning(spec, new FakeContainerEngine({ now: () => NOW }).scriptContainer({ log: 'genuine\n', outputs: { 'model.txt': 'genuine\n' } }));
    const genuine = engine2.containers()[0]!;
    // A build step's image said `LABEL secd.run=sp1` (and copied the other labels too).
    const spoof = engine2.plantContainer({ ...genuine.labels }, { log: 'forged\n', outputs: { 'model.txt': 'forged\n' } });

    const next = aNode(engine2);
    next.onPhase.push((runId, phase) => phase === 'running' && engine2.exitContainer(runId, 0));
    await next.runs.recover();
    await next.runs.idle();

    expect(next.results.get('sp1')).toMatchObject({ end: 'succeeded', branch: branchOf('sp1') });
    expect(await readBranch('sp1', 'model.txt')).toBe('genuine\n');
    expect(engine2.calls.filter((c) => c.op === 'adoptContainer').map((c) => c.subject)).toEqual([genuine.id]);
    expect(engine2.containers().map((c) => c.id)).toEqual([spoof]);
  });

  it('running, its container gone and another carrying its labels: that one is not adopted, and the run fails', async () => {
    const spec = await aPushedRun('sp2');
    const engine2 = await crashWhileRunning(spec, new FakeContainerEngine({ now: () => NOW }));
    const [genuine] = engine2.containers();
    await engine2.removeContainer(genuine!.id);
    const spoof = engine2.plantContainer({ ...genuine!.labels }, { exitCode: 0, outputs: { 'model.txt': 'forged\n' } });

    const next = aNode(engine2);
    await next.runs.recover();
    await next.runs.idle();

    expect(next.results.get('sp2')).toMatchObject({ end: 'failed', reason: 'the run container was not found when the node restarted, so the run could not be finished' });
    await expect(readBranch('sp2', 'model.txt')).rejects.toThrow();
    expect(engine2.calls.map((c) => c.op)).not.toContain('adoptContainer');
    expect(engine2.containers().map((c) => c.id)).toEqual([spoof]);
  });

  it('running, with its container gone: the run fails and says why', async () => {
    const spec = await aPushedRun('g1');
    const engine2 = await crashWhileRunning(spec, new FakeContainerEngine({ now: () => NOW }));
    for (const c of engine2.containers()) await engine2.removeContainer(c.id);

    const next = aNode(engine2);
    await next.runs.recover();
    await next.runs.idle();

    const reason = 'the run container was not found when the node restarted, so the run could not be finished';
    expect(next.results.get('g1')).toMatchObject({ end: 'failed', reason });
    expect(await runJson('g1')).toMatchObject({ state: 'failed', reason });
    expect(await readBranch('g1', '_secd/build.log')).toContain(`[secd] ${reason}\n`);
  });

  it('uploading: the ended run is delivered from the journal, without the engine running anything again', async () => {
    const spec = await aPushedRun('u1');
    const engine = new FakeContainerEngine({ now: () => NOW }).scriptContainer({ exitCode: 3, log: 'bad input\n', outputs: { 'error.txt': 'row 7\n' } });
    let volumeRemovals = 0;
    // The second removal of the outputs volume comes right after the journal says `uploading`.
    const died = haltWhen(engine, (call) => call.op === 'removeVolume' && ++volumeRemovals === 2);
    await aNode(engine).runs.assign(spec);
    await died;
    expect(await loadJournal(runWorkspace(join(root, 'work'), 'u1'))).toMatchObject({ phase: 'uploading', ended: { end: 'failed', exitCode: 3 } });

    const engine2 = engine.reconnect();
    const next = aNode(engine2);
    await next.runs.recover();
    await next.runs.idle();

    expect(next.results.get('u1')).toMatchObject({ end: 'failed', reason: 'the container exited with code 3', branch: branchOf('u1') });
    expect(engine2.calls.map((c) => c.op).filter((op) => op === 'buildImage' || op === 'runContainer' || op === 'adoptContainer')).toEqual([]);
    expect(await readBranch('u1', 'error.txt')).toBe('row 7\n');
    expect(await readBranch('u1', '_secd/run.log')).toBe('bad input\n');
    expect(await runJson('u1')).toMatchObject({ state: 'failed', exit_code: 3 });
  });

  it('uploading, stopped after its push but before it noted it: the retry finds its own commit and succeeds once', async () => {
    const spec = await aPushedRun('p1');
    const runDir = join(root, 'work', 'runs', 'p1');
    const snapshot = join(root, 'at-the-crash');
    // The node's disk as it is the moment the push lands: what a daemon killed right then leaves.
    await writeFile(join(remote.dir, 'hooks', 'post-receive'), `#!/bin/sh\ncp -a '${runDir}' '${snapshot}'\n`);
    await chmod(join(remote.dir, 'hooks', 'post-receive'), 0o755);
    const engine = new FakeContainerEngine({ now: () => NOW }).scriptContainer({ exitCode: 0, outputs: { 'model.txt': 'genuine\n' } });
    const first = aNode(engine);
    await first.runs.assign(spec);
    await first.runs.idle();
    const pushed = await remote.tip(`refs/heads/${branchOf('p1')}`);
    await rm(join(remote.dir, 'hooks', 'post-receive'));
    await rm(runDir, { recursive: true, force: true });
    await cp(snapshot, runDir, { recursive: true });
    expect(await loadJournal(runWorkspace(join(root, 'work'), 'p1'))).toMatchObject({ phase: 'uploading', resultsCommits: [pushed] });

    const next = aNode(engine.reconnect());
    await next.runs.recover();
    await next.runs.idle();

    expect(next.results.get('p1')).toMatchObject({ end: 'succeeded', branch: branchOf('p1'), reason: `succeeded; results on branch ${branchOf('p1')}` });
    expect(await remote.tip(`refs/heads/${branchOf('p1')}`)).toBe(pushed);
    expect(await readBranch('p1', 'model.txt')).toBe('genuine\n');
  });

  it('finished but not acknowledged: the result is reported again and nothing runs twice', async () => {
    const spec = await aPushedRun('f1');
    const engine = new FakeContainerEngine({ now: () => NOW });
    const first = aNode(engine);
    await first.runs.assign(spec);
    await first.runs.idle();

    const engine2 = engine.reconnect();
    const next = aNode(engine2);
    await next.runs.recover();

    expect(next.runs.pendingResults()).toEqual([{ runId: 'f1', outcome: first.results.get('f1') }]);
    expect(next.runs.held()).toEqual([{ run_id: 'f1', phase: 'finished', outcome: first.results.get('f1') }]);
    expect(engine2.calls.map((c) => c.op)).toEqual(['imageExists']);
    expect(next.runs.images()).toEqual(['secd-test/project']);
  });
});
