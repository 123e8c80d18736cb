/**
 * Execute one run on this node as a loop over its steps — prepare (folder, checkout), build, start,
 * wait, collect, deliver, clean — in the way opensafely's job-runner and Nomad's drivers do it: each
 * step is idempotent, and which step comes next is derived from what the run's folder (its journal),
 * the engine (its container) and the remote (its results branch) say, never remembered. A node that
 * restarts runs the same loop again (resumeRun); a fresh run starts it from nothing (executeRun).
 *
 * | journal                       | next step                                                     |
 * |-------------------------------|---------------------------------------------------------------|
 * | none, or `building`           | prepare + build, from the start (a checkout and a build repeat) |
 * | `running`, no container id    | start: the container from the journaled image (rebuilt if gone)  |
 * | `running`, container id       | wait: that container taken over, under the same runfor           |
 * | `uploading`                   | deliver: the ended run's outputs and logs, exactly once           |
 * | `delivered`                   | clean: the folder's files go; the journaled outcome is reported   |
 *
 * A step that fails ends the run with its reason (endEarly), and the logs are delivered even when the
 * build fails, is cancelled or times out. Every step boundary, and each file operation of deliver and
 * clean, is a failpoint (`node.<step>.<where>`): the kill-point tests stop the node at each in turn.
 */
import type { RunOutcome, RunSpec } from '../../scheduler/contract/run-spec.js';
import type { ExecuteOptions, ExecutorDeps } from './executor-deps.js';
import { buildRun, prepareRun } from './run-build.js';
import { adoptContainer, collectRun, endEarly, reloadLogs, startContainer } from './run-container.js';
import { runContext } from './run-context.js';
import { cleanRun, deliverRun } from './run-delivery.js';
import { loadJournal, type RunJournal } from './run-workspace.js';

export type { ExecuteOptions, ExecutorDeps, ExecutorSettings } from './executor-deps.js';
export { imageTagFor, runContainerName } from './run-build.js';

/** One of the loop's steps (see the header's table). */
export type RunStep = 'prepare' | 'start' | 'wait' | 'deliver' | 'clean';

/** The step a run whose journal says `journal` takes next. */
export function nextStep(journal: RunJournal | null): RunStep {
  if (journal === null) return 'prepare';
  switch (journal.phase) {
    case 'building':
      return 'prepare';
    case 'running':
      // Absent: a journal from before secd recorded ids; its container is found by name.
      return journal.containerId === null ? 'start' : 'wait';
    case 'uploading':
      return 'deliver';
    case 'delivered':
      return 'clean';
  }
}

/** Run `spec` to the end from nothing and say how it ended. Never throws for the run's own failures. */
export function executeRun(spec: RunSpec, deps: ExecutorDeps, opts: ExecuteOptions): Promise<RunOutcome> {
  return driveRun(spec, deps, opts, false);
}

/**
 * Carry on a run this node was executing when its daemon stopped: the same loop, from the step its
 * folder, the engine and the remote say it had reached. Never throws for the run's own failures.
 */
export function resumeRun(spec: RunSpec, deps: ExecutorDeps, opts: ExecuteOptions): Promise<RunOutcome> {
  return driveRun(spec, deps, opts, true);
}

async function driveRun(spec: RunSpec, deps: ExecutorDeps, opts: ExecuteOptions, resumed: boolean): Promise<RunOutcome> {
  const ctx = runContext(spec, deps, opts);
  let journal = resumed ? await loadJournal(ctx.ws) : null;
  if (journal !== null) {
    ctx.log.info({ phase: journal.phase, step: nextStep(journal) }, 'carrying on a run after a restart');
    await reloadLogs(ctx, journal);
  }
  // Only a restart's first start may find a container made before it; after that this daemon made everything.
  let fromRestart = resumed;
  for (;;) {
    const step = nextStep(journal);
    if (step === 'deliver') {
      const delivered = await deliverRun(ctx, journal!);
      if (delivered.outcome) return delivered.outcome;
      journal = delivered.journal;
      continue;
    }
    if (step === 'clean') return cleanRun(ctx, journal!);
    try {
      if (step === 'prepare') {
        journal = await prepareRun(ctx, journal);
        journal = await buildRun(ctx, journal);
        fromRestart = false;
      } else if (step === 'start') {
        const ended = await startContainer(ctx, journal!, fromRestart);
        fromRestart = false;
        // The image went while the node was down: the run starts over.
        journal = ended === null ? { ...journal!, phase: 'building' } : await collectRun(ctx, ended);
      } else {
        journal = await collectRun(ctx, await adoptContainer(ctx, journal!));
      }
    } catch (err) {
      journal = await endEarly(ctx, journal, err);
    }
  }
}
