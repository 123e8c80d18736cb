/**
 * The executor's failure paths without Docker, in milliseconds: the fake engine plays the builds and
 * containers (test/doubles/fake-container-engine.ts), the run's results land in a folder as `secd run`
 * writes them, and each test reads what the researcher would read there: the outcome, the reason,
 * `_secd/run.json` and the logs. The Docker adapter keeps its own tests on the real engine.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLog } from '../../scheduler/common/log.js';
import type { RunPhase, RunReport, RunSpec } from '../../scheduler/contract/run-spec.js';
import { FakeContainerEngine } from '../../test/doubles/fake-container-engine.js';
import { createBareRemote, createResearcherRepo } from '../../test/support/git-repo.js';
import { aRunSpec, busyboxProject, testExecutorSettings } from '../../test/support/test-images.js';
import { DEFAULT_DISCLOSURE_CHECKS } from '../../scheduler/contract/disclosure.js';
import type { ExecutorDeps } from './executor-deps.js';
import { executeRun, nextStep, resumeRun } from './run-executor.js';
import { runWorkspace, saveJournal, type RunJournal } from './run-workspace.js';

const NOW = new Date('2026-03-05T14:07:09.000Z');
const FOLDER = (runId: string) => `2026-03-05_14.07.09-${runId}`;

let root: string;
let engine: FakeContainerEngine;
let deps: ExecutorDeps;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'secd-executor-'));
  engine = new FakeContainerEngine({ now: () => NOW });
  deps = {
    engine,
    log: silentLog,
    now: () => NOW,
    settings: testExecutorSettings(root),
    ensureBaseImage: () => Promise.reject(new Error('these projects do not use secd/base')),
  };
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** `secd run <dir>` on a busybox project: what it returns, which phases it passed, and its results folder. */
interface LocalRunOptions {
  signal?: AbortSignal;
  onPhase?: (phase: RunPhase) => void;
  onBuildLog?: (line: string) => void;
  files?: Record<string, string>;
}

async function runLocally(spec: RunSpec, options: LocalRunOptions = {}) {
  const dir = join(root, 'project');
  await mkdir(dir, { recursive: true });
  for (const [name, content] of Object.entries(options.files ?? busyboxProject('echo hi\n'))) await writeFile(join(dir, name), content);
  const phases: RunPhase[] = [];
  const outcome = await executeRun(spec, deps, {
    onPhase: (phase) => {
      phases.push(phase);
      options.onPhase?.(phase);
    },
    local: { dir, resultsRoot: join(root, 'results') },
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onBuildLog ? { onBuildLog: options.onBuildLog } : {}),
  });
  const folder = join(root, 'results', FOLDER(spec.runId));
  const read = (rel: string) => readFile(join(folder, rel), 'utf8');
  return { outcome, phases, read, report: async () => JSON.parse(await read('_secd/run.json')) as RunReport };
}

