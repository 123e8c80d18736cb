/**
 * Execute one run on this node: check out the commit, build its Dockerfile, run the container under
 * the secd profile with its `runfor` limit, and deliver outputs and logs (a results branch, or a local
 * folder for `secd run`). Each step's failure becomes the run's reason; the logs are delivered even
 * when the build fails, is cancelled or times out.
 */
import { chmod, cp, mkdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Log } from '../scheduler/log.js';
import { resolveCacheDir } from '../storage/cache-path.js';
import type { ContainerEngine } from './container-engine.js';
import { containerRequestFor } from './container-profile.js';
import { dockerfileUsesBaseImage } from './base-image.js';
import { checkoutCommit } from './git-checkout.js';
import { LogCapture } from './log-capture.js';
import { pushResultsBranch, writeLocalResults } from './results-branch.js';
import { resultsStamp } from './results-stamp.js';
import type { RunEnd, RunOutcome, RunPhase, RunReport, RunSpec } from './run-spec.js';

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
  const workspace = resolve(settings.workDir, 'runs', spec.runId);
  const srcDir = join(workspace, 'src');
  const outputsDir = join(workspace, 'outputs');
  const half = Math.max(1024, Math.floor(settings.maxLogBytes / 2));
  const buildLog = new LogCapture({ headBytes: half, tailBytes: half });
  const runLog = new LogCapture({ headBytes: half, tailBytes: half });
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

  await rm(workspace, { recursive: true, force: true });
  await mkdir(outputsDir, { recursive: true });
  // The image's user may not be root: /outputs must be writable whoever it is.
  await chmod(outputsDir, 0o777);

  try {
    opts.onPhase('building', deps.now().toISOString());
    buildStartedAt = deps.now().toISOString();
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
    const request = containerRequestFor(
      spec,
      { outputsDir, cacheHostDir },
      { imageId, memoryBytes: settings.memoryBytes, pidsLimit: settings.pidsLimit, stopGraceMs: settings.stopGraceMs },
    );
    request.name = `secd-${spec.runId}`;
    const t1 = Date.now();
    const result = await engine.runContainer(request, {
      onLog: (chunk) => {
        runLog.append(chunk);
        opts.onRunLog?.(chunk);
      },
      ...(signal ? { signal } : {}),
      onStarted: () => opts.onPhase('running', deps.now().toISOString()),
    });
    runMs = Date.now() - t1;
    startedAt = result.startedAt;
    exitCode = result.exitCode;
    switch (result.end) {
      case 'exited':
        end = result.exitCode === 0 ? 'succeeded' : 'failed';
        reason =
          result.exitCode === 0
            ? 'succeeded'
            : `the container exited with code ${result.exitCode}${result.oomKilled ? ' (killed: out of memory)' : ''}`;
        break;
      case 'timed_out':
        end = 'timed_out';
        reason = `stopped at its runfor limit of ${formatHours(spec.runforMs)}`;
        break;
      case 'cancelled':
        end = 'cancelled';
        reason = cancelReason();
        break;
      case 'start_failed':
        end = 'failed';
        reason = `the container could not start: ${result.reason ?? 'unknown error'}`;
        break;
    }
  } catch (err) {
    if (!(err instanceof StepFailure)) log.error({ err }, 'run step failed unexpectedly');
    end = err instanceof StepFailure ? err.end : 'failed';
    reason = err instanceof Error ? err.message : String(err);
    buildLine(`[secd] ${reason}`);
  }

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
    build_started_at: buildStartedAt,
    started_at: startedAt,
    finished_at: finishedAt,
    timings_ms: { build: buildMs, run: runMs },
    runfor_ms: spec.runforMs,
    warnings: spec.warnings,
  };
  const caps = { maxFileBytes: settings.maxOutputFileBytes, maxTotalBytes: settings.maxOutputTotalBytes };
  const delivery = {
    runId: spec.runId,
    stamp,
    outputsDir,
    report,
    buildLog: buildLog.toBuffer(),
    runLog: runLog.toBuffer(),
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
    const pushed = await pushResultsBranch({ ...delivery, repoDir: srcDir, remoteUrl: spec.resultsRemote });
    if (pushed.ok) {
      branch = pushed.branch;
      outputsPath = pushed.path;
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
  await rm(workspace, { recursive: true, force: true }).catch(() => undefined);
  if (end === 'succeeded' && branch) reason = `succeeded; results on branch ${branch}`;
  return { end, reason, exitCode, imageId, branch, outputsPath, startedAt, finishedAt };
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
