/**
 * The node that `secd up` runs inside the leader's process: the same executor and on-disk runs a
 * networked node drives, and the same messages about itself (`hello`, and a `status` every
 * `report_interval_ms`, built by daemon/telemetry/node-report.ts exactly as `secd node` builds them),
 * handed straight to the leader instead of over a websocket. The leader reads them as it reads any
 * node's (daemon/wiring/up.ts adapts this node to the lifecycle's node handle).
 */
import type { Log } from '../../scheduler/common/log.js';
import { errorText } from '../../scheduler/common/errors.js';
import { PROTOCOL_VERSION, type HelloMessage, type StatusMessage } from '../../scheduler/contract/protocol.js';
import { failedOutcome, NodeRuns } from './node-runs.js';
import type { RunOutcome, RunPhase, RunSpec } from '../../scheduler/contract/run-spec.js';
import type { ExecutorDeps } from '../executor/run-executor.js';
import { readInventory, readStatus, type NodeSensors } from '../telemetry/node-report.js';

/** Where the node reports what it observes (the leader, in-process). */
export interface NodeReports {
  onPhase(nodeId: string, runId: string, phase: RunPhase, at: string): void;
  /** May answer once the result is recorded; `false`: it was not (the run stays unacknowledged). */
  onResult(nodeId: string, runId: string, outcome: RunOutcome): void | Promise<boolean | void>;
  /** Each status, as a networked node would send it. */
  onStatus(nodeId: string, status: StatusMessage): void;
}

/** What the in-process node is given besides its executor. */
export interface LocalNodeOptions {
  hostname: string;
  maxCpuRuns: number;
  reportIntervalMs: number;
  sensors: NodeSensors;
  log: Log;
  now(): Date;
}

/** The in-process node of `secd up`. */
export class LocalNode {
  // The same on-disk runs as `secd node`: a restarted `secd up` adopts its containers too.
  private readonly runs: NodeRuns;
  private reports: NodeReports | null = null;
  private inventory: HelloMessage['inventory'] = { gpus: [], cpus: 0, memory_bytes: 0 };
  private lastStatus: StatusMessage | null = null;
  private reportTimer: NodeJS.Timeout | null = null;
  private sampling = false;

  constructor(
    readonly id: string,
    executor: ExecutorDeps,
    private readonly opts: LocalNodeOptions,
  ) {
    this.runs = new NodeRuns({ executor, workDir: executor.settings.workDir, log: opts.log });
    this.runs.attach({
      phase: (runId, phase, at) => this.reports?.onPhase(this.id, runId, phase, at),
      result: (runId, outcome) => this.deliver(runId, outcome),
    });
  }

  /** Read the inventory and a first status, then report every `reportIntervalMs` until `stopReporting()`. */
  async startReporting(): Promise<void> {
    this.inventory = await readInventory(this.opts.sensors).catch(() => this.inventory);
    await this.report();
    this.reportTimer ??= setInterval(() => void this.report(), this.opts.reportIntervalMs);
    this.reportTimer.unref();
  }

  /** Stop sampling (runs go on until `close()`). */
  stopReporting(): void {
    if (this.reportTimer) clearInterval(this.reportTimer);
    this.reportTimer = null;
  }

  /** Connect the node to the leader (they need each other, so this happens after both exist). */
  attach(reports: NodeReports): void {
    this.reports = reports;
  }

  /** What a networked node would say on connecting: its inventory, and every run it holds. */
  hello(): HelloMessage {
    return {
      type: 'hello',
      protocol: PROTOCOL_VERSION,
      node_id: this.id,
      hostname: this.opts.hostname,
      inventory: this.inventory,
      max_cpu_runs: this.opts.maxCpuRuns,
      runs: this.runs.held(),
      images: this.runs.images(),
    };
  }

  /** The last status report, or null before the first. */
  status(): StatusMessage | null {
    return this.lastStatus;
  }

  /**
   * After a restart: re-derive the runs the work dir holds (adopting their containers) and say which
   * in a hello, as a networked node would; results that were never recorded are delivered after it.
   */
  async recover(): Promise<HelloMessage> {
    await this.runs.recover();
    const hello = this.hello();
    // After the caller has told the lifecycle what is held (the hello comes before the results).
    setImmediate(() => {
      for (const { runId, outcome } of this.runs.pendingResults()) this.deliver(runId, outcome);
    });
    return hello;
  }

  /** Projects whose image this node holds. */
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

  /** Start a run; idempotent by run id. */
  assign(spec: RunSpec): void {
    if (!this.reports) throw new Error('LocalNode.assign before attach');
    this.runs.assign(spec).catch((err: unknown) => {
      this.opts.log.error({ err, runId: spec.runId }, 'could not take the run');
      this.reports?.onResult(this.id, spec.runId, failedOutcome(`the node could not take the run: ${errorText(err)}`, this.opts.now()));
    });
  }

  /** Stop a run; its partial outputs are still delivered. */
  cancel(runId: string, reason: string): void {
    this.runs.cancel(runId, reason);
  }

  /** Cancel everything and wait for the executions to deliver what they have. */
  async close(reason = 'secd is shutting down'): Promise<void> {
    this.stopReporting();
    for (const runId of this.runIds()) this.runs.cancel(runId, reason);
    await this.runs.idle();
  }

  /** Wait for every execution started so far. */
  async idle(): Promise<void> {
    await this.runs.idle();
  }

  // One sample at a time; GPUs found only after start (a slow driver) are picked up then.
  private async report(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      const status = await readStatus(this.opts.sensors, { now: () => this.opts.now(), ours: () => this.runs.gpusInUse(), log: this.opts.log });
      if (this.inventory.gpus.length === 0 && status.gpus.length > 0) {
        this.inventory = await readInventory(this.opts.sensors).catch(() => this.inventory);
      }
      this.lastStatus = status;
      this.reports?.onStatus(this.id, status);
    } catch (err) {
      this.opts.log.warn({ err }, 'could not sample this machine');
    } finally {
      this.sampling = false;
    }
  }

  // In-process, "sent" is "recorded": the result is acknowledged once the lifecycle has stored it.
  // One it could not store keeps its run folder: the next start reports it again (recover()).
  private deliver(runId: string, outcome: RunOutcome): void {
    if (!this.reports) return;
    void Promise.resolve(this.reports.onResult(this.id, runId, outcome))
      .then((recorded) => (recorded === false ? undefined : this.runs.acknowledge(runId)))
      .catch((err: unknown) => this.opts.log.warn({ err, runId }, 'could not remove a run folder'));
  }
}
