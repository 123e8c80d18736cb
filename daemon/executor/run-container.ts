/**
 * The container steps of a run on a node: `start` (make the container from the built image,
 * journal its id before it starts), `wait` (take over a container the journal recorded, after a
 * restart) and `collect` (read its /outputs back, close the dataset socket, journal how it ended with
 * phase `uploading`). Start and wait are one road: each hands the container to the engine's
 * supervision (runfor counted from the container's own start, the cancel, its output) and then to
 * collect. The engine keeps the ended container (`keepContainer`): it is removed by `deliver` once
 * its end is journaled, so a node killed in between collects the same container again.
 *
 * endEarly is the end of a run stopped before its container ran (a failed build, a cancel, no
 * Dockerfile): its end and logs journaled as `uploading`, like any other.
 */
import { readFile } from 'node:fs/promises';
import { errorText } from '../../scheduler/common/errors.js';
import { failpoint } from '../../scheduler/common/failpoints.js';
import { cacheOwnerOf, resolveCacheDir } from '../../storage/cache-path.js';
import { DATASETS_MOUNT } from '../../storage/dataset-path.js';
import type { ContainerRunResult, RunHooks } from '../engine/container-engine.js';
import { resultsStamp } from '../results/results-stamp.js';
import { containerRequestFor } from './container-profile.js';
import { prepareOutputsVolume } from './outputs-cap.js';
import { runContainerName } from './run-build.js';
import { cancelReasonOf, collectOutputs, describeContainerEnd, withCollection, type CollectedOutputs } from './run-collection.js';
import { carried, StepFailure, type RunContext } from './run-context.js';
import { finishRunDatasets, prepareRunDatasets } from './run-datasets.js';
import { saveJournal, writeFileAtomic, type RunJournal } from './run-workspace.js';

/** A container that has ended (or never started), to be collected. */
export interface EndedContainer {
  journal: RunJournal;
  result: ContainerRunResult;
}

/**
 * Step `start`: the container from the journaled image. After a restart (`resumed`) a container of
 * this name was never journaled, so it never started: it is removed first; an image that is gone
 * meanwhile means the run starts over (null).
 */
export async function startContainer(ctx: RunContext, journal: RunJournal, resumed: boolean): Promise<EndedContainer | null> {
  const { spec, deps, ws, opts } = ctx;
  const { engine, settings } = deps;
  failpoint('node.start.begin');
  if (resumed) {
    if (journal.imageId === null || (await engine.inspectImage(journal.imageId)) === null) return null;
    await engine.removeContainer(runContainerName(spec.runId));
  }
  let cacheHostDir: string | null = null;
  if (spec.cacheDir !== null) {
    const cache = await resolveCacheDir(settings.cacheRoot, cacheOwnerOf(spec), spec.cacheDir);
    if (!cache.ok) throw new StepFailure(cache.reason);
    cacheHostDir = cache.path;
  }
  const prepared = await prepareRunDatasets(spec, { datasetRoot: settings.datasetRoot ?? null, runDir: ws.dir });
  if (!prepared.ok) throw new StepFailure(prepared.reason);
  ctx.datasets = prepared.value;
  // `secd run --dataset`: the researcher's own folders, where a node mounts its file datasets.
  const localDatasets = (opts.local?.datasets ?? []).map((d) => ({ source: d.dir, target: `${DATASETS_MOUNT}/${d.name}`, readOnly: true }));
  const request = containerRequestFor(
    spec,
    { cacheHostDir, extraMounts: [...prepared.value.mounts, ...localDatasets] },
    { imageId: journal.imageId!, memoryBytes: settings.memoryBytes, pidsLimit: settings.pidsLimit, stopGraceMs: settings.stopGraceMs },
  );
  request.name = runContainerName(spec.runId);
  request.timeoutMs = spec.runforMs - (journal.buildMs ?? 0);
  // Kept once ended: collect reads it, and deliver removes it once its end is journaled.
  request.keepContainer = true;
  const capped = await prepareOutputsVolume(spec, deps, (line) => ctx.buildLine(`[secd base-image] ${line}`));
  if (capped !== null) throw new StepFailure(capped);
  ctx.containerClockMs = deps.now().getTime();
  let current = journal;
  const result = await engine.runContainer(request, {
    ...containerHooks(ctx, () => current),
    // Journaled once created and before it starts: a container that ever ran is one recorded here.
    onCreated: async (containerId) => {
      current = { ...journal, containerId };
      await saveJournal(ws, current);
      failpoint('node.start.created');
    },
  });
  failpoint('node.wait.ended');
  return { journal: { ...journal, containerId: result.containerId ?? journal.containerId ?? null }, result };
}

