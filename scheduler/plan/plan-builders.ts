/**
 * Builders and a recording harness for the planner, shared by its tests and its benchmark
 * (test/bench/planner.ts). Nothing in the leader imports this module.
 */
import {
  planRuns,
  type ImpossibleRun,
  type Plan,
  type PlanOptions,
  type PlannedNode,
  type PlannedRun,
  type PlanSnapshot,
  type RunningRun,
} from './plan.js';
import { checkPlan, type PlanCheck, type RejectedPlacement } from './plan-check.js';

/** The time builders queue runs at unless told otherwise. */
export const T0 = Date.UTC(2026, 0, 1, 0, 0, 0);

/** An hour after T0, the harness's first round: runs built with defaults are ~1 h old by then. */
export const NOW = new Date(T0 + 3_600_000);

/** A queue time `ago` ms before {@link NOW}. */
export function queuedAgo(ago: number): string {
  return new Date(NOW.getTime() - ago).toISOString();
}

/** A snapshot with nothing queued, running or known but what the test names. */
export function aSnapshot(over: Partial<PlanSnapshot>): PlanSnapshot {
  return { queued: [], running: [], nodes: [], ...over };
}

let runSeq = 0;

/** A queued run: CPU-only, user alice, project lab/alpha, queued one millisecond after the previous one. */
export function aRun(over: Partial<PlannedRun> = {}): PlannedRun {
  const n = ++runSeq;
  return {
    id: `run-${n}`,
    user: 'alice',
    project: 'lab/alpha',
    gpus: 0,
    queuedAt: new Date(T0 + n).toISOString(),
    ...over,
  };
}

/** An up node `gpu-01` with `gpus` GPUs named `<id>-g<index>`, two CPU slots and no image. */
export function aNode(over: Partial<PlannedNode> & { gpuCount?: number } = {}): PlannedNode {
  const { gpuCount, ...rest } = over;
  const id = rest.id ?? 'gpu-01';
  return {
    id,
    state: 'up',
    gpus: Array.from({ length: gpuCount ?? 0 }, (_, i) => `${id}-g${i}`),
    foreignBusyGpus: [],
    cpuSlots: 2,
    images: [],
    ...rest,
  };
}

/** A run holding resources on a node. */
export function aRunning(over: Partial<RunningRun> & Pick<RunningRun, 'nodeId'>): RunningRun {
  return { id: `running-${++runSeq}`, user: 'alice', gpus: [], ...over };
}

/** What happened to one run over the harness's rounds. */
export interface RunHistory {
  /** Round (1-based) in which the run was placed, rejected as impossible, or undefined. */
  placedInRound?: number;
  rejectedInRound?: number;
  nodeId?: string;
  gpus?: string[];
}

/**
 * A small cluster the planner runs against round after round, the way the leader does: plan, apply
 * the rejections and the placements (queued -> running) after re-checking them against the cluster as
 * it is then (plan-check.ts), let time pass and runs finish, plan again. A test can change the
 * cluster between `propose()` and `apply()`, as the world does between a snapshot and its write.
 * Every plan is recorded with the snapshot it was made from.
 */
export class PlanHarness {
  nodes: PlannedNode[];
  queued: PlannedRun[] = [];
  running: RunningRun[] = [];
  now: Date;
  readonly rounds: Array<{ now: Date; snapshot: { queued: PlannedRun[]; running: RunningRun[]; nodes: PlannedNode[] }; plan: Plan }> = [];
  readonly rejected: ImpossibleRun[] = [];
  /** Placements refused when their plan was applied (their runs stayed queued). */
  readonly refused: RejectedPlacement[] = [];
  private readonly cancelled = new Set<string>();
  private readonly history = new Map<string, RunHistory>();
  private readonly startOrder: string[] = [];

  constructor(
    init: { nodes: PlannedNode[]; queued?: PlannedRun[]; running?: RunningRun[]; now?: Date },
    private readonly options: Partial<PlanOptions> = {},
  ) {
    this.nodes = init.nodes;
    this.queued = [...(init.queued ?? [])];
    this.running = [...(init.running ?? [])];
    this.startOrder = this.running.map((r) => r.id);
    this.now = init.now ?? NOW;
  }

  /** Queue more runs. */
  submit(...runs: PlannedRun[]): void {
    this.queued.push(...runs);
  }

  /** Plan once and apply the plan; returns it. */
  plan(): Plan {
    const plan = this.propose();
    this.apply(plan);
    return plan;
  }

  /** Plan once from a snapshot of the cluster now, without applying it. */
  propose(): Plan {
    const snapshot = {
      queued: structuredClone(this.queued),
      running: structuredClone(this.running),
      nodes: structuredClone(this.nodes),
    };
    const plan = planRuns(snapshot, this.now, this.options);
    this.rounds.push({ now: this.now, snapshot, plan });
    return plan;
  }

  /** Apply the last proposed plan: impossible runs leave the queue, placements that still hold start. */
  apply(plan: Plan): PlanCheck {
    const round = this.rounds.length;
    const queued = new Map(this.queued.map((r) => [r.id, r]));
    const runningIds = new Set(this.running.map((r) => r.id));
    const check = checkPlan(plan.placements, {
      runState: (id) => (queued.has(id) ? 'queued' : runningIds.has(id) ? 'running' : this.cancelled.has(id) ? 'cancelled' : null),
      running: this.running,
      nodes: this.nodes,
    });
    for (const p of check.accepted) {
      this.running.push({ id: p.runId, user: queued.get(p.runId)!.user, nodeId: p.nodeId, gpus: p.gpus });
      this.startOrder.push(p.runId);
      this.history.set(p.runId, { placedInRound: round, nodeId: p.nodeId, gpus: p.gpus });
    }
    this.refused.push(...check.rejected);
    const impossible = plan.impossible.filter((r) => queued.has(r.runId));
    for (const r of impossible) {
      this.rejected.push(r);
      this.history.set(r.runId, { rejectedInRound: round });
    }
    const gone = new Set([...check.accepted.map((p) => p.runId), ...impossible.map((r) => r.runId)]);
    this.queued = this.queued.filter((r) => !gone.has(r.id));
    return check;
  }

  /** A queued run is cancelled (a newer push, an operator). */
  cancel(runId: string): void {
    this.queued = this.queued.filter((r) => r.id !== runId);
    this.cancelled.add(runId);
  }

  /** A running run ends and frees what it held. */
  finish(runId: string): void {
    this.running = this.running.filter((r) => r.id !== runId);
  }

  /** The `count` runs that started first end. */
  finishOldest(count = 1): string[] {
    const runningIds = new Set(this.running.map((r) => r.id));
    const ended = this.startOrder.filter((id) => runningIds.has(id)).slice(0, count);
    for (const id of ended) this.finish(id);
    return ended;
  }

  /** Let time pass. */
  advance(ms: number): void {
    this.now = new Date(this.now.getTime() + ms);
  }

  /** What happened to a run so far. */
  historyOf(runId: string): RunHistory {
    return this.history.get(runId) ?? {};
  }
}
