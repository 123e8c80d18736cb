/**
 * The runs a networked node holds, kept on its disk so nothing is lost when the daemon restarts:
 * an assignment is acknowledged only once `work_dir/runs/<id>/spec.json` exists, and a result is kept
 * in `result.json` until the leader acknowledges it. After a restart, `recover()` derives every run
 * from those files and the engine (see resumeRun): finished runs report their result again, every
 * other run goes through the executor's loop again from the step its folder says it reached (the
 * container each journal recorded is adopted, never one found by its `secd.run` label alone;
 * interrupted builds start over; a delivered run only cleans up). A run whose results were not
 * delivered keeps its folder.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errorText } from '../../scheduler/common/errors.js';
import { failpoint } from '../../scheduler/common/failpoints.js';
import type { Log } from '../../scheduler/common/log.js';
import type { HeldRun } from '../../scheduler/contract/protocol.js';
import type { ExecutorDeps } from '../executor/executor-deps.js';
import { executeRun, imageTagFor, resumeRun } from '../executor/run-executor.js';
import type { RunOutcome, RunPhase, RunSpec } from '../../scheduler/contract/run-spec.js';
import { keepRunFolder, loadJournal, loadResult, loadSpec, runWorkspace, saveResult, saveSpec, writeFileAtomic } from '../executor/run-workspace.js';

const IMAGES_FILE = 'images.json';

/** Where the node's runs report (the node agent, which forwards to the leader). */
export interface NodeRunsEvents {
  phase(runId: string, phase: RunPhase, at: string): void;
  /** The run ended and its outcome is on disk; called again by nobody: pendingResults() lists it until acknowledged. */
  result(runId: string, outcome: RunOutcome): void;
}

interface Entry {
  spec: RunSpec;
  phase: HeldRun['phase'];
  outcome: RunOutcome | null;
  controller: AbortController;
}

/** The outcome of a run the node could not take or carry out: nothing ran, nothing was delivered. */
export function failedOutcome(reason: string, at: Date): RunOutcome {
  return { end: 'failed', reason, exitCode: null, imageId: null, branch: null, outputsPath: null, startedAt: null, finishedAt: at.toISOString() };
}

/** The node's runs: executing, and finished but not yet acknowledged. */
export class NodeRuns {
  private readonly runs = new Map<string, Entry>();
  private readonly tasks = new Set<Promise<void>>();
  private events: NodeRunsEvents | null = null;
  /** Projects whose image was built here and is still in the engine. */
  private readonly imageProjects = new Set<string>();

  constructor(
    private readonly deps: { executor: ExecutorDeps; workDir: string; log: Log },
  ) {}

  /** Where to report (set once, before recover() and the first assignment). */
  attach(events: NodeRunsEvents): void {
    this.events = events;
  }

