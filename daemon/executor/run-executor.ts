/**
 * Execute one run on this node: check out the commit, build its Dockerfile, run the container under
 * the secd profile with its `runfor` limit, and deliver outputs and logs (a results branch, or a local
 * folder for `secd run`). Each step's failure becomes the run's reason; the logs are delivered even
 * when the build fails, is cancelled or times out. The delivery itself is run-delivery.ts; resumeRun
 * carries on a run after the node restarted, from its journal.
 *
 * The build counts against `runfor`: a build still going `runforMs` after the run started building
 * (checkout included) is aborted and the run ends `timed_out`, so a RUN step cannot hold a node past
 * the run's limit. The container then gets only what is left of `runforMs` after the build.
 *
 * A node whose work_dir has less free space than its disk watermark starts no run: the run fails at
 * once with a reason naming the node, its free space and the watermark (run-delivery.ts checks it
 * again while the outputs are collected).
 */
import { cp, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorText } from '../../scheduler/common/errors.js';
import { cacheOwnerOf, resolveCacheDir } from '../../storage/cache-path.js';
import { setLongTimeout } from '../engine/container-supervisor.js';
import { containerRequestFor, outputsVolumeName } from './container-profile.js';
import { baseImageVariantsIn } from '../ops/base-image-variants.js';
import type { ExecuteOptions, ExecutorDeps } from './executor-deps.js';
import { checkoutCommit } from './git-checkout.js';
import { prepareOutputsVolume } from './outputs-cap.js';
import {
  cancelReasonOf,
  clearExecution,
  containerHooks,
  describeContainerEnd,
  diskWatermarkReason,
  finishRun,
  formatHours,
  newLogCaptures,
  withCollection,
  type CollectedOutputs,
} from './run-delivery.js';
import { finishRunDatasets, prepareRunDatasets, type PreparedDatasets } from './run-datasets.js';
import { resultsStamp } from '../results/results-stamp.js';
import { loadJournal, runWorkspace, saveJournal, writeFileAtomic } from './run-workspace.js';
import type { DisclosureFinding } from '../../scheduler/contract/disclosure.js';
import type { LeftOut, RunEnd, RunOutcome, RunSpec } from '../../scheduler/contract/run-spec.js';

