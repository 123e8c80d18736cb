/**
 * What the steps of one run share while this daemon carries it: the spec, the node's deps, the
 * caller's callbacks, the run's folder and the two log captures. Nothing here is the run's state —
 * that is the journal, the folder, the container and the remote branch, read again after a restart —
 * only what a step needs to hand the next within one daemon's life (live resources such as the
 * dataset socket, and the clock of the container it started).
 */
import type { Log } from '../../scheduler/common/log.js';
import type { RunSpec } from '../../scheduler/contract/run-spec.js';
import type { ExecuteOptions, ExecutorDeps } from './executor-deps.js';
import type { LogCapture } from './log-capture.js';
import { newLogCaptures } from './run-collection.js';
import type { PreparedDatasets } from './run-datasets.js';
import { runWorkspace, type RunJournal, type RunWorkspace } from './run-workspace.js';

/** One run's steps' shared context (see the header). */
export interface RunContext {
  spec: RunSpec;
  deps: ExecutorDeps;
  opts: ExecuteOptions;
  log: Log;
  ws: RunWorkspace;
  buildLog: LogCapture;
  runLog: LogCapture;
  /** A line of the build log (the caller hears it too). */
  buildLine(line: string): void;
  /** The dataset socket this daemon serves the container (null: none, or not started by this daemon). */
  datasets: PreparedDatasets | null;
  /** When this daemon started the container (its own clock), for the run's timing; null after a restart. */
  containerClockMs: number | null;
}

/** A fresh context for `spec` (its logs empty: a step that resumes reads them back from the folder). */
export function runContext(spec: RunSpec, deps: ExecutorDeps, opts: ExecuteOptions): RunContext {
  const { buildLog, runLog } = newLogCaptures(deps.settings);
  return {
    spec,
    deps,
    opts,
    log: deps.log.child({ runId: spec.runId }),
    ws: runWorkspace(deps.settings.workDir, spec.runId),
    buildLog,
    runLog,
    buildLine: (line) => {
      buildLog.append(`${line}\n`);
      opts.onBuildLog?.(line);
    },
    datasets: null,
    containerClockMs: null,
  };
}

/** The journal fields every step carries on from the one before. */
export function carried(j: RunJournal): Pick<RunJournal, 'stamp' | 'buildStartedAt' | 'buildMs' | 'imageId'> & { containerId?: string | null } {
  return {
    stamp: j.stamp,
    buildStartedAt: j.buildStartedAt,
    buildMs: j.buildMs,
    imageId: j.imageId,
    ...(j.containerId !== undefined ? { containerId: j.containerId } : {}),
  };
}

/** A step ended the run early, with a reason meant for the researcher. */
export class StepFailure extends Error {
  constructor(
    message: string,
    readonly end: 'failed' | 'timed_out' | 'cancelled' = 'failed',
  ) {
    super(message);
  }
}
