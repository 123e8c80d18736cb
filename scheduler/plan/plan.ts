/**
 * The planner: a pure function from a snapshot of the cluster to placements.
 * No clock but the `now` argument, no database, no I/O — the leader reads the snapshot in one read
 * transaction and, in one write transaction, re-checks every placement against the state as it is
 * then (plan-check.ts: run still queued, node still up, GPUs still free) before applying it.
 *
 * The rules, in the order they apply:
 *
 * 1. Impossible runs. A run that needs more GPUs than the largest node of the snapshot has (up,
 *    draining or down: a node down for repair still belongs to the cluster and comes back with its
 *    GPUs), or a CPU-only run when no node takes CPU-only runs, can never start: the plan lists it
 *    as impossible with a reason and the leader rejects it. With no node known at all (a leader that
 *    has just restarted, before any node said hello) nothing is impossible: runs wait. A run asking
 *    for a GPU model, memory or MIG profile counts only the GPUs that meet it (gpu-eligibility.ts),
 *    and a plain count only whole GPUs: a MIG-mode GPU is never given whole.
 * 2. Capacity. Only `up` nodes get runs. A node's free GPUs are its GPUs minus those held by running
 *    runs minus those busy with processes that are not secd's; its free CPU slots are `cpuSlots`
 *    minus its running CPU-only runs. A GPU is given to at most one run.
 * 3. Fair share. Users take turns. Each turn goes to the user with the smallest share: decayed
 *    GPU-hours of what they ran (`snapshot.usage`, fair-share.ts: halving every half-life) plus
 *    `inUseGpuHours` for each GPU in use (running plus placed by this plan); then the fewest runs in
 *    use, then the oldest queued run, then the
 *    user name, and considers that user's oldest undecided run (FIFO within a user). A run that does
 *    not fit waits and the user's next run is considered on their next turn, so smaller runs and
 *    CPU-only runs backfill around a waiting GPU run. Every placement raises the placed user's
 *    usage, so the next free slot goes to a user with less in use: nobody waits behind another
 *    user's whole queue.
 * 4. Claims (reported as reservations). Backfill alone can starve a large run: small runs keep taking
 *    the GPUs it waits for. So before the turns, each user's oldest GPU run, once it has waited
 *    `reserveAfterMs` and fits on no node, claims one node: of the up nodes with enough GPUs of their
 *    own, the one with the most free GPUs (closest to fitting). No other run, GPU or CPU-only, takes
 *    GPUs there (its CPU slots stay open), so its free GPUs accumulate round after round until the
 *    run fits; then the run takes its fair-share turn like any other. One claim per user, handed out
 *    lightest user first, so an old backlog cannot freeze the cluster. A run that fits gets no claim:
 *    a claim would only let it jump the fair-share order. Where every GPU the run waits for has a
 *    known end (running runs carry `startedAt` and `runforMs`), the claim is a reservation with a
 *    start time instead, and holds no node idle: rule 6.
 * 5. Where. A GPU run goes to the node with the fewest free GPUs that still fit (best fit keeps large
 *    holes whole for large runs); among nodes equally tight, one that already holds the project's
 *    image; then the lowest node id. Best fit wins when it disagrees with the image: a rebuild costs
 *    minutes, a fragmented cluster can keep an 8-GPU run waiting for hours. A CPU-only run takes one
 *    slot, so every node with a free slot fits it equally: it goes to a node holding the image, then
 *    to the node with the most free slots (spreads the load), then the lowest id. A run gets the
 *    node's free GPUs in the node's index order.
 * 6. Known start times (reservations.ts). `runfor` is a hard limit, so each GPU is free again by a
 *    known time. A reservation gets the node where the run's GPUs are all free soonest, and that
 *    time as its `startsAt`; besides each user's overdue run (rule 4), the first
 *    `headReservations` GPU runs that fail their turn get one (EASY backfill: the head of the line).
 *    A later run may take a reserved GPU that is free now only if it ends, by its own `runfor`,
 *    by that reservation's start (it is tried there first: the gap would idle otherwise); GPUs no
 *    reservation needs are taken by rule 5. So no run placed by a plan delays a reservation.
 *    `waiting` lists the runs in line order: reservations first, then as their turns came.
 *
 * Cost: O(R log U + R·B + P·I) for R queued runs, U users, B distinct free counts (GPUs per node),
 * P placements and I images per node, plus O(N) per claim for N nodes — no runs × nodes scan —
 * and O(N·G log G) per start time, O(Z·G) per backfill try over the Z nodes with reserved gaps.
 */
