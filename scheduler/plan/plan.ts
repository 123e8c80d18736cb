/**
 * The planner: a pure function from a snapshot of the cluster to placements.
 * No clock but the `now` argument, no database, no I/O — the leader reads the snapshot in one read
 * and re-checks every placement when it applies the plan (a run moves only while still queued).
 *
 * The rules, in the order they apply:
 *
 * 1. Impossible runs. A run that needs more GPUs than the largest node of the snapshot has (up,
 *    draining or down: a node down for repair still belongs to the cluster and comes back with its
 *    GPUs), or a CPU-only run when no node takes CPU-only runs, can never start: the plan lists it
 *    as impossible with a reason and the leader rejects it. With no node known at all (a leader that
 *    has just restarted, before any node said hello) nothing is impossible: runs wait.
 * 2. Capacity. Only `up` nodes get runs. A node's free GPUs are its GPUs minus those held by running
 *    runs minus those busy with processes that are not secd's; its free CPU slots are `cpuSlots`
 *    minus its running CPU-only runs. A GPU is given to at most one run.
 * 3. Fair share. Users take turns. Each turn goes to the user with the fewest GPUs in use (running
 *    plus placed by this plan), then the fewest runs in use, then the oldest queued run, then the
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
 *    a claim would only let it jump the fair-share order.
 * 5. Where. A GPU run goes to the node with the fewest free GPUs that still fit (best fit keeps large
 *    holes whole for large runs); among nodes equally tight, one that already holds the project's
 *    image; then the lowest node id. Best fit wins when it disagrees with the image: a rebuild costs
 *    minutes, a fragmented cluster can keep an 8-GPU run waiting for hours. A CPU-only run takes one
 *    slot, so every node with a free slot fits it equally: it goes to a node holding the image, then
 *    to the node with the most free slots (spreads the load), then the lowest id. A run gets the
 *    node's free GPUs in the node's index order.
 *
 * Cost: O(R log U + R·B + P·I) for R queued runs, U users, B distinct free counts (GPUs per node),
 * P placements and I images per node, plus O(N) per claim for N nodes — no runs × nodes scan.
 */

/** A queued run as the planner sees it. */
export interface PlannedRun {
  id: string;
  user: string;
  /** The project (path with namespace); nodes report which projects' images they hold. */
  project: string;
  /** GPUs wanted (0 = a CPU-only run). */
  gpus: number;
  /** ISO-8601 time the run was queued: FIFO within a user, and how long it has waited. */
  queuedAt: string;
}

/** A run that holds a node's resources now (assigned, building, running or uploading). */
export interface RunningRun {
  id: string;
  user: string;
  nodeId: string;
  /** UUIDs of the GPUs it holds; empty for a CPU-only run (which holds one CPU slot). */
  gpus: string[];
}

/** A node as the planner sees it: what it has; the planner subtracts what is in use. */
export interface PlannedNode {
  id: string;
  state: 'up' | 'down' | 'draining';
  /** UUIDs of every GPU the node has, in index order. */
  gpus: string[];
  /** UUIDs of GPUs busy with processes that are not secd's: never given out while busy. */
  foreignBusyGpus: string[];
  /** How many CPU-only runs it runs at once (`max_cpu_runs`). */
  cpuSlots: number;
  /** Projects whose image the node already holds (a run there skips most of its build). */
  images: string[];
}

/** Input of one planning round. */
export interface PlanSnapshot {
  queued: PlannedRun[];
  running: RunningRun[];
  nodes: PlannedNode[];
}

/** Knobs of the planner. */
export interface PlanOptions {
  /** How long a GPU run waits before it claims a node (rule 4). */
  reserveAfterMs: number;
}

/** Default wait before a GPU run claims a node: ten minutes. */
export const DEFAULT_RESERVE_AFTER_MS = 10 * 60 * 1000;

/** One decision: run `runId` on `nodeId` with exactly these GPUs. */
export interface Placement {
  runId: string;
  nodeId: string;
  gpus: string[];
}

/** A waiting GPU run's claim on a node: nobody else takes GPUs there until it fits. */
export interface Reservation {
  runId: string;
  nodeId: string;
  /** The node's free GPUs held back for the run by this plan. */
  heldGpus: string[];
  /** How many more GPUs must free up there before the run fits. */
  missing: number;
}