  /** Re-derive every run the work dir holds: results to report again, runs to adopt or restart. */
  async recover(): Promise<void> {
    await this.recoverImages();
    const root = join(this.deps.workDir, 'runs');
    let names: string[] = [];
    try {
      names = await readdir(root);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    for (const name of names.sort()) {
      const ws = runWorkspace(this.deps.workDir, name);
      const spec = await loadSpec(ws);
      if (!spec || spec.runId !== name) {
        this.deps.log.warn({ dir: ws.dir }, 'a run folder without a readable spec: left alone');
        continue;
      }
      if (this.runs.has(spec.runId)) continue;
      const outcome = await loadResult(ws);
      if (outcome) {
        this.runs.set(spec.runId, { spec, phase: 'finished', outcome, controller: new AbortController() });
        this.deps.log.info({ runId: spec.runId, end: outcome.end }, 'result kept for the leader');
        continue;
      }
      this.deps.log.info({ runId: spec.runId }, 'resuming a run after a restart');
      this.start(spec, true);
    }
  }

  /** Take an assignment (idempotent by run id); resolves once its spec is on disk, when it may be acknowledged. */
  async assign(spec: RunSpec): Promise<void> {
    if (this.runs.has(spec.runId)) return;
    const entry: Entry = { spec, phase: 'assigned', outcome: null, controller: new AbortController() };
    this.runs.set(spec.runId, entry);
    try {
      await saveSpec(runWorkspace(this.deps.workDir, spec.runId), spec);
    } catch (err) {
      this.runs.delete(spec.runId);
      throw err;
    }
    this.start(spec, false, entry);
  }

  /** Stop a run (its partial outputs are still delivered); unknown or finished runs are ignored. */
  cancel(runId: string, reason: string): void {
    const entry = this.runs.get(runId);
    if (!entry || entry.phase === 'finished') return;
    this.deps.log.info({ runId, reason }, 'cancelling run');
    entry.controller.abort(reason);
  }

  /** The leader recorded the result: forget the run and its folder (kept aside when its results were not delivered). */
  async acknowledge(runId: string): Promise<void> {
    const entry = this.runs.get(runId);
    if (!entry || entry.phase !== 'finished') return;
    this.runs.delete(runId);
    const ws = runWorkspace(this.deps.workDir, runId);
    const undelivered = (await loadJournal(ws).catch(() => null))?.undelivered;
    if (undelivered !== undefined) {
      // Results never delivered (a push refused, a squatted branch) are not the node's to delete.
      const kept = await keepRunFolder(this.deps.workDir, runId);
      this.deps.log.warn({ runId, kept, reason: undelivered }, 'results were not delivered: their folder is kept on the node');
      return;
    }
    await rm(ws.dir, { recursive: true, force: true });
  }

  /** Every run held, for `hello`. */
  held(): HeldRun[] {
    return [...this.runs.values()].map((e) => ({ run_id: e.spec.runId, phase: e.phase, outcome: e.outcome }));
  }

  /** Finished runs whose result the leader has not acknowledged. */
  pendingResults(): Array<{ runId: string; outcome: RunOutcome }> {
    return [...this.runs.values()].filter((e) => e.outcome !== null).map((e) => ({ runId: e.spec.runId, outcome: e.outcome! }));
  }

  /** GPUs held by runs not yet finished (a process on any other GPU is not secd's). */
  gpusInUse(): Set<string> {
    const gpus = new Set<string>();
    for (const e of this.runs.values()) if (e.phase !== 'finished') for (const g of e.spec.gpus) gpus.add(g);
    return gpus;
  }

  /** Projects whose image this node holds (the leader prefers it for their runs). */
  images(): string[] {
    return [...this.imageProjects].sort();
  }

  // The list is remembered in work_dir/images.json, but only what the engine still has counts.
  private async recoverImages(): Promise<void> {
    let listed: unknown = [];
    try {
      listed = JSON.parse(await readFile(join(this.deps.workDir, IMAGES_FILE), 'utf8'));
    } catch {
      listed = [];
    }
    if (!Array.isArray(listed)) return;
    for (const project of listed) {
      if (typeof project !== 'string') continue;
      if (await this.deps.executor.engine.imageExists(imageTagFor(project)).catch(() => false)) this.imageProjects.add(project);
    }
  }

  private async rememberImage(project: string): Promise<void> {
    if (this.imageProjects.has(project)) return;
    this.imageProjects.add(project);
    await mkdir(this.deps.workDir, { recursive: true });
    await writeFileAtomic(join(this.deps.workDir, IMAGES_FILE), JSON.stringify(this.images()));
  }

  /** Wait for every execution started so far (tests). */
  async idle(): Promise<void> {
    while (this.tasks.size > 0) await Promise.allSettled([...this.tasks]);
  }

  private start(spec: RunSpec, resume: boolean, existing?: Entry): void {
    const entry: Entry = existing ?? { spec, phase: 'assigned', outcome: null, controller: new AbortController() };
    this.runs.set(spec.runId, entry);
    const ws = runWorkspace(this.deps.workDir, spec.runId);
    const opts = {
      signal: entry.controller.signal,
      onPhase: (phase: RunPhase, at: string) => {
        entry.phase = phase;
        this.events?.phase(spec.runId, phase, at);
      },
    };
    const task = (async () => {
      let outcome: RunOutcome;
      try {
        outcome = await (resume ? resumeRun(spec, this.deps.executor, opts) : executeRun(spec, this.deps.executor, opts));
      } catch (err) {
        this.deps.log.error({ err, runId: spec.runId }, 'executor crashed');
        outcome = failedOutcome(`the node failed while running it: ${errorText(err)}`, this.deps.executor.now());
      }
      failpoint('node.result.saving');
      // On disk before anyone hears of it: the result survives a restart until acknowledged.
      await saveResult(ws, outcome).catch((err: unknown) => this.deps.log.error({ err, runId: spec.runId }, 'could not save the result'));
      failpoint('node.result.saved');
      entry.phase = 'finished';
      entry.outcome = outcome;
      if (outcome.imageId) await this.rememberImage(spec.project).catch(() => undefined);
      this.deps.log.info({ runId: spec.runId, end: outcome.end, reason: outcome.reason }, 'run ended');
      this.events?.result(spec.runId, outcome);
    })().catch((err: unknown) => this.deps.log.error({ err, runId: spec.runId }, 'the run\'s end could not be recorded'));
    this.tasks.add(task);
    void task.finally(() => this.tasks.delete(task));
  }
}