/**
 * Step `wait`, after a restart: the container the journal recorded (a `secd.run` label is no proof:
 * an image's LABEL, a build step's container carry it too; a journal from before secd recorded ids
 * names it by the name only secd gives), taken over under the same limit. Gone: the run fails.
 */
export async function adoptContainer(ctx: RunContext, journal: RunJournal): Promise<EndedContainer> {
  const { spec, deps, ws, log } = ctx;
  const { engine, settings } = deps;
  failpoint('node.wait.begin');
  const labelled = (await engine.findRunContainers()).filter((c) => c.runId === spec.runId);
  const recorded = journal.containerId;
  const container = labelled.find(
    (c) => (recorded === undefined ? c.name === runContainerName(spec.runId) : c.id === recorded) && c.labels['secd.commit'] === spec.commit,
  );
  const strangers = labelled.filter((c) => c !== container);
  if (strangers.length > 0) {
    log.warn({ containers: strangers.map((c) => c.id) }, 'containers labelled with this run that the node did not make: left alone, not adopted');
  }
  if (!container) {
    const reason = 'the run container was not found when the node restarted, so the run could not be finished';
    log.warn({}, reason);
    throw new StepFailure(reason);
  }
  log.info({ container: container.id, state: container.state }, 'adopting the run container');
  // The container keeps its mount of the socket's folder: a new forwarder there serves it again.
  const datasets = await prepareRunDatasets(spec, { datasetRoot: settings.datasetRoot ?? null, runDir: ws.dir });
  ctx.datasets = datasets.ok ? datasets.value : null;
  const timeoutMs = Math.max(1, spec.runforMs - (journal.buildMs ?? 0));
  const hooks = containerHooks(ctx, () => journal);
  if (journal.stopping?.why === 'cancelled') {
    // Cancelled before the restart: the cancel is carried out now, with its reason.
    const cancel = new AbortController();
    cancel.abort(journal.stopping.reason);
    hooks.signal = cancel.signal;
  }
  const result = await engine.adoptContainer(container.id, { timeoutMs, stopGraceMs: settings.stopGraceMs, keepContainer: true }, hooks);
  failpoint('node.wait.ended');
  return { journal: { ...journal, containerId: container.id }, result };
}