/** Why a run can never start on this cluster. */
export type ImpossibleCode = 'more_gpus_than_any_node' | 'no_cpu_slots';

/** A run no node can ever take; the leader rejects it with `reason`. */
export interface ImpossibleRun {
  runId: string;
  code: ImpossibleCode;
  reason: string;
}

/** The result of one planning round: every queued run appears in exactly one of placements, waiting, impossible. */
export interface Plan {
  placements: Placement[];
  /** Runs that stay queued (fit no node now, or lost their turn to lighter users). */
  waiting: string[];
  /** Claims of waiting GPU runs (each run also listed in `waiting`). */
  reservations: Reservation[];
  impossible: ImpossibleRun[];
}

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
}

/** Place as many queued runs as fit, by the rules in this module's header. */
export function planRuns(snapshot: PlanSnapshot, now: Date, options: Partial<PlanOptions> = {}): Plan {
  const reserveAfterMs = options.reserveAfterMs ?? DEFAULT_RESERVE_AFTER_MS;
  const plan: Plan = { placements: [], waiting: [], reservations: [], impossible: [] };

  // Rule 1, against every node the snapshot knows.
  const largestNode = snapshot.nodes.reduce((max, n) => Math.max(max, n.gpus.length), 0);
  const anyCpuSlots = snapshot.nodes.some((n) => n.cpuSlots > 0);
  const entries: QueuedEntry[] = [];
  const all = snapshot.queued.map((run) => ({ run, queuedMs: Date.parse(run.queuedAt), decided: false }));
  for (const entry of all.sort(byQueueOrder)) {
    const impossible = snapshot.nodes.length === 0 ? null : impossibility(entry.run, largestNode, anyCpuSlots);
    if (impossible) plan.impossible.push(impossible);
    else entries.push(entry);
  }

  const cluster = new ClusterState(snapshot, new Set(entries.map((e) => e.run.project)));
  const queues = userQueues(entries, snapshot.running);

  // Rule 4: claims, lightest user first, before anyone takes a turn.
  const nowMs = now.getTime();
  for (const queue of [...queues].sort((a, b) => (userBefore(a, b) ? -1 : 1))) {
    const oldestGpuRun = queue.runs.find((e) => e.run.gpus > 0);
    if (!oldestGpuRun || nowMs - oldestGpuRun.queuedMs < reserveAfterMs) continue;
    if (cluster.fitsSomewhere(oldestGpuRun.run.gpus)) continue;
    const reservation = cluster.claim(oldestGpuRun.run);
    if (!reservation) continue;
    oldestGpuRun.decided = true;
    plan.reservations.push(reservation);
    plan.waiting.push(oldestGpuRun.run.id);
  }

  // Rule 3: fair-share turns.
  const turns = new Heap<UserQueue>(userBefore);
  for (const queue of queues) if (skipDecided(queue)) turns.push(queue);
  while (turns.size > 0) {
    const queue = turns.pop();
    const entry = queue.runs[queue.next++]!;
    entry.decided = true;
    const placement = cluster.place(entry.run);
    if (placement) {
      plan.placements.push(placement);
      queue.gpusInUse += entry.run.gpus;
      queue.runsInUse += 1;
    } else {
      plan.waiting.push(entry.run.id);
    }
    if (skipDecided(queue)) turns.push(queue);
  }
  return plan;
}