export type { ExecuteOptions, ExecutorDeps, ExecutorSettings } from './executor-deps.js';

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
  const clock = () => deps.now().getTime();

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
  let outputsDisclosure: DisclosureFinding[] = [];
  let collection: CollectedOutputs | null = null;
  let stopBuildClock = () => {};

  // Only the executor's own files: a node agent's spec.json (and nothing else) may already be there.
  await clearExecution(ws);
  await mkdir(ws.dir, { recursive: true, mode: 0o700 });
  // A volume left by an earlier try of this run must not carry its files into this one.
  await engine.removeVolume(outputsVolumeName(spec.runId));

  try {
    const full = await diskWatermarkReason(settings);
    if (full !== null) throw new StepFailure(`not started: ${full}`);
    opts.onPhase('building', deps.now().toISOString());
    buildStartedAt = deps.now().toISOString();
    await saveJournal(ws, { stamp, phase: 'building', buildStartedAt, buildMs: null, imageId: null, ended: null });
    const t0 = clock();
    const deadline = buildDeadline(spec.runforMs, signal);
    stopBuildClock = deadline.stop;
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
    for (const variant of baseImageVariantsIn(dockerfile)) await deps.ensureBaseImage((line) => buildLine(`[secd base-image] ${line}`), variant);
    const tag = imageTagFor(spec.project);
    const previous = await engine.inspectImage(tag);
    const build = await engine.buildImage({
      contextDir: srcDir,
      tag,
      // No build labels: with the legacy builder each LABEL is one more container per build, and a
      // per-commit label would defeat the layer cache. The container carries secd.run/commit labels.
      memoryBytes: settings.memoryBytes,
      // DESIGN §12: no network unless the node names one that reaches only its mirrors.
      networkMode: settings.buildNetwork ?? 'none',
      ...(settings.buildEnv && Object.keys(settings.buildEnv).length > 0 ? { env: settings.buildEnv } : {}),
      onLog: buildLine,
      signal: deadline.signal,
    });
    buildMs = clock() - t0;
    stopBuildClock();
    // A cancel that came first stays a cancel; the executor's clock catches a build that just made it.
    const overran = deadline.overran() || (!signal?.aborted && buildMs >= spec.runforMs);
    if (!build.ok && build.code === 'cancelled' && !overran) throw new StepFailure(cancelReasonOf(signal), 'cancelled');
    if (overran) throw new StepFailure(`the build ran past runfor (${formatHours(spec.runforMs)}): builds count against runfor`, 'timed_out');
    if (!build.ok) throw new StepFailure(`docker build failed: ${build.reason}`);
    imageId = build.imageId;
    if (previous && previous.id !== imageId) {
      // One image per project: the tag moved, so the old image would only pile up. Its layers shared
      // with the new one stay; an old image still used by a running container is kept by Docker.
      await engine.removeImage(previous.id).catch(() => false);
    }
    if (signal?.aborted) throw new StepFailure(cancelReasonOf(signal), 'cancelled');

    let cacheHostDir: string | null = null;
    if (spec.cacheDir !== null) {
      const cache = await resolveCacheDir(settings.cacheRoot, cacheOwnerOf(spec), spec.cacheDir);
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
    request.name = runContainerName(spec.runId);
    request.timeoutMs = spec.runforMs - buildMs;
    const capped = await prepareOutputsVolume(spec, deps, (line) => buildLine(`[secd base-image] ${line}`));
    if (capped !== null) throw new StepFailure(capped);
    // From here a restarted node adopts the container whose id the journal holds (resumeRun); it is
    // journaled once created and before it starts, so a container that ever ran is one recorded here.
    await writeFileAtomic(ws.buildLog, buildLog.toBuffer());
    const running = { stamp, phase: 'running' as const, buildStartedAt, buildMs, imageId, ended: null };
    await saveJournal(ws, { ...running, containerId: null });
    const t1 = clock();
    const result = await engine.runContainer(request, {
      ...containerHooks(spec, deps, ws, opts, runLog, (outputs) => ({ leftOut: outputsLeftOut, disclosure: outputsDisclosure } = collection = outputs)),
      onCreated: (containerId) => saveJournal(ws, { ...running, containerId }),
    });
    runMs = clock() - t1;
    startedAt = result.startedAt;
    exitCode = result.exitCode;
    ({ end, reason } = withCollection(describeContainerEnd(result, spec, signal), collection));
  } catch (err) {
    if (!(err instanceof StepFailure)) log.error({ err }, 'run step failed unexpectedly');
    end = err instanceof StepFailure ? err.end : 'failed';
    reason = errorText(err);
    buildLine(`[secd] ${reason}`);
  } finally {
    stopBuildClock();
  }

  // The dataset socket closes with the container; its bytes and the cache's size go into run.json.
  const after = await finishRunDatasets(spec, datasets, settings);
  return finishRun(spec, deps, opts, {
    after,
    outputsLeftOut,
    outputsDisclosure,
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
  const labelled = (await engine.findRunContainers()).filter((c) => c.runId === spec.runId);
  // A `secd.run` label is no proof (an image's LABEL, a build step's container carry it too): only the
  // container the journal recorded is this run's. A journal from before secd recorded ids names its
  // container by the name only secd gives (`secd-<run id>`).
  const recorded = journal?.containerId;
  const container = labelled.find(
    (c) => (recorded === undefined ? c.name === runContainerName(spec.runId) : c.id === recorded) && c.labels['secd.commit'] === spec.commit,
  );
  const strangers = labelled.filter((c) => c !== container);
  if (strangers.length > 0) {
    log.warn({ containers: strangers.map((c) => c.id) }, 'containers labelled with this run that the node did not make: left alone, not adopted');
  }
  if (journal === null || journal.phase === 'building' || (journal.phase === 'running' && recorded === null)) {
    log.info({ phase: journal?.phase ?? null }, 'restarting a run that had not reached its container');
    // Stopped between creating its container and journaling it: that one never started, and its name
    // (which no build step can give) must be free for the new one.
    if (journal?.phase === 'running') await engine.removeContainer(runContainerName(spec.runId));
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
    if (container) await engine.removeContainer(container.id);
    return finishRun(spec, deps, opts, {
      ...base,
      ...journal.ended,
      outputsLeftOut: journal.outputsLeftOut ?? [],
      outputsDisclosure: journal.outputsDisclosure ?? [],
      buildLog: buildLog.toBuffer(),
      runLog: runLog.toBuffer(),
    });
  }

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
  const t1 = deps.now().getTime();
  let outputsLeftOut: LeftOut[] = [];
  let outputsDisclosure: DisclosureFinding[] = [];
  let collection: CollectedOutputs | null = null;
  const result = await engine.adoptContainer(
    container.id,
    { timeoutMs: Math.max(1, spec.runforMs - (journal.buildMs ?? 0)), stopGraceMs: settings.stopGraceMs, keepContainer: false },
    containerHooks(spec, deps, ws, opts, runLog, (outputs) => ({ leftOut: outputsLeftOut, disclosure: outputsDisclosure } = collection = outputs)),
  );
  const { end, reason } = withCollection(describeContainerEnd(result, spec, opts.signal), collection);
  const after = await finishRunDatasets(spec, datasets.ok ? datasets.value : null, settings);
  return finishRun(spec, deps, opts, {
    after,
    outputsLeftOut,
    outputsDisclosure,
    ...base,
    end,
    reason,
    exitCode: result.exitCode,
    startedAt: result.startedAt,
    runMs: result.startedAt ? Math.max(0, Date.parse(result.finishedAt) - Date.parse(result.startedAt)) : deps.now().getTime() - t1,
    buildLog: buildLog.toBuffer(),
    runLog: runLog.toBuffer(),
  });
}

/** The name secd gives a run's container; no build step or image can pick a container's name. */
export function runContainerName(runId: string): string {
  return `secd-${runId}`;
}

/**
 * The signal a build runs under: aborted by the run's own cancel, or once `runforMs` has passed
 * (`overran()` then says so). `stop()` disarms the clock once the build has ended.
 */
function buildDeadline(runforMs: number, cancel: AbortSignal | undefined): { signal: AbortSignal; overran(): boolean; stop(): void } {
  const abort = new AbortController();
  let overran = false;
  const onCancel = () => abort.abort(cancel?.reason);
  cancel?.addEventListener('abort', onCancel, { once: true });
  if (cancel?.aborted) onCancel();
  const clear = setLongTimeout(() => {
    if (abort.signal.aborted) return;
    overran = true;
    abort.abort('the build ran past runfor');
  }, runforMs);
  return {
    signal: abort.signal,
    overran: () => overran,
    stop: () => {
      clear();
      cancel?.removeEventListener('abort', onCancel);
    },
  };
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