/** Step `collect`: the ended container's outputs and logs into the folder, and its end journaled (`uploading`). */
export async function collectRun(ctx: RunContext, { journal, result }: EndedContainer): Promise<RunJournal> {
  const { spec, deps, ws, opts } = ctx;
  failpoint('node.collect.begin');
  let collected: CollectedOutputs | null = null;
  if (result.containerId !== null && result.end !== 'start_failed') {
    collected = await collectOutputs(spec, deps, ws, result.containerId, opts.signal);
  }
  failpoint('node.collect.collected');
  const after = await finishRunDatasets(spec, ctx.datasets, deps.settings);
  ctx.datasets = null;
  const described = withCollection(describeContainerEnd(stoppedBySecd(result, journal), spec, opts.signal), collected);
  const end = described.end;
  // A cancel journaled before a restart keeps the canceller's words.
  const reason = end === 'cancelled' && journal.stopping?.why === 'cancelled' && !opts.signal?.aborted ? journal.stopping.reason : described.reason;
  const runMs =
    ctx.containerClockMs !== null
      ? deps.now().getTime() - ctx.containerClockMs
      : result.startedAt
        ? Math.max(0, Date.parse(result.finishedAt) - Date.parse(result.startedAt))
        : null;
  await writeFileAtomic(ws.runLog, ctx.runLog.toBuffer());
  await writeFileAtomic(ws.buildLog, ctx.buildLog.toBuffer());
  failpoint('node.collect.logs-written');
  const ended: RunJournal = {
    ...carried(journal),
    phase: 'uploading',
    resultsCommits: [],
    outputsLeftOut: collected?.leftOut ?? [],
    outputsDisclosure: collected?.disclosure ?? [],
    after: { report: after.report, bytes: after.bytes },
    ended: { end, reason, exitCode: result.exitCode, startedAt: result.startedAt, runMs },
  };
  await saveJournal(ws, ended);
  failpoint('node.collect.journaled');
  return ended;
}

/** The end of a run stopped before or while it was set up (`err`: a StepFailure says why; anything else is a bug). */
export async function endEarly(ctx: RunContext, journal: RunJournal | null, err: unknown): Promise<RunJournal> {
  const { spec, deps, ws, log } = ctx;
  if (!(err instanceof StepFailure)) log.error({ err }, 'run step failed unexpectedly');
  const end = err instanceof StepFailure ? err.end : 'failed';
  const reason = errorText(err);
  ctx.buildLine(`[secd] ${reason}`);
  const after = await finishRunDatasets(spec, ctx.datasets, deps.settings);
  ctx.datasets = null;
  await writeFileAtomic(ws.runLog, ctx.runLog.toBuffer());
  await writeFileAtomic(ws.buildLog, ctx.buildLog.toBuffer());
  const ended: RunJournal = {
    ...(journal ? carried(journal) : { stamp: resultsStamp(deps.now()), buildStartedAt: null, buildMs: null, imageId: null }),
    phase: 'uploading',
    resultsCommits: [],
    after: { report: after.report, bytes: after.bytes },
    ended: { end, reason, exitCode: null, startedAt: null, runMs: null },
  };
  await saveJournal(ws, ended);
  failpoint('node.collect.journaled');
  return ended;
}

/** The build log a restarted daemon carries on with, from the folder (the run log is read back from the container, or by deliver from the folder). */
export async function reloadLogs(ctx: RunContext, journal: RunJournal): Promise<void> {
  if (journal.phase === 'building') return;
  ctx.buildLog.append(await readFile(ctx.ws.buildLog).catch(() => Buffer.alloc(0)));
}

/**
 * How the container ended, counting a stop secd journaled before a restart: a container found exited
 * with the stop signal's status (SIGTERM 143, SIGKILL 137) after secd began stopping it was stopped
 * by secd, not ended by itself.
 */
function stoppedBySecd(result: ContainerRunResult, journal: RunJournal): ContainerRunResult {
  const why = journal.stopping?.why;
  if (why === undefined || result.end !== 'exited' || (result.exitCode !== 143 && result.exitCode !== 137)) return result;
  return { ...result, end: why };
}

// The container's callbacks, the same for a run started here and one adopted after a restart.
function containerHooks(ctx: RunContext, current: () => RunJournal): RunHooks {
  const { opts, deps, ws } = ctx;
  return {
    onStopping: async (why) => {
      const reason = why === 'cancelled' ? cancelReasonOf(opts.signal) : 'runfor';
      await saveJournal(ws, { ...current(), stopping: { why, reason } });
      failpoint('node.wait.stopping');
    },
    onLog: (chunk) => {
      ctx.runLog.append(chunk);
      opts.onRunLog?.(chunk);
    },
    ...(opts.signal ? { signal: opts.signal } : {}),
    onStarted: () => {
      opts.onPhase('running', deps.now().toISOString());
      failpoint('node.start.started');
    },
  };
}