describe('executeRun, without Docker', () => {
  it('a run that succeeds delivers its outputs, both logs and run.json', async () => {
    engine.scriptContainer({ exitCode: 0, log: 'epoch 1 loss 0.4\n', outputs: { 'model/accuracy.txt': '0.93\n' } });

    const { outcome, phases, read, report } = await runLocally(aRunSpec('ok1'));

    expect(outcome).toMatchObject({ end: 'succeeded', reason: 'succeeded', exitCode: 0, outputsPath: join(root, 'results', FOLDER('ok1')) });
    expect(phases).toEqual(['building', 'running', 'uploading']);
    expect(await read('model/accuracy.txt')).toBe('0.93\n');
    expect(await read('_secd/run.log')).toBe('epoch 1 loss 0.4\n');
    expect(await report()).toMatchObject({ run_id: 'ok1', state: 'succeeded', exit_code: 0, node: 'gpu-test', outputs: { files: 1, bytes: 5, left_out: [] } });
    // Nothing of the run is left on the engine.
    expect(engine.containers()).toEqual([]);
    expect(engine.volumes()).toEqual([]);
  });

  it('a build that fails says why, never starts a container, and still delivers the build log', async () => {
    engine.scriptBuild({ outcome: 'fail', reason: 'unknown instruction: RUNN', log: ['Step 1/3 : FROM secd-test/busybox:1'] });

    const { outcome, phases, read, report } = await runLocally(aRunSpec('bf1'));

    expect(outcome).toMatchObject({ end: 'failed', reason: 'docker build failed: unknown instruction: RUNN', exitCode: null, imageId: null });
    expect(phases).toEqual(['building', 'uploading']);
    expect(engine.calls.map((c) => c.op)).not.toContain('runContainer');
    expect(await read('_secd/build.log')).toBe(
      'Step 1/3 : FROM secd-test/busybox:1\nERROR: unknown instruction: RUNN\n[secd] docker build failed: unknown instruction: RUNN\n',
    );
    expect(await report()).toMatchObject({ state: 'failed', reason: 'docker build failed: unknown instruction: RUNN', started_at: null, image_id: null });
  });

  it('a build whose cached layer went away under it (another build replaced its image) is built once more, and says so', async () => {
    const gone = 'unable to find image "sha256:7b2d87ea5efcae89484f5406b41020915074e76ee675ed2070e67f4f20b97633"';
    engine.scriptBuild({ outcome: 'fail', reason: gone }, { outcome: 'succeed' });
    engine.scriptContainer({ exitCode: 0 });

    const { outcome, read } = await runLocally(aRunSpec('lg1'));

    expect(outcome).toMatchObject({ end: 'succeeded' });
    expect(engine.calls.filter((c) => c.op === 'buildImage')).toHaveLength(2);
    expect(await read('_secd/build.log')).toContain(`[secd] a cached layer went away during the build (${gone}); building once more`);
    // Only once: a layer gone a second time is the run's failure.
    engine.scriptBuild({ outcome: 'fail', reason: gone }, { outcome: 'fail', reason: gone });
    const twice = await runLocally(aRunSpec('lg2'));
    expect(twice.outcome).toMatchObject({ end: 'failed', reason: `docker build failed: ${gone}` });
  });

  it('a build cancelled while it works ends cancelled with the canceller\'s reason, and its log is delivered', async () => {
    engine.scriptBuild({ outcome: 'hang', log: ['Step 2/3 : RUN make'] });
    const ac = new AbortController();

    const { outcome, read, report } = await runLocally(aRunSpec('bc1'), {
      // Cancelled once the build is under way (it printed its step).
      onBuildLog: (line) => line.startsWith('Step 2/3') && ac.abort('cancelled by ada'),
      signal: ac.signal,
    });

    expect(outcome).toMatchObject({ end: 'cancelled', reason: 'cancelled by ada' });
    expect(await read('_secd/build.log')).toBe('Step 2/3 : RUN make\n[secd] cancelled by ada\n');
    expect(await report()).toMatchObject({ state: 'cancelled', reason: 'cancelled by ada', exit_code: null });
  });

  it('a build still going when runfor is up is stopped: the run ends timed_out, says builds count, and keeps the build log', async () => {
    engine.scriptBuild({ outcome: 'hang', log: ['Step 2/3 : RUN sleep 600'] });

    // No cancel from anyone: only the run's own runfor (36 ms) can end this build.
    const { outcome, phases, read, report } = await runLocally(aRunSpec('bt1', { runforMs: 36 }));

    const reason = 'the build ran past runfor (0.00001 h): builds count against runfor';
    expect(outcome).toMatchObject({ end: 'timed_out', reason, exitCode: null });
    expect(phases).not.toContain('running');
    expect(await read('_secd/build.log')).toBe(`Step 2/3 : RUN sleep 600\n[secd] ${reason}\n`);
    expect(await report()).toMatchObject({ state: 'timed_out', reason, exit_code: null, started_at: null, runfor_ms: 36 });
    expect(engine.containers()).toEqual([]);
  });

  it('the container gets only what the build left of runfor', async () => {
    // The build takes 59.97 s of a 60 s runfor (the executor's clock says so); the container never exits.
    let clockMs = NOW.getTime();
    deps = { ...deps, now: () => new Date(clockMs) };
    engine.scriptBuild({ outcome: 'succeed', log: ['Step 2/3 : RUN make'] });
    engine.scriptContainer({ log: 'epoch 1\n' });

    const { outcome } = await runLocally(aRunSpec('bt2', { runforMs: 60_000 }), {
      onBuildLog: (line) => line.startsWith('Step 2/3') && (clockMs += 59_970),
    });

    expect(outcome).toMatchObject({ end: 'timed_out', reason: 'stopped at its runfor limit of 0.0167 h', exitCode: 143 });
  });

  it('a run past its runfor limit is stopped, says so, and keeps what it printed and wrote', async () => {
    engine.scriptContainer({ log: 'epoch 1\n', outputs: { 'checkpoint.txt': 'epoch 1\n' } });

    const { outcome, read, report } = await runLocally(aRunSpec('to1', { runforMs: 30 }));

    expect(outcome).toMatchObject({ end: 'timed_out', exitCode: 143 });
    expect(outcome.reason).toMatch(/^stopped at its runfor limit of [\d.e-]+ h$/);
    expect(await read('checkpoint.txt')).toBe('epoch 1\n');
    expect(await read('_secd/run.log')).toBe('epoch 1\n');
    expect(await report()).toMatchObject({ state: 'timed_out', exit_code: 143, runfor_ms: 30 });
  });

  it('a running container cancelled is stopped, and the run ends cancelled with what it had written', async () => {
    engine.scriptContainer({ log: 'training\n', outputs: { 'partial.txt': 'half\n' } });
    const ac = new AbortController();

    const { outcome, read } = await runLocally(aRunSpec('rc1'), {
      onPhase: (phase) => {
        if (phase === 'running') setTimeout(() => ac.abort('cancelled by the operator'), 5);
      },
      signal: ac.signal,
    });

    expect(outcome).toMatchObject({ end: 'cancelled', reason: 'cancelled by the operator', exitCode: 143 });
    expect(await read('partial.txt')).toBe('half\n');
  });

  it('a container that exits non-zero, or out of memory, fails with the line a researcher needs', async () => {
    engine.scriptContainer({ exitCode: 2 }, { oomKilled: true });

    const failed = await runLocally(aRunSpec('ex1'));
    const oom = await runLocally(aRunSpec('ex2'));

    expect(failed.outcome).toMatchObject({ end: 'failed', reason: 'the container exited with code 2', exitCode: 2 });
    expect(oom.outcome).toMatchObject({ end: 'failed', reason: 'the container exited with code 137 (killed: out of memory)' });
    expect(await oom.report()).toMatchObject({ state: 'failed', exit_code: 137 });
  });

  it('a container the engine refuses to start fails the run with the engine\'s sentence', async () => {
    engine.scriptContainer({ refuse: 'no such device nvidia' });

    const { outcome, report } = await runLocally(aRunSpec('sf1'));

    expect(outcome).toMatchObject({ end: 'failed', reason: 'the container could not start: could not start the container: no such device nvidia' });
    expect(await report()).toMatchObject({ state: 'failed', started_at: null });
  });

  it('a project without a Dockerfile fails before any build, and says so', async () => {
    const { outcome } = await runLocally(aRunSpec('nd1'), { files: { 'run.sh': 'echo hi\n' } });

    expect(outcome).toMatchObject({ end: 'failed', reason: 'no Dockerfile at the root of the project' });
    expect(engine.calls.map((c) => c.op)).not.toContain('buildImage');
    expect(await readdir(join(root, 'results'))).toEqual([FOLDER('nd1')]);
  });

  it('the disclosure checks flag outputs and logs alike, into run.json and the outcome, never with a cell\'s value', async () => {
    engine.scriptContainer({
      exitCode: 0,
      log: 'reading cohort 42 rows\n',
      outputs: { 'tables/cohort.csv': 'region,SSN,n\nnorth,x-secret,3\n', 'summary.xlsx': 'PK', 'clean.csv': 'region,n\nnorth,40\n' },
    });
    const release = { policy: 'review' as const, checks: { ...DEFAULT_DISCLOSURE_CHECKS, maxFileBytes: 20 } };

    const { outcome, report, read } = await runLocally(aRunSpec('dc1', { release }));

    const buildLogBytes = Buffer.byteLength(await read('_secd/build.log'));
    const expected = [
      { file: 'summary.xlsx', rule: 'extension', detail: '".xlsx" is not an allowed extension' },
      { file: 'tables/cohort.csv', rule: 'forbidden_column', detail: 'column 2 "SSN" is a forbidden column' },
      { file: 'tables/cohort.csv', rule: 'small_cell', detail: 'row 1, column "n": a count below 10' },
      { file: 'tables/cohort.csv', rule: 'file_size', detail: '30 bytes, over the cap of 20 bytes' },
      // Logs are outputs like any other file.
      { file: '_secd/build.log', rule: 'file_size', detail: `${buildLogBytes} bytes, over the cap of 20 bytes` },
      { file: '_secd/run.log', rule: 'file_size', detail: '23 bytes, over the cap of 20 bytes' },
    ];
    expect(outcome.disclosure).toEqual(expected);
    expect(await report()).toMatchObject({ state: 'succeeded', release: 'review', disclosure: expected });
    expect(JSON.stringify(outcome.disclosure)).not.toMatch(/x-secret|north/);
  });

  it('a clean run says so: no findings, the policy direct when the spec has none', async () => {
    engine.scriptContainer({ exitCode: 0, log: 'ok\n', outputs: { 'metrics.json': '{"acc":0.9}' } });

    const { outcome, report } = await runLocally(aRunSpec('dc2'));

    expect(outcome.disclosure).toEqual([]);
    expect(await report()).toMatchObject({ release: 'direct', disclosure: [] });
  });

  it('a run delivered after a node restart reports the findings journaled when its outputs were collected', async () => {
    const spec = aRunSpec('dc3');
    const ws = runWorkspace(deps.settings.workDir, spec.runId);
    await mkdir(ws.outputs, { recursive: true });
    await writeFile(ws.outputs + '/kept.txt', 'k');
    await writeFile(ws.runLog, 'done\n');
    await saveJournal(ws, {
      stamp: '2026-03-05_14.07.09',
      phase: 'uploading',
      buildStartedAt: null,
      buildMs: 1,
      imageId: 'sha256:1',
      containerId: 'gone',
      outputsLeftOut: [],
      // The file it names went with the container: only the journal still knows it was flagged.
      outputsDisclosure: [{ file: 'report.xlsx', rule: 'extension', detail: '".xlsx" is not an allowed extension' }],
      ended: { end: 'succeeded', reason: 'succeeded', exitCode: 0, startedAt: null, runMs: 5 },
    });

    const outcome = await resumeRun(spec, deps, { onPhase: () => {}, local: { dir: root, resultsRoot: join(root, 'results') } });

    expect(outcome).toMatchObject({ end: 'succeeded', disclosure: [{ file: 'report.xlsx', rule: 'extension', detail: '".xlsx" is not an allowed extension' }] });
    const report = JSON.parse(await readFile(join(root, 'results', FOLDER('dc3'), '_secd/run.json'), 'utf8')) as RunReport;
    expect(report.disclosure).toEqual(outcome.disclosure);
  });

  it('a pushed run\'s outcome names the results commit that is the branch head, and carries the findings', async () => {
    const repo = await createResearcherRepo();
    const remote = await createBareRemote();
    try {
      const commit = await repo.commit('train', { files: busyboxProject('echo training\n') });
      await repo.push(remote.url);
      engine.scriptContainer({ exitCode: 0, outputs: { 'export.xlsx': 'PK' } });

      const outcome = await executeRun(aRunSpec('dc4', { commit, source: remote.url, resultsRemote: remote.url }), deps, { onPhase: () => {} });

      expect(outcome).toMatchObject({ end: 'succeeded', branch: 'secd-2026-03-05_14.07.09-dc4' });
      expect(outcome.resultsCommit).toMatch(/^[0-9a-f]{40}$/);
      expect(await remote.tip(outcome.branch!)).toBe(outcome.resultsCommit);
      expect(outcome.disclosure).toEqual([{ file: 'export.xlsx', rule: 'extension', detail: '".xlsx" is not an allowed extension' }]);
    } finally {
      await repo.close();
      await remote.close();
    }
  });
});

describe('the step a restarted node takes, derived from the journal alone', () => {
  const at = (over: Partial<RunJournal>): RunJournal => ({ stamp: 's', phase: 'building', buildStartedAt: null, buildMs: null, imageId: null, ended: null, ...over });
  it.each([
    ['no journal', null, 'prepare'],
    ['building', at({ phase: 'building' }), 'prepare'],
    ['built, no container yet', at({ phase: 'running', imageId: 'sha256:1', containerId: null }), 'start'],
    ['container journaled', at({ phase: 'running', containerId: 'c1' }), 'wait'],
    ['a journal from before container ids (found by name)', at({ phase: 'running' }), 'wait'],
    ['container ended, outputs collected', at({ phase: 'uploading' }), 'deliver'],
    ['results delivered', at({ phase: 'delivered' }), 'clean'],
  ] as const)('%s', (_, journal, step) => {
    expect(nextStep(journal)).toBe(step);
  });
});