import { ClusterState } from './cluster-state.js';
import { eligibleGpus, gpuShortfall, isPlainRequest } from './gpu-eligibility.js';
import { Heap } from './heap.js';
import { KnownStarts } from './reservations.js';
import type { ImpossibleRun, Plan, PlanOptions, PlanSnapshot, PlannedRun, Reservation, RunningRun } from './plan-types.js';

export type {
  GpuRequest,
  ImpossibleCode,
  ImpossibleRun,
  Placement,
  Plan,
  PlannedGpu,
  PlannedNode,
  PlannedRun,
  PlanOptions,
  PlanSnapshot,
  Reservation,
  RunningRun,
} from './plan-types.js';

/** Default wait before a GPU run claims a node: ten minutes. */
export const DEFAULT_RESERVE_AFTER_MS = 10 * 60 * 1000;

/** Default number of head-of-line start times (rule 6): EASY backfill's one. */
export const DEFAULT_HEAD_RESERVATIONS = 1;

/** Default weight of a GPU in use in the fair-share order: one GPU-hour (rule 3). */
export const DEFAULT_IN_USE_GPU_HOURS = 1;

interface QueuedEntry {
  run: PlannedRun;
  queuedMs: number;
  decided: boolean;
}

interface UserQueue {
  user: string;
  runs: QueuedEntry[];
  next: number;
  gpusInUse: number;
  runsInUse: number;
  /** Decayed GPU-hours of what the user ran (fair-share.ts). */
  usage: number;
}

/** Place as many queued runs as fit, by the rules in this module's header. */
export function planRuns(snapshot: PlanSnapshot, now: Date, options: Partial<PlanOptions> = {}): Plan {
  const reserveAfterMs = options.reserveAfterMs ?? DEFAULT_RESERVE_AFTER_MS;
  let headReservations = options.headReservations ?? DEFAULT_HEAD_RESERVATIONS;
  const inUseGpuHours = options.inUseGpuHours ?? DEFAULT_IN_USE_GPU_HOURS;
  const userBefore = (a: UserQueue, b: UserQueue) => turnBefore(a, b, inUseGpuHours);
  const plan: Plan = { placements: [], waiting: [], reservations: [], impossible: [] };

  // Rule 1, against every node the snapshot knows.
  const largestNode = snapshot.nodes.reduce((max, n) => Math.max(max, eligibleGpus(n, undefined).length), 0);
  const anyCpuSlots = snapshot.nodes.some((n) => n.cpuSlots > 0);
  const entries: QueuedEntry[] = [];
  const all = snapshot.queued.map((run) => ({ run, queuedMs: Date.parse(run.queuedAt), decided: false }));
  for (const entry of all.sort(byQueueOrder)) {
    const impossible = snapshot.nodes.length === 0 ? null : impossibility(entry.run, snapshot, largestNode, anyCpuSlots);
    if (impossible) plan.impossible.push(impossible);
    else entries.push(entry);
  }

  const cluster = new ClusterState(snapshot, new Set(entries.map((e) => e.run.project)));
  const queues = userQueues(entries, snapshot.running, snapshot.usage ?? {});

  // Rules 4 and 6, before anyone takes a turn: each user's overdue GPU run gets a start time where
  // every GPU it waits for has a known end, oldest run first (so a start time is pushed back only by
  // older runs, never by newer ones: none starves); the others claim a node, lightest user first.
  const nowMs = now.getTime();
  const starts = new KnownStarts(cluster, snapshot.running, nowMs);
  const hold = (entry: QueuedEntry, reservation: Reservation) => {
    entry.decided = true;
    plan.reservations.push(reservation);
    plan.waiting.push(entry.run.id);
  };
  const overdue = [...queues]
    .sort((a, b) => (userBefore(a, b) ? -1 : 1))
    .flatMap((queue) => queue.runs.find((e) => e.run.gpus > 0) ?? [])
    .filter((e) => nowMs - e.queuedMs >= reserveAfterMs);
  for (const entry of [...overdue].sort(byQueueOrder)) {
    if (!isPlainRequest(entry.run.gpuRequest) || entry.run.runforMs === undefined) continue;
    if (cluster.fitsSomewhere(entry.run)) {
      // Its start time has come: it starts now, before the turns, or the GPUs it waited for would go
      // to lighter users and its start would slip round after round.
      const placement = cluster.place(entry.run);
      if (!placement) continue;
      entry.decided = true;
      starts.placed(placement, entry.run.runforMs);
      plan.placements.push(placement);
      const queue = queues.find((q) => q.user === entry.run.user)!;
      queue.gpusInUse += entry.run.gpus;
      queue.runsInUse += 1;
      continue;
    }
    const reservation = starts.reserve(entry.run);
    if (reservation) hold(entry, reservation);
  }
  for (const entry of overdue) {
    if (entry.decided || cluster.fitsSomewhere(entry.run)) continue;
    const reservation = cluster.claim(entry.run);
    if (reservation) hold(entry, reservation);
  }

  // Rule 3: fair-share turns.
  const turns = new Heap<UserQueue>(userBefore);
  for (const queue of queues) if (skipDecided(queue)) turns.push(queue);
  while (turns.size > 0) {
    const queue = turns.pop();
    const entry = queue.runs[queue.next++]!;
    entry.decided = true;
    const plain = isPlainRequest(entry.run.gpuRequest);
    const placement = (plain ? starts.backfill(entry.run) : null) ?? cluster.place(entry.run);
    if (placement) {
      starts.placed(placement, entry.run.runforMs);
      plan.placements.push(placement);
      queue.gpusInUse += entry.run.gpus;
      queue.runsInUse += 1;
    } else {
      const reservation = headReservations > 0 && plain ? starts.reserve(entry.run) : null;
      if (reservation) {
        plan.reservations.push(reservation);
        headReservations--;
      }
      plan.waiting.push(entry.run.id);
    }
    if (skipDecided(queue)) turns.push(queue);
  }
  return plan;
}