function impossibility(run: PlannedRun, largestNode: number, anyCpuSlots: boolean): ImpossibleRun | null {
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

function userQueues(entries: QueuedEntry[], running: RunningRun[]): UserQueue[] {
  const byUser = new Map<string, UserQueue>();
  for (const entry of entries) {
    let queue = byUser.get(entry.run.user);
    if (!queue) {
      queue = { user: entry.run.user, runs: [], next: 0, gpusInUse: 0, runsInUse: 0 };
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

function userBefore(a: UserQueue, b: UserQueue): boolean {
  if (a.gpusInUse !== b.gpusInUse) return a.gpusInUse < b.gpusInUse;
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

/** The cluster's free capacity while one plan is being made, with indexes for best-fit queries. */
class ClusterState {
  private readonly ids: string[];
  private readonly up: boolean[];
  private readonly freeGpus: string[][];
  private readonly capacity: number[];
  private readonly cpuFree: number[];
  private readonly images: Set<string>[];
  private readonly claimed: boolean[];
  private readonly gpuIndex: FreeBuckets;
  private readonly cpuIndex: FreeBuckets;
  private readonly gpuByProject = new Map<string, FreeBuckets>();
  private readonly cpuByProject = new Map<string, FreeBuckets>();
  /** Per node: the project indexes it belongs to (only projects with queued runs). */
  private readonly nodeGpuIndexes: FreeBuckets[][];
  private readonly nodeCpuIndexes: FreeBuckets[][];
  /**
   * Free counts only fall while a plan is made, so once a run of g GPUs fits nowhere, no later run of
   * g or more does either, and once CPU slots run out they stay out: such runs wait in O(1).
   */
  private smallestGpuMiss = Number.POSITIVE_INFINITY;
  private cpuFull = false;

  constructor(snapshot: PlanSnapshot, queuedProjects: Set<string>) {
    // Sorted by id so the plan does not depend on the order the caller listed nodes in.
    const nodes = [...snapshot.nodes].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const indexOf = new Map(nodes.map((n, i) => [n.id, i]));
    const held = new Map<number, Set<string>>();
    const cpuRunning = new Array<number>(nodes.length).fill(0);
    for (const run of snapshot.running) {
      const i = indexOf.get(run.nodeId);
      if (i === undefined) continue;
      if (run.gpus.length === 0) cpuRunning[i]!++;
      else {
        let set = held.get(i);
        if (!set) held.set(i, (set = new Set()));
        for (const g of run.gpus) set.add(g);
      }
    }
    this.ids = nodes.map((n) => n.id);
    this.up = nodes.map((n) => n.state === 'up');
    this.freeGpus = nodes.map((n, i) => {
      const heldHere = held.get(i);
      if (!heldHere && n.foreignBusyGpus.length === 0) return [...n.gpus];
      const foreign = new Set(n.foreignBusyGpus);
      return n.gpus.filter((g) => !foreign.has(g) && !heldHere?.has(g));
    });
    this.capacity = nodes.map((n) => {
      const foreign = new Set(n.foreignBusyGpus);
      return n.gpus.filter((g) => !foreign.has(g)).length;
    });
    this.cpuFree = nodes.map((n, i) => Math.max(0, n.cpuSlots - cpuRunning[i]!));
    this.images = nodes.map((n) => new Set(n.images));
    this.claimed = nodes.map(() => false);

    const gpuCount = (i: number) => this.freeGpus[i]!.length;
    const gpuOpen = (i: number) => this.up[i]! && !this.claimed[i]!;
    const cpuCount = (i: number) => this.cpuFree[i]!;
    const cpuOpen = (i: number) => this.up[i]!;
    this.gpuIndex = new FreeBuckets(gpuCount, gpuOpen);
    this.cpuIndex = new FreeBuckets(cpuCount, cpuOpen);
    this.nodeGpuIndexes = nodes.map(() => []);
    this.nodeCpuIndexes = nodes.map(() => []);
    nodes.forEach((node, i) => {
      if (!this.up[i]) return;
      this.gpuIndex.add(i);
      this.cpuIndex.add(i);
      for (const project of this.images[i]!) {
        if (!queuedProjects.has(project)) continue;
        let g = this.gpuByProject.get(project);
        if (!g) this.gpuByProject.set(project, (g = new FreeBuckets(gpuCount, gpuOpen)));
        let c = this.cpuByProject.get(project);
        if (!c) this.cpuByProject.set(project, (c = new FreeBuckets(cpuCount, cpuOpen)));
        g.add(i);
        c.add(i);
        this.nodeGpuIndexes[i]!.push(g);
        this.nodeCpuIndexes[i]!.push(c);
      }
    });
  }

  /** Whether some open node has `gpus` free GPUs now. */
  fitsSomewhere(gpus: number): boolean {
    return this.tightestFit(gpus) >= 0;
  }

  /** Take resources for a run by rule 5, or null when it fits nowhere now. */
  place(run: PlannedRun): Placement | null {
    return run.gpus > 0 ? this.placeGpuRun(run) : this.placeCpuRun(run);
  }

  /** Claim the node closest to fitting a run that fits nowhere now (rule 4). */
  claim(run: PlannedRun): Reservation | null {
    let best = -1;
    let bestImage = false;
    for (let i = 0; i < this.ids.length; i++) {
      if (!this.up[i] || this.claimed[i] || this.capacity[i]! < run.gpus) continue;
      const free = this.freeGpus[i]!.length;
      const image = this.images[i]!.has(run.project);
      const bestFree = best < 0 ? -1 : this.freeGpus[best]!.length;
      if (free > bestFree || (free === bestFree && image && !bestImage)) {
        best = i;
        bestImage = image;
      }
    }
    if (best < 0) return null;
    this.claimed[best] = true;
    const heldGpus = [...this.freeGpus[best]!];
    return { runId: run.id, nodeId: this.ids[best]!, heldGpus, missing: run.gpus - heldGpus.length };
  }

  private tightestFit(gpus: number): number {
    if (gpus >= this.smallestGpuMiss) return -1;
    const k = this.gpuIndex.tightest(gpus);
    if (k < 0) this.smallestGpuMiss = gpus;
    return k;
  }

  private placeGpuRun(run: PlannedRun): Placement | null {
    const k = this.tightestFit(run.gpus);
    if (k < 0) return null;
    let node = this.gpuByProject.get(run.project)?.lowestWith(k) ?? -1;
    if (node < 0) node = this.gpuIndex.lowestWith(k);
    const gpus = this.freeGpus[node]!.splice(0, run.gpus);
    this.gpuIndex.add(node);
    for (const index of this.nodeGpuIndexes[node]!) index.add(node);
    return { runId: run.id, nodeId: this.ids[node]!, gpus };
  }

  private placeCpuRun(run: PlannedRun): Placement | null {
    if (this.cpuFull) return null;
    let node = -1;
    const withImage = this.cpuByProject.get(run.project);
    if (withImage) {
      const k = withImage.loosest();
      if (k > 0) node = withImage.lowestWith(k);
    }
    if (node < 0) {
      const k = this.cpuIndex.loosest();
      if (k < 0) {
        this.cpuFull = true;
        return null;
      }
      node = this.cpuIndex.lowestWith(k);
    }
    this.cpuFree[node]!--;
    this.cpuIndex.add(node);
    for (const index of this.nodeCpuIndexes[node]!) index.add(node);
    return { runId: run.id, nodeId: this.ids[node]!, gpus: [] };
  }
}

/**
 * Nodes bucketed by a free count (GPUs or CPU slots), each bucket a min-heap of node indexes so ties
 * go to the lowest id. Entries are checked lazily: a node whose count changed, or that closed, is
 * dropped when met. Within one plan counts only fall and closed nodes stay closed, so a node enters
 * each bucket at most once.
 */
class FreeBuckets {
  private readonly buckets: Array<Heap<number> | undefined> = [];

  constructor(
    private readonly countOf: (node: number) => number,
    private readonly open: (node: number) => boolean,
  ) {}

  /** (Re-)file a node under its current count. */
  add(node: number): void {
    const k = this.countOf(node);
    if (k <= 0) return;
    let bucket = this.buckets[k];
    if (!bucket) this.buckets[k] = bucket = new Heap<number>((a, b) => a < b);
    bucket.push(node);
  }

  /** The lowest open node with exactly `k` free, or -1. */
  lowestWith(k: number): number {
    const bucket = this.buckets[k];
    if (!bucket) return -1;
    while (bucket.size > 0) {
      const node = bucket.peek();
      if (this.countOf(node) === k && this.open(node)) return node;
      bucket.pop();
    }
    return -1;
  }

  /** The smallest count >= `need` that some open node has, or -1. */
  tightest(need: number): number {
    for (let k = Math.max(1, need); k < this.buckets.length; k++) if (this.lowestWith(k) >= 0) return k;
    return -1;
  }

  /** The largest count any open node has (> 0), or -1. */
  loosest(): number {
    for (let k = this.buckets.length - 1; k >= 1; k--) if (this.lowestWith(k) >= 0) return k;
    return -1;
  }
}

/** A binary heap; `before(a, b)` says a comes out first. */
class Heap<T> {
  private readonly items: T[] = [];

  constructor(private readonly before: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T {
    return this.items[0]!;
  }

  push(item: T): void {
    const items = this.items;
    let i = items.push(item) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): T {
    const items = this.items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && this.before(items[l]!, items[m]!)) m = l;
        if (r < items.length && this.before(items[r]!, items[m]!)) m = r;
        if (m === i) break;
        [items[i], items[m]] = [items[m]!, items[i]!];
        i = m;
      }
    }
    return top;
  }
}
