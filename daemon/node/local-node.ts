/**
 * The node that `secd up` runs inside the leader's process: the same executor a networked node
 * drives, reporting phases and results straight to the lifecycle instead of over a websocket.
 */
import { errorText } from '../../scheduler/common/errors.js';
import type { Log } from '../../scheduler/common/log.js';
import type { NodeHandle } from '../../scheduler/lifecycle/run-lifecycle.js';
import type { HeldRun } from '../../scheduler/contract/protocol.js';
import { NodeRuns } from './node-runs.js';
import type { RunOutcome, RunPhase, RunSpec } from '../../scheduler/contract/run-spec.js';
import type { ExecutorDeps } from '../executor/run-executor.js';

/** Where the node reports what it observes (the lifecycle, in-process). */
export interface NodeReports {
  onPhase(nodeId: string, runId: string, phase: RunPhase, at: string): void;
  onResult(nodeId: string, runId: string, outcome: RunOutcome): void;
}

/** The in-process node of `secd up`. */
export class LocalNode implements NodeHandle {
  // The same on-disk runs as `secd node`: a restarted `secd up` adopts its containers too.
  private readonly runs: NodeRuns;
  private reports: NodeReports | null = null;

  constructor(
    readonly id: string,
    executor: ExecutorDeps,
    private readonly opts: { maxCpuRuns: number; gpus: () => string[]; foreignBusyGpus?: () => string[]; log: Log },
  ) {
    this.runs = new NodeRuns({ executor, workDir: executor.settings.workDir, log: opts.log });
    this.runs.attach({
      phase: (runId, phase, at) => this.reports?.onPhase(this.id, runId, phase, at),
      result: (runId, outcome) => this.deliver(runId, outcome),
    });
  }

  /** Connect the node to the lifecycle (they need each other, so this happens after both exist). */
  attach(reports: NodeReports): void {
    this.reports = reports;
  }

  /**
   * After a restart: re-derive the runs the work dir holds (adopting their containers) and say which,
   * as a networked node's hello would; results that were never recorded are delivered now.
   */
  async recover(): Promise<Array<{ runId: string; phase: HeldRun['phase'] }>> {
    await this.runs.recover();
    const held = this.runs.held().map((h) => ({ runId: h.run_id, phase: h.phase }));
    // After the caller has told the lifecycle what is held (the hello comes before the results).
    setImmediate(() => {
      for (const { runId, outcome } of this.runs.pendingResults()) this.deliver(runId, outcome);
    });
    return held;
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

  images(): string[] {
    return this.runs.images();
  }

  /** Runs being executed now. */
  runIds(): string[] {
    return this.runs
      .held()
      .filter((h) => h.phase !== 'finished')
      .map((h) => h.run_id);
  }

  assign(spec: RunSpec): void {
    if (!this.reports) throw new Error('LocalNode.assign before attach');
    this.runs.assign(spec).catch((err: unknown) => {
      this.opts.log.error({ err, runId: spec.runId }, 'could not take the run');
      this.reports?.onResult(this.id, spec.runId, {
        end: 'failed',
        reason: `the node could not take the run: ${errorText(err)}`,
        exitCode: null,
        imageId: null,
        branch: null,
        outputsPath: null,
        startedAt: null,
        finishedAt: new Date().toISOString(),
      });
    });
  }

  cancel(runId: string, reason: string): void {
    this.runs.cancel(runId, reason);
  }

  /** Cancel everything and wait for the executions to deliver what they have. */
  async close(reason = 'secd is shutting down'): Promise<void> {
    for (const runId of this.runIds()) this.runs.cancel(runId, reason);
    await this.runs.idle();
  }

  /** Wait for every execution started so far. */
  async idle(): Promise<void> {
    await this.runs.idle();
  }

  // In-process, "sent" is "recorded": the result is acknowledged as soon as the lifecycle has it.
  private deliver(runId: string, outcome: RunOutcome): void {
    if (!this.reports) return;
    this.reports.onResult(this.id, runId, outcome);
    void this.runs.acknowledge(runId).catch((err: unknown) => this.opts.log.warn({ err, runId }, 'could not remove a run folder'));
  }
}