function impossibility(run: PlannedRun, snapshot: PlanSnapshot, largestNode: number, anyCpuSlots: boolean): ImpossibleRun | null {
  if (run.gpus > 0 && !isPlainRequest(run.gpuRequest)) {
    const shortfall = gpuShortfall(snapshot.nodes, run.gpus, run.gpuRequest);
    return shortfall === null ? null : { runId: run.id, code: 'no_matching_gpus', reason: shortfall };
  }
  if (run.gpus > largestNode) {
    const asks = `asks for ${run.gpus} GPU${run.gpus === 1 ? '' : 's'}`;
    const has = largestNode === 0 ? 'no node has a GPU' : `the largest node has ${largestNode}`;
    return { runId: run.id, code: 'more_gpus_than_any_node', reason: `${asks} but ${has}` };
  }
  if (run.gpus === 0 && !anyCpuSlots) {
    return { runId: run.id, code: 'no_cpu_slots', reason: 'asks for no GPU but no node takes CPU-only runs' };
  }
  return null;
}

function userQueues(entries: QueuedEntry[], running: RunningRun[], usage: Record<string, number>): UserQueue[] {
  const byUser = new Map<string, UserQueue>();
  for (const entry of entries) {
    let queue = byUser.get(entry.run.user);
    if (!queue) {
      queue = { user: entry.run.user, runs: [], next: 0, gpusInUse: 0, runsInUse: 0, usage: usage[entry.run.user] ?? 0 };
      byUser.set(entry.run.user, queue);
    }
    queue.runs.push(entry);
  }
  for (const run of running) {
    const queue = byUser.get(run.user);
    if (!queue) continue; // a user with nothing queued takes no turn
    queue.gpusInUse += run.gpus.length;
    queue.runsInUse += 1;
  }
  return [...byUser.values()];
}

/** Move the queue's cursor past runs already decided; false when none is left. */
function skipDecided(queue: UserQueue): boolean {
  while (queue.next < queue.runs.length && queue.runs[queue.next]!.decided) queue.next++;
  return queue.next < queue.runs.length;
}

function turnBefore(a: UserQueue, b: UserQueue, inUseGpuHours: number): boolean {
  const aShare = a.usage + a.gpusInUse * inUseGpuHours;
  const bShare = b.usage + b.gpusInUse * inUseGpuHours;
  if (aShare !== bShare) return aShare < bShare;
  if (a.runsInUse !== b.runsInUse) return a.runsInUse < b.runsInUse;
  const aHead = a.runs[a.next]!.queuedMs;
  const bHead = b.runs[b.next]!.queuedMs;
  if (aHead !== bHead) return aHead < bHead;
  return a.user < b.user;
}

function byQueueOrder(a: QueuedEntry, b: QueuedEntry): number {
  if (a.queuedMs !== b.queuedMs) return a.queuedMs - b.queuedMs;
  return a.run.id < b.run.id ? -1 : a.run.id > b.run.id ? 1 : 0;
}
