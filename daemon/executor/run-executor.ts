/**
 * Execute one run on this node: check out the commit, build its Dockerfile, run the container under
 * the secd profile with its `runfor` limit, and deliver outputs and logs (a results branch, or a local
 * folder for `secd run`). Each step's failure becomes the run's reason; the logs are delivered even
 * when the build fails, is cancelled or times out.
 */
import { cp, mkdir, readFile, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { errorText } from '../../scheduler/common/errors.js';
import type { Log } from '../../scheduler/common/log.js';
import { resolveCacheDir } from '../../storage/cache-path.js';
import type { ContainerEngine, ContainerRunResult } from '../engine/container-engine.js';
import { containerRequestFor, OUTPUTS_MOUNT, outputsVolumeName } from './container-profile.js';
import { extractOutputsArchive } from '../results/outputs-archive.js';
import { dockerfileUsesBaseImage } from '../ops/base-image.js';
import { checkoutCommit } from './git-checkout.js';
import { LogCapture } from './log-capture.js';
import { isReservedForResults, pushResultsBranch, writeLocalResults } from '../results/results-branch.js';
import { finishRunDatasets, prepareRunDatasets, type DatasetsAfterRun, type PreparedDatasets } from './run-datasets.js';
import { outputsFolderName, resultsBranchName, resultsStamp } from '../results/results-stamp.js';
import { loadJournal, runWorkspace, saveJournal, writeFileAtomic, type RunWorkspace } from './run-workspace.js';
import type { LeftOut, RunEnd, RunOutcome, RunPhase, RunReport, RunSpec } from '../../scheduler/contract/run-spec.js';

/** Node settings the executor applies to every run. */
export interface ExecutorSettings {
  nodeId: string;
  workDir: string;
  cacheRoot: string;
  memoryBytes: number;
  pidsLimit: number;
  stopGraceMs: number;
  maxOutputFileBytes: number;
  maxOutputTotalBytes: number;
  /** Cap of each of build.log and run.log (head and tail kept). */
  maxLogBytes: number;
  /** Where file datasets live on this node (node.yml dataset_root); null/absent: none. */
  datasetRoot?: string | null;
}

/** What the executor is given by main. */
export interface ExecutorDeps {
  engine: ContainerEngine;
  log: Log;
  now(): Date;
  settings: ExecutorSettings;
  /** Build `secd/base` if it is missing (progress lines go to the build log). */
  ensureBaseImage(onProgress: (line: string) => void): Promise<void>;
}

/** Callbacks and options of one execution. */
export interface ExecuteOptions {
  onPhase(phase: RunPhase, at: string): void;
  /** Streamed build output (secd run prints it). */
  onBuildLog?(line: string): void;
  /** Streamed container output. */
  onRunLog?(chunk: Buffer): void;
  /** Abort to cancel; `signal.reason` (a string) becomes the run's reason. */
  signal?: AbortSignal;
  /** `secd run <dir>`: build this folder's working tree and write results under `resultsRoot`. */
  local?: { dir: string; resultsRoot: string };
}

const BUILD_EXCLUDES = new Set(['.git', 'outputs', '.secd']);

/** Docker repository name for a project's image (one tag per project keeps the layer cache warm). */
export function imageTagFor(project: string): string {
  const slug = project.toLowerCase().replace(/[^a-z0-9._/-]+/g, '-').replace(/\/+/g, '/').replace(/^[-./]+|[-./]+$/g, '');
  return `secd-project/${slug || 'project'}:latest`;
}

/** Run `spec` to the end and say how it ended. Never throws for the run's own failures. */
export async function executeRun(spec: RunSpec, deps: ExecutorDeps, opts: ExecuteOptions): Promise<RunOutcome> {
  const { engine, settings } = deps;
  const log = deps.log.child({ runId: spec.runId });
  const stamp = resultsStamp(deps.now());
  const ws = runWorkspace(settings.workDir, spec.runId);
  const srcDir = ws.src;
  const { buildLog, runLog } = newLogCaptures(settings);
  const buildLine = (line: string) => {
    buildLog.append(`${line}\n`);
    opts.onBuildLog?.(line);
  };
  const signal = opts.signal;
  const cancelReason = () => (typeof signal?.reason === 'string' ? signal.reason : 'cancelled');

  let end: RunEnd = 'failed';
  let reason = '';
  let exitCode: number | null = null;
  let imageId: string | null = null;
  let buildStartedAt: string | null = null;
  let startedAt: string | null = null;
  let runMs: number | null = null;
  let buildMs: number | null = null;
  let datasets: PreparedDatasets | null = null;
  let outputsLeftOut: LeftOut[] = [];

  // Only the executor's own files: a node agent's spec.json (and nothing else) may already be there.
  await clearExecution(ws);
  await mkdir(ws.dir, { recursive: true, mode: 0o700 });
  // A volume left by an earlier try of this run must not carry its files into this one.
  await engine.removeVolume(outputsVolumeName(spec.runId));

  try {
    opts.onPhase('building', deps.now().toISOString());
    buildStartedAt = deps.now().toISOString();
    await saveJournal(ws, { stamp, phase: 'building', buildStartedAt, buildMs: null, imageId: null, ended: null });
    const t0 = Date.now();
    if (opts.local) {
      await cp(opts.local.dir, srcDir, {
        recursive: true,
        verbatimSymlinks: true,
        filter: (source) => !BUILD_EXCLUDES.has(source.slice(opts.local!.dir.length + 1).split('/')[0] ?? ''),
      });
    } else {
      await checkoutCommit(spec.source, spec.commit, srcDir);
    }
    const dockerfile = await readFile(join(srcDir, 'Dockerfile'), 'utf8').catch(() => null);
    if (dockerfile === null) throw new StepFailure('no Dockerfile at the root of the project');
    if (dockerfileUsesBaseImage(dockerfile)) await deps.ensureBaseImage((line) => buildLine(`[secd base-image] ${line}`));
    const tag = imageTagFor(spec.project);
    const previous = await engine.inspectImage(tag);
    const build = await engine.buildImage({
      contextDir: srcDir,
      tag,
      // No build labels: with the legacy builder each LABEL is one more container per build, and a
      // per-commit label would defeat the layer cache. The container carries secd.run/commit labels.
      memoryBytes: settings.memoryBytes,
      onLog: buildLine,
      ...(signal ? { signal } : {}),
    });
    buildMs = Date.now() - t0;
    if (!build.ok) {
      if (build.code === 'cancelled') throw new StepFailure(cancelReason(), 'cancelled');
      throw new StepFailure(`docker build failed: ${build.reason}`);
    }
    imageId = build.imageId;
    if (previous && previous.id !== imageId) {
      // One image per project: the tag moved, so the old image would only pile up. Its layers shared
      // with the new one stay; an old image still used by a running container is kept by Docker.
      await engine.removeImage(previous.id).catch(() => false);
    }
    if (signal?.aborted) throw new StepFailure(cancelReason(), 'cancelled');

    let cacheHostDir: string | null = null;
    if (spec.cacheDir !== null) {
      const cache = await resolveCacheDir(settings.cacheRoot, spec.user, spec.cacheDir);
      if (!cache.ok) throw new StepFailure(cache.reason);
      cacheHostDir = cache.path;
    }
    const prepared = await prepareRunDatasets(spec, { datasetRoot: settings.datasetRoot ?? null, runDir: ws.dir });
    if (!prepared.ok) throw new StepFailure(prepared.reason);
    datasets = prepared.value;
    const request = containerRequestFor(
      spec,
      { cacheHostDir, extraMounts: datasets.mounts },
      { imageId, memoryBytes: settings.memoryBytes, pidsLimit: settings.pidsLimit, stopGraceMs: settings.stopGraceMs },
    );
    request.name = `secd-${spec.runId}`;
    // From here a restarted node finds the container by its secd.run label and adopts it (resumeRun).
    await writeFileAtomic(ws.buildLog, buildLog.toBuffer());
    await saveJournal(ws, { stamp, phase: 'running', buildStartedAt, buildMs, imageId, ended: null });
    const t1 = Date.now();
    const result = await engine.runContainer(request, {
      onLog: (chunk) => {
        runLog.append(chunk);
        opts.onRunLog?.(chunk);
      },
      ...(signal ? { signal } : {}),
      onStarted: () => opts.onPhase('running', deps.now().toISOString()),
      onExited: async (containerId) => {
        outputsLeftOut = await collectOutputs(deps, ws, containerId);
      },
    });
    runMs = Date.now() - t1;
    startedAt = result.startedAt;
    exitCode = result.exitCode;
    ({ end, reason } = describeContainerEnd(result, spec, cancelReason));
  } catch (err) {
    if (!(err instanceof StepFailure)) log.error({ err }, 'run step failed unexpectedly');
    end = err instanceof StepFailure ? err.end : 'failed';
    reason = errorText(err);
    buildLine(`[secd] ${reason}`);
  }

  // The dataset socket closes with the container; its bytes and the cache's size go into run.json.
  const after = await finishRunDatasets(spec, datasets, settings);
  return finishRun(spec, deps, opts, {
    after,
    outputsLeftOut,
    stamp,
    end,
    reason,
    exitCode,
    imageId,
    buildStartedAt,
    startedAt,
    buildMs,
    runMs,
    buildLog: buildLog.toBuffer(),
    runLog: runLog.toBuffer(),
  });
}

/**
 * Carry on a run this node was executing when its daemon stopped, from what its work dir and the
 * engine say: a run whose container exists is adopted (waited for under the same time limit, its
 * output read back with `docker logs`); one that had finished its container is delivered; one that
 * was still building starts over (a build is repeatable). Never throws for the run's own failures.
 */
export async function resumeRun(spec: RunSpec, deps: ExecutorDeps, opts: ExecuteOptions): Promise<RunOutcome> {
  const { engine, settings } = deps;
  const log = deps.log.child({ runId: spec.runId });
  const ws = runWorkspace(settings.workDir, spec.runId);
  const journal = await loadJournal(ws);
  const containers = (await engine.findRunContainers()).filter((c) => c.runId === spec.runId);
  if (journal === null || journal.phase === 'building') {
    log.info({ phase: journal?.phase ?? null }, 'restarting a run that had not reached its container');
    for (const c of containers) await engine.removeContainer(c.id);
    return executeRun(spec, deps, opts);
  }
  const { buildLog, runLog } = newLogCaptures(settings);
  buildLog.append(await readFile(ws.buildLog).catch(() => Buffer.alloc(0)));
  const base = {
    stamp: journal.stamp,
    imageId: journal.imageId,
    buildStartedAt: journal.buildStartedAt,
    buildMs: journal.buildMs,
  };

  if (journal.phase === 'uploading' && journal.ended) {
    log.info({}, 'delivering a run whose container had ended before the node restarted');
    runLog.append(await readFile(ws.runLog).catch(() => Buffer.alloc(0)));
    for (const c of containers) await engine.removeContainer(c.id);
    return finishRun(spec, deps, opts, {
      ...base,
      ...journal.ended,
      outputsLeftOut: journal.outputsLeftOut ?? [],
      buildLog: buildLog.toBuffer(),
      runLog: runLog.toBuffer(),
    });
  }

  const [container, ...extra] = containers;
  for (const c of extra) await engine.removeContainer(c.id);
  if (!container) {
    const reason = 'the run container was not found when the node restarted, so the run could not be finished';
    log.warn({}, reason);
    return finishRun(spec, deps, opts, {
      ...base,
      end: 'failed',
      reason,
      exitCode: null,
      startedAt: null,
      runMs: null,
      buildLog: Buffer.concat([buildLog.toBuffer(), Buffer.from(`[secd] ${reason}\n`)]),
      runLog: runLog.toBuffer(),
    });
  }
  log.info({ container: container.id, state: container.state }, 'adopting the run container');
  // The container keeps its mount of the socket's folder: a new forwarder there serves it again.
  const datasets = await prepareRunDatasets(spec, { datasetRoot: settings.datasetRoot ?? null, runDir: ws.dir });
  const signal = opts.signal;
  const cancelReason = () => (typeof signal?.reason === 'string' ? signal.reason : 'cancelled');
  const t1 = Date.now();
  let outputsLeftOut: LeftOut[] = [];
  const result = await engine.adoptContainer(
    container.id,
    { timeoutMs: spec.runforMs, stopGraceMs: settings.stopGraceMs, keepContainer: false },
    {
      onLog: (chunk) => {
        runLog.append(chunk);
        opts.onRunLog?.(chunk);
      },
      ...(signal ? { signal } : {}),
      onStarted: () => opts.onPhase('running', deps.now().toISOString()),
      onExited: async (containerId) => {
        outputsLeftOut = await collectOutputs(deps, ws, containerId);
      },
    },
  );
  const { end, reason } = describeContainerEnd(result, spec, cancelReason);
  const after = await finishRunDatasets(spec, datasets.ok ? datasets.value : null, settings);
  return finishRun(spec, deps, opts, {
    after,
    outputsLeftOut,
    ...base,
    end,
    reason,
    exitCode: result.exitCode,
    startedAt: result.startedAt,
    runMs: result.startedAt ? Math.max(0, Date.parse(result.finishedAt) - Date.parse(result.startedAt)) : Date.now() - t1,
    buildLog: buildLog.toBuffer(),
    runLog: runLog.toBuffer(),
  });
}

/** How far a run got before delivery: what run.json and the outcome are made of. */
interface Ending {
  /** Datasets and cache after the container (absent: the run never got that far on this daemon). */
  after?: DatasetsAfterRun;
  /** What collecting /outputs left out; absent or empty when nothing was (or none was collected). */
  outputsLeftOut?: LeftOut[];
  stamp: string;
  end: RunEnd;
  reason: string;
  exitCode: number | null;
  imageId: string | null;
  buildStartedAt: string | null;
  startedAt: string | null;
  buildMs: number | null;
  runMs: number | null;
  buildLog: Buffer;
  runLog: Buffer;
}

function newLogCaptures(settings: ExecutorSettings): { buildLog: LogCapture; runLog: LogCapture } {
  const half = Math.max(1024, Math.floor(settings.maxLogBytes / 2));
  return { buildLog: new LogCapture({ headBytes: half, tailBytes: half }), runLog: new LogCapture({ headBytes: half, tailBytes: half }) };
}

function describeContainerEnd(result: ContainerRunResult, spec: RunSpec, cancelReason: () => string): { end: RunEnd; reason: string } {
  switch (result.end) {
    case 'exited':
      return result.exitCode === 0
        ? { end: 'succeeded', reason: 'succeeded' }
        : {
            end: 'failed',
            reason: `the container exited with code ${result.exitCode}${result.oomKilled ? ' (killed: out of memory)' : ''}`,
          };
    case 'timed_out':
      return { end: 'timed_out', reason: `stopped at its runfor limit of ${formatHours(spec.runforMs)}` };
    case 'cancelled':
      return { end: 'cancelled', reason: cancelReason() };
    case 'start_failed':
      return { end: 'failed', reason: `the container could not start: ${result.reason ?? 'unknown error'}` };
  }
}

/**
 * Read an ended container's /outputs through the engine into the run's folder, before the container
 * goes: the node owns every file it writes there, whatever user and modes the container used. A
 * failure is listed (the run's outputs are `unreadable`), never thrown: the logs are still delivered.
 */
async function collectOutputs(deps: ExecutorDeps, ws: RunWorkspace, containerId: string): Promise<LeftOut[]> {
  const { settings } = deps;
  const caps = { maxFileBytes: settings.maxOutputFileBytes, maxTotalBytes: settings.maxOutputTotalBytes };
  try {
    // Collected again from scratch when a restarted node adopts the container.
    await rm(ws.outputs, { recursive: true, force: true });
    const tar = await deps.engine.readArchive(containerId, `${OUTPUTS_MOUNT}/.`);
    if (tar === null) return [];
    const manifest = await extractOutputsArchive(tar, ws.outputs, caps, { isReserved: isReservedForResults });
    return manifest.leftOut;
  } catch (err) {
    deps.log.child({ container: containerId }).error({ err }, 'could not collect the outputs');
    await rm(ws.outputs, { recursive: true, force: true }).catch(() => undefined);
    return [{ path: '.', reason: 'unreadable' }];
  }
}

// The executor's files in a run's folder; the node agent's spec.json and result.json are not its to remove.
async function clearExecution(ws: RunWorkspace): Promise<void> {
  for (const path of [ws.src, ws.outputs, ws.buildLog, ws.runLog, ws.journal]) await rm(path, { recursive: true, force: true });
}

/** Deliver outputs and logs (journaled first, so a restart during delivery delivers again) and say how the run ended. */
async function finishRun(spec: RunSpec, deps: ExecutorDeps, opts: ExecuteOptions, e: Ending): Promise<RunOutcome> {
  const { settings } = deps;
  const log = deps.log.child({ runId: spec.runId });
  const ws = runWorkspace(settings.workDir, spec.runId);
  const { stamp, end, exitCode, imageId, startedAt } = e;
  let reason = e.reason;
  await writeFileAtomic(ws.runLog, e.runLog).catch(() => undefined);
  await writeFileAtomic(ws.buildLog, e.buildLog).catch(() => undefined);
  await saveJournal(ws, {
    stamp,
    phase: 'uploading',
    buildStartedAt: e.buildStartedAt,
    buildMs: e.buildMs,
    imageId,
    ...(e.outputsLeftOut ? { outputsLeftOut: e.outputsLeftOut } : {}),
    ended: { end, reason, exitCode, startedAt, runMs: e.runMs },
  }).catch((err: unknown) => log.warn({ err }, 'could not journal the end of the run'));
  // The outputs are collected and the container is gone (one kept for debugging keeps its volume too:
  // removal then says false), so a failed delivery below leaves nothing of the run on the engine.
  await deps.engine.removeVolume(outputsVolumeName(spec.runId)).catch((err: unknown) => log.warn({ err }, 'could not remove the outputs volume'));

  opts.onPhase('uploading', deps.now().toISOString());
  const finishedAt = deps.now().toISOString();
  const report: Omit<RunReport, 'outputs'> = {
    run_id: spec.runId,
    project: spec.project,
    commit: spec.commit,
    user: spec.user,
    signer_fingerprint: spec.signer,
    node: settings.nodeId,
    gpus: spec.gpus,
    image_id: imageId,
    state: end,
    reason,
    exit_code: exitCode,
    created_at: spec.createdAt,
    build_started_at: e.buildStartedAt,
    started_at: startedAt,
    finished_at: finishedAt,
    timings_ms: { build: e.buildMs, run: e.runMs },
    runfor_ms: spec.runforMs,
    warnings: spec.warnings,
    ...e.after?.report,
  };
  const caps = { maxFileBytes: settings.maxOutputFileBytes, maxTotalBytes: settings.maxOutputTotalBytes };
  const delivery = {
    runId: spec.runId,
    stamp,
    outputsDir: ws.outputs,
    leftOut: e.outputsLeftOut ?? [],
    report,
    buildLog: e.buildLog,
    runLog: e.runLog,
    caps,
  };

  let branch: string | null = null;
  let outputsPath: string | null = null;
  if (opts.local) {
    const local = await writeLocalResults({ ...delivery, destRoot: opts.local.resultsRoot });
    if (!local.ok) {
      return { end: 'failed', reason: `results could not be written: ${local.reason}`, exitCode, imageId, branch: null, outputsPath: null, startedAt, finishedAt };
    }
    outputsPath = local.folder;
  } else if (spec.resultsRemote) {
    const pushed = await pushResultsBranch({ ...delivery, repoDir: ws.src, remoteUrl: spec.resultsRemote });
    if (pushed.ok) {
      branch = pushed.branch;
      outputsPath = pushed.path;
    } else if (pushed.code === 'push_rejected' && /already exists/.test(pushed.reason)) {
      // The branch carries this run's id and stamp, so only this run pushes it: a daemon stopped
      // between its push and its record of it delivered already. Exactly once, not twice.
      branch = resultsBranchName(stamp, spec.runId);
      outputsPath = `outputs/${outputsFolderName(stamp, spec.runId)}`;
      log.info({ branch }, 'results branch was already pushed before the restart');
    } else {
      log.error({ reason: pushed.reason }, 'results could not be pushed; workspace kept');
      return {
        end: 'failed',
        reason: `results could not be pushed (${pushed.reason}); the run had ${end === 'succeeded' ? 'succeeded' : `ended: ${reason}`}`,
        exitCode,
        imageId,
        branch: null,
        outputsPath: null,
        startedAt,
        finishedAt,
      };
    }
  }
  await clearExecution(ws).catch(() => undefined);
  // Empty unless a node agent keeps its spec and result there until the leader acknowledges.
  await rmdir(ws.dir).catch(() => undefined);
  if (end === 'succeeded' && branch) reason = `succeeded; results on branch ${branch}`;
  const datasetBytes = e.after?.bytes ?? null;
  return { end, reason, exitCode, imageId, branch, outputsPath, startedAt, finishedAt, ...(datasetBytes ? { datasetBytes } : {}) };
}

/** A step ended the run early, with a reason meant for the researcher. */
class StepFailure extends Error {
  constructor(
    message: string,
    readonly end: RunEnd = 'failed',
  ) {
    super(message);
  }
}

function formatHours(ms: number): string {
  const hours = ms / 3_600_000;
  return `${Number(hours.toPrecision(3))} h`;
}
