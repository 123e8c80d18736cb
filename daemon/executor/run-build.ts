/**
 * The first two steps of a run on a node, `prepare` and `build`, repeated whole after a restart (a
 * journal that says `building` starts over here: a checkout and a build are repeatable, and half of
 * one is worth nothing).
 *
 * prepare: whatever an earlier try left (the executor's files, a container made but never started,
 * the outputs volume) is removed, the journal says `building`, and the commit is checked out.
 * build: the base image, then the project's Dockerfile; the image id and the build time are
 * journaled with phase `running` before any container exists.
 *
 * The build counts against `runfor`: a build still going `runforMs` after the run started building
 * (checkout included) is aborted and the run ends `timed_out`. A node whose work_dir has less free
 * space than its disk watermark starts no run.
 */
import { cp, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { failpoint } from '../../scheduler/common/failpoints.js';
import { setLongTimeout } from '../engine/container-supervisor.js';
import { baseImageVariantsIn } from '../ops/base-image-variants.js';
import { resultsStamp } from '../results/results-stamp.js';
import { outputsVolumeName } from './container-profile.js';
import { checkoutCommit } from './git-checkout.js';
import { cancelReasonOf, diskWatermarkReason, formatHours } from './run-collection.js';
import { StepFailure, type RunContext } from './run-context.js';
import { saveJournal, writeFileAtomic, type RunJournal, type RunWorkspace } from './run-workspace.js';

const BUILD_EXCLUDES = new Set(['.git', 'outputs', '.secd']);

/** Docker repository name for a project's image (one tag per project keeps the layer cache warm). */
export function imageTagFor(project: string): string {
  const slug = project.toLowerCase().replace(/[^a-z0-9._/-]+/g, '-').replace(/\/+/g, '/').replace(/^[-./]+|[-./]+$/g, '');
  return `secd-project/${slug || 'project'}:latest`;
}

/** The name secd gives a run's container; no build step or image can pick a container's name. */
export function runContainerName(runId: string): string {
  return `secd-${runId}`;
}

/** Removes the executor's files in a run's folder; the node agent's spec.json and result.json are not its to remove. */
export async function clearExecution(ws: RunWorkspace): Promise<void> {
  for (const path of [ws.src, ws.outputs, ws.buildLog, ws.runLog, ws.journal]) await rm(path, { recursive: true, force: true });
}

/** Step `prepare`: a clean folder and engine for this run, the journal at `building`, the commit checked out. */
export async function prepareRun(ctx: RunContext, earlier: RunJournal | null): Promise<RunJournal> {
  const { spec, deps, ws, opts } = ctx;
  failpoint('node.prepare.begin');
  // A container by this name was made and never journaled, so it never started; the volume may
  // hold an earlier try's files, which must not reach this one.
  await deps.engine.removeContainer(runContainerName(spec.runId));
  await deps.engine.removeVolume(outputsVolumeName(spec.runId));
  await clearExecution(ws);
  await mkdir(ws.dir, { recursive: true, mode: 0o700 });
  // The stamp names the results branch: kept across a start-over, so a run has one name.
  const journal: RunJournal = { stamp: earlier?.stamp ?? resultsStamp(deps.now()), phase: 'building', buildStartedAt: deps.now().toISOString(), buildMs: null, imageId: null, ended: null };
  await saveJournal(ws, journal);
  failpoint('node.prepare.journaled');
  const full = await diskWatermarkReason(deps.settings);
  if (full !== null) throw new StepFailure(`not started: ${full}`);
  opts.onPhase('building', deps.now().toISOString());
  if (opts.local) {
    // Entry by entry, not the folder at once: with `secd run .` the work dir (./.secd) is inside the
    // project, and fs.cp refuses to copy a folder into itself before any filter is asked.
    const from = opts.local.dir;
    await mkdir(ws.src, { recursive: true });
    for (const entry of await readdir(from)) {
      // A work_dir configured inside the project is not part of it either.
      if (BUILD_EXCLUDES.has(entry) || ws.src.startsWith(`${join(from, entry)}/`)) continue;
      await cp(join(from, entry), join(ws.src, entry), { recursive: true, verbatimSymlinks: true });
    }
  } else {
    await checkoutCommit(spec.source, spec.commit, ws.src);
  }
  failpoint('node.prepare.checked-out');
  return journal;
}

/** Step `build`: the project's image, journaled (phase `running`, no container yet) once built. */
export async function buildRun(ctx: RunContext, journal: RunJournal): Promise<RunJournal> {
  const { spec, deps, ws, opts } = ctx;
  const { engine, settings } = deps;
  const signal = opts.signal;
  failpoint('node.build.begin');
  const dockerfile = await readFile(join(ws.src, 'Dockerfile'), 'utf8').catch(() => null);
  if (dockerfile === null) throw new StepFailure('no Dockerfile at the root of the project');
  const t0 = Date.parse(journal.buildStartedAt ?? deps.now().toISOString());
  const deadline = buildDeadline(spec.runforMs - (deps.now().getTime() - t0), signal);
  let buildMs: number;
  let imageId: string;
  // Old images of the node's projects are removed only between builds (image-janitor.ts).
  const buildEnded = deps.images ? await deps.images.begin() : () => {};
  try {
    for (const variant of baseImageVariantsIn(dockerfile)) await deps.ensureBaseImage((line) => ctx.buildLine(`[secd base-image] ${line}`), variant);
    const tag = imageTagFor(spec.project);
    const previous = await engine.inspectImage(tag);
    const buildOnce = () =>
      engine.buildImage({
        contextDir: ws.src,
        tag,
        // No build labels: with the legacy builder each LABEL is one more container per build, and a
        // per-commit label would defeat the layer cache. The container carries secd.run/commit labels.
        memoryBytes: settings.memoryBytes,
        // DESIGN §12: no network unless the node names one that reaches only its mirrors.
        networkMode: settings.buildNetwork ?? 'none',
        ...(settings.buildEnv && Object.keys(settings.buildEnv).length > 0 ? { env: settings.buildEnv } : {}),
        onLog: ctx.buildLine,
        signal: deadline.signal,
      });
    let build = await buildOnce();
    // A cached layer this build was about to build on can be removed under it when another build on
    // the same engine replaces its project's old image (the legacy builder shares layers by content):
    // the engine then says "unable to find image sha256:…". Once more finds or rebuilds that layer.
    if (!build.ok && build.code !== 'cancelled' && /unable to find image "?sha256:/.test(build.reason) && !deadline.signal.aborted) {
      ctx.buildLine(`[secd] a cached layer went away during the build (${build.reason}); building once more`);
      build = await buildOnce();
    }
    buildMs = deps.now().getTime() - t0;
    deadline.stop();
    // A cancel that came first stays a cancel; the executor's clock catches a build that just made it.
    const overran = deadline.overran() || (!signal?.aborted && buildMs >= spec.runforMs);
    if (!build.ok && build.code === 'cancelled' && !overran) throw new StepFailure(cancelReasonOf(signal), 'cancelled');
    if (overran) throw new StepFailure(`the build ran past runfor (${formatHours(spec.runforMs)}): builds count against runfor`, 'timed_out');
    if (!build.ok) throw new StepFailure(`docker build failed: ${build.reason}`);
    imageId = build.imageId;
    if (previous && previous.id !== imageId) {
      // One image per project: the tag moved, so the old image would only pile up. Its layers shared
      // with the new one stay; an old image still used by a running container is kept by Docker.
      if (deps.images) deps.images.retire(previous.id);
      else await engine.removeImage(previous.id).catch(() => false);
    }
  } finally {
    deadline.stop();
    buildEnded();
  }
  failpoint('node.build.built');
  if (signal?.aborted) throw new StepFailure(cancelReasonOf(signal), 'cancelled');
  await writeFileAtomic(ws.buildLog, ctx.buildLog.toBuffer());
  const built: RunJournal = { stamp: journal.stamp, phase: 'running', buildStartedAt: journal.buildStartedAt, buildMs, imageId, containerId: null, ended: null };
  await saveJournal(ws, built);
  failpoint('node.build.journaled');
  return built;
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
