/**
 * The node that `secd up` runs inside the leader's process: the same executor a networked node
 * drives, reporting phases and results straight to the lifecycle instead of over a websocket.
 */
import type { Log } from '../scheduler/log.js';
import type { NodeHandle } from '../scheduler/run-lifecycle.js';
import type { RunOutcome, RunPhase, RunSpec } from './run-spec.js';
import { executeRun, type ExecutorDeps } from './run-executor.js';

/** Where the node reports what it observes (the lifecycle, in-process). */
export interface NodeReports {
  onPhase(nodeId: string, runId: string, phase: RunPhase, at: string): void;
  onResult(nodeId: string, runId: string, outcome: RunOutcome): void;
}

/** The in-process node of `secd up`. */
export class LocalNode implements NodeHandle {
  private readonly running = new Map<string, AbortController>();
  private readonly finished = new Set<string>();
  private readonly tasks = new Set<Promise<void>>();
  private reports: NodeReports | null = null;

  constructor(
    readonly id: string,
    private readonly executor: ExecutorDeps,
    private readonly opts: { maxCpuRuns: number; gpus: () => string[]; foreignBusyGpus?: () => string[]; log: Log },
  ) {}

  /** Connect the node to the lifecycle (they need each other, so this happens after both exist). */
  attach(reports: NodeReports): void {
    this.reports = reports;
  }

  state(): 'up' {
    return 'up';
  }

  gpus(): string[] {
    return this.opts.gpus();
  }

  foreignBusyGpus(): string[] {
    return this.opts.foreignBusyGpus?.() ?? [];
  }

  cpuSlots(): number {
    return this.opts.maxCpuRuns;
  }

  /** Runs being executed now. */
  runIds(): string[] {
    return [...this.running.keys()];
  }

  assign(spec: RunSpec): void {
    if (this.running.has(spec.runId) || this.finished.has(spec.runId)) return;
    const reports = this.reports;
    if (!reports) throw new Error('LocalNode.assign before attach');
    const controller = new AbortController();
    this.running.set(spec.runId, controller);
    const task = executeRun(spec, this.executor, {
      signal: controller.signal,
      onPhase: (phase, at) => reports.onPhase(this.id, spec.runId, phase, at),
    })
      .catch((err: unknown): RunOutcome => {
        this.opts.log.error({ err, runId: spec.runId }, 'executor crashed');
        return {
          end: 'failed',
          reason: `the node failed while running it: ${err instanceof Error ? err.message : String(err)}`,
          exitCode: null,
          imageId: null,
          branch: null,
          outputsPath: null,
          startedAt: null,
          finishedAt: new Date().toISOString(),
        };
      })
      .then((outcome) => {
        this.running.delete(spec.runId);
        this.finished.add(spec.runId);
        reports.onResult(this.id, spec.runId, outcome);
      });
    this.tasks.add(task);
    void task.finally(() => this.tasks.delete(task));
  }

  cancel(runId: string, reason: string): void {
    this.running.get(runId)?.abort(reason);
  }

  /** Cancel everything and wait for the executions to deliver what they have. */
  async close(reason = 'secd is shutting down'): Promise<void> {
    for (const controller of this.running.values()) controller.abort(reason);
    await Promise.allSettled([...this.tasks]);
  }

  /** Wait for every execution started so far. */
  async idle(): Promise<void> {
    while (this.tasks.size > 0) await Promise.allSettled([...this.tasks]);
  }
}
