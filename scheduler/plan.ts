/**
 * The planner: a pure function from a snapshot of queued runs and nodes to placements.
 * No clock, no database, no I/O — the leader reads the snapshot in one transaction and
 * re-checks every placement when it applies the plan.
 */

/** A queued run as the planner sees it. */
export interface PlannedRun {
  id: string;
  user: string;
  /** GPUs wanted (0 = a CPU-only run). */
  gpus: number;
  /** ISO-8601 time the run was queued; FIFO within a user. */
  queuedAt: string;
}

/** A node as the planner sees it. */
export interface PlannedNode {
  id: string;
  state: 'up' | 'down' | 'draining';
  /** UUIDs of GPUs not held by any run and not busy with foreign processes, in index order. */
  freeGpus: string[];
  /** How many more CPU-only runs it may start. */
  freeCpuSlots: number;
}

/** Input of one planning round. */
export interface PlanSnapshot {
  queued: PlannedRun[];
  nodes: PlannedNode[];
}

/** One decision: run `runId` on `nodeId` with exactly these GPUs. */
export interface Placement {
  runId: string;
  nodeId: string;
  gpus: string[];
}

/** The result of one planning round. */
export interface Plan {
  placements: Placement[];
  /** Runs that fit no node now (they stay queued). */
  waiting: string[];
}

/**
 * Place as many queued runs as fit. Users take turns (round robin, oldest first within a user), so
 * nobody waits behind another user's whole queue; GPUs go to the node that fits most tightly.
 */
export function planRuns(snapshot: PlanSnapshot, _now: Date): Plan {
  const nodes = snapshot.nodes
    .filter((n) => n.state === 'up')
    .map((n) => ({ id: n.id, freeGpus: [...n.freeGpus], freeCpuSlots: n.freeCpuSlots }));
  const byUser = new Map<string, PlannedRun[]>();
  for (const run of [...snapshot.queued].sort(byQueuedAt)) {
    const list = byUser.get(run.user) ?? [];
    list.push(run);
    byUser.set(run.user, list);
  }
  // Users ordered by their oldest queued run, so the longest-waiting user goes first.
  const queues = [...byUser.values()];
  const placements: Placement[] = [];
  const waiting: string[] = [];
  let round = 0;
  let progressed = true;
  while (progressed) {
    progressed = false;
    for (const queue of queues) {
      const run = queue[round];
      if (!run) continue;
      progressed = true;
      const placement = placeOne(run, nodes);
      if (placement) placements.push(placement);
      else waiting.push(run.id);
    }
    round++;
  }
  return { placements, waiting };
}

function placeOne(run: PlannedRun, nodes: Array<{ id: string; freeGpus: string[]; freeCpuSlots: number }>): Placement | null {
  if (run.gpus === 0) {
    const node = nodes.find((n) => n.freeCpuSlots > 0);
    if (!node) return null;
    node.freeCpuSlots--;
    return { runId: run.id, nodeId: node.id, gpus: [] };
  }
  let best: (typeof nodes)[number] | undefined;
  for (const node of nodes) {
    if (node.freeGpus.length < run.gpus) continue;
    if (!best || node.freeGpus.length < best.freeGpus.length) best = node;
  }
  if (!best) return null;
  const gpus = best.freeGpus.splice(0, run.gpus);
  return { runId: run.id, nodeId: best.id, gpus };
}

function byQueuedAt(a: PlannedRun, b: PlannedRun): number {
  return a.queuedAt < b.queuedAt ? -1 : a.queuedAt > b.queuedAt ? 1 : a.id < b.id ? -1 : 1;
}
