/**
 * Known start times (rules 4 and 6 of plan.ts): `runfor` is a hard limit, so every GPU held by a
 * running run is free again by the run's start plus its `runfor` at the latest. The timeline keeps,
 * per GPU of every up node, when it is free at the latest (`availableAt`) and, once a waiting run has
 * a reservation on it, the time by which it must be free again (`deadline`, the reservation's start).
 *
 * - A reservation goes to the node where the run's GPUs are all free soonest: the `g`-th smallest
 *   `availableAt` there is its start. Its GPUs are then busy until the start plus the run's own
 *   `runfor`, so a later reservation stacks after it, never on top of it.
 * - A run placed now may take a reserved GPU that is free now (a gap) only when it ends, by its own
 *   `runfor`, at or before that GPU's deadline: EASY backfill. So no placement ever pushes a
 *   reservation's start later; GPUs no reservation needs are taken as before.
 * - A GPU whose holder has no known end (a run without `runfor`, from before runs had one) is never
 *   free as far as the timeline knows: a run waiting on it gets no start time, only a claim (plan.ts).
 *
 * A run still being built has no start time yet: it is counted as starting now, so its bound moves
 * later while the build lasts; the upload after `runfor` is not counted either. A start time is a
 * bound for the cluster as this round sees it: a node lost or a GPU taken by a foreign process
 * afterwards moves it, and the next round says so.
 *
 * Cost: O(N·G log G) per reservation for N nodes of G GPUs, O(Z·G) per backfill attempt for Z nodes
 * with gaps; both are bounded by the number of reservations one plan makes.
 */
import type { Placement, PlannedRun, Reservation, RunningRun } from './plan-types.js';

/** One GPU as the timeline sees it. */
interface Slot {
  gpu: string;
  /** Free now (not held by a run, not placed by this plan). */
  freeNow: boolean;
  /** When it is free at the latest (epoch ms; Infinity: not known). */
  availableAt: number;
  /** When it must be free again for a reservation (epoch ms; Infinity: no reservation needs it). */
  deadline: number;
}

/** Where and when a waiting run starts at the latest. */
export interface StartTime {
  nodeId: string;
  startsAtMs: number;
  /** The GPUs it starts on. */
  gpus: string[];
}

/** The latest end of a running run: its start (now, while it is still being built) plus its runfor. */
export function latestEndMs(run: Pick<RunningRun, 'startedAt' | 'runforMs'>, nowMs: number): number {
  if (run.runforMs === undefined) return Number.POSITIVE_INFINITY;
  const started = run.startedAt ? Date.parse(run.startedAt) : nowMs;
  // A run past its bound is being stopped: its GPUs free up any moment.
  return Math.max(nowMs, (Number.isNaN(started) ? nowMs : started) + run.runforMs);
}

/** The end by `runfor` of a run placed now. */
export function endIfPlacedNow(runforMs: number | undefined, nowMs: number): number {
  return runforMs === undefined ? Number.POSITIVE_INFINITY : nowMs + runforMs;
}

/** Per-GPU free times and reservation deadlines of the up nodes, for one plan. */
export class GpuTimeline {
  private readonly slots = new Map<string, Slot[]>();
  /** Nodes with a reserved GPU that is free now, in id order (where backfill looks). */
  private readonly gapNodes: string[] = [];
  private smallestUnknown = Number.POSITIVE_INFINITY;

  /**
   * `nodes`: each up node's id, its GPUs free now and its GPUs held by running runs (foreign-busy and
   * other unusable GPUs are simply not listed).
   */
  constructor(
    nodes: ReadonlyArray<{ id: string; free: readonly string[] }>,
    running: readonly RunningRun[],
    private readonly nowMs: number,
  ) {
    const heldEnd = new Map<string, Map<string, number>>();
    for (const run of running) {
      if (run.gpus.length === 0) continue;
      let ends = heldEnd.get(run.nodeId);
      if (!ends) heldEnd.set(run.nodeId, (ends = new Map()));
      const end = latestEndMs(run, nowMs);
      for (const g of run.gpus) ends.set(g, Math.max(ends.get(g) ?? 0, end));
    }
    for (const node of nodes) {
      const slots: Slot[] = node.free.map((gpu) => ({ gpu, freeNow: true, availableAt: nowMs, deadline: Infinity }));
      for (const [gpu, end] of heldEnd.get(node.id) ?? []) slots.push({ gpu, freeNow: false, availableAt: end, deadline: Infinity });
      this.slots.set(node.id, slots);
    }
  }

  /** Whether a node's GPU is free now (held by no run, placed by no plan). */
  isFreeNow(nodeId: string, gpu: string): boolean {
    return this.slots.get(nodeId)?.find((s) => s.gpu === gpu)?.freeNow ?? false;
  }

  /** A run took these GPUs now, until `endMs` at the latest. */
  placed(nodeId: string, gpus: readonly string[], endMs: number): void {
    const wanted = new Set(gpus);
    for (const slot of this.slots.get(nodeId) ?? []) {
      if (!wanted.has(slot.gpu)) continue;
      slot.freeNow = false;
      // A backfilled gap stays busy until its reservation's end too.
      slot.availableAt = Math.max(slot.availableAt, endMs);
    }
  }

  /**
   * The earliest known start of a run of `gpus` GPUs, over nodes `eligible` allows (ties: the node
   * with more of those GPUs free now, then the lowest id), or null when no node's GPUs have known ends.
   */
  earliestStart(gpus: number, eligible: (nodeId: string) => boolean): StartTime | null {
    // Free times only move later while a plan is made, and nodes only close: once no start is known
    // for g GPUs, none is for g or more (the runs without a known start then cost O(1), not a scan).
    if (gpus >= this.smallestUnknown) return null;
    let best: (StartTime & { freeNow: number }) | null = null;
    for (const [nodeId, slots] of this.slots) {
      if (slots.length < gpus || !eligible(nodeId)) continue;
      const soonest = [...slots].sort((a, b) => a.availableAt - b.availableAt).slice(0, gpus);
      const startsAtMs = soonest[gpus - 1]!.availableAt;
      if (!Number.isFinite(startsAtMs)) continue;
      const freeNow = soonest.filter((s) => s.freeNow).length;
      if (!best || startsAtMs < best.startsAtMs || (startsAtMs === best.startsAtMs && (freeNow > best.freeNow || (freeNow === best.freeNow && nodeId < best.nodeId)))) {
        best = { nodeId, startsAtMs, gpus: soonest.map((s) => s.gpu), freeNow };
      }
    }
    if (!best) this.smallestUnknown = gpus;
    return best && { nodeId: best.nodeId, startsAtMs: best.startsAtMs, gpus: best.gpus };
  }

  /**
   * Reserve `start`'s GPUs for a run of `runforMs`: they must be free by the start, and are busy from
   * then until its end. Returns those of them that are free now (gaps: the caller stops offering them
   * to runs that would not end in time).
   */
  reserve(start: StartTime, runforMs: number | undefined): string[] {
    const wanted = new Set(start.gpus);
    const end = runforMs === undefined ? Infinity : start.startsAtMs + runforMs;
    const gaps: string[] = [];
    for (const slot of this.slots.get(start.nodeId) ?? []) {
      if (!wanted.has(slot.gpu)) continue;
      if (slot.freeNow && slot.deadline === Infinity) gaps.push(slot.gpu);
      slot.deadline = Math.min(slot.deadline, start.startsAtMs);
      slot.availableAt = Math.max(slot.availableAt, end);
    }
    if (gaps.length > 0 && !this.gapNodes.includes(start.nodeId)) {
      this.gapNodes.push(start.nodeId);
      this.gapNodes.sort();
    }
    return gaps;
  }

  /**
   * Backfill: a node with gaps where a run of `gpus` GPUs ending at `endMs` fits now, using reserved
   * GPUs whose deadline it meets first and then free GPUs no reservation needs (`open(nodeId)` lists
   * those, as the cluster state offers them). The tightest such node, then the lowest id; null if none.
   */
  backfill(gpus: number, endMs: number, open: (nodeId: string) => readonly string[], eligible: (nodeId: string) => boolean): { nodeId: string; gpus: string[]; fromOpen: string[] } | null {
    if (!Number.isFinite(endMs)) return null;
    let best: { nodeId: string; gpus: string[]; fromOpen: string[]; room: number } | null = null;
    for (const nodeId of this.gapNodes) {
      if (!eligible(nodeId)) continue;
      const slots = this.slots.get(nodeId)!;
      const gaps = slots.filter((s) => s.freeNow && s.deadline !== Infinity && endMs <= s.deadline).map((s) => s.gpu);
      const openHere = open(nodeId);
      const room = gaps.length + openHere.length;
      if (room < gpus || gaps.length === 0) continue;
      if (best && room >= best.room) continue;
      const fromGaps = gaps.slice(0, gpus);
      const fromOpen = openHere.slice(0, gpus - fromGaps.length);
      best = { nodeId, gpus: [...fromGaps, ...fromOpen], fromOpen, room };
    }
    return best && { nodeId: best.nodeId, gpus: best.gpus, fromOpen: best.fromOpen };
  }
}

/** What the start times need of the cluster state (cluster-state.ts). */
export interface OpenGpus {
  upNodes(): Array<{ id: string; free: readonly string[] }>;
  /** Free whole GPUs of an up, unclaimed node; null for any other node. */
  openGpus(nodeId: string): readonly string[] | null;
  take(nodeId: string, gpus: readonly string[]): void;
}

/**
 * The planner's side of the timeline (rules 4 and 6 of plan.ts): start times for waiting runs that
 * ask for whole GPUs, backfill into the gaps those leave, and every GPU placement recorded with its end.
 */
export class KnownStarts {
  private readonly timeline: GpuTimeline;
  private readonly open = (nodeId: string): boolean => this.cluster.openGpus(nodeId) !== null;

  constructor(
    private readonly cluster: OpenGpus,
    running: readonly RunningRun[],
    private readonly nowMs: number,
  ) {
    this.timeline = new GpuTimeline(cluster.upNodes(), running, nowMs);
  }

  /** A reservation with a start time for a run of whole GPUs that fits nowhere now, or null when no start is known. */
  reserve(run: Pick<PlannedRun, 'id' | 'gpus' | 'runforMs'>): Reservation | null {
    if (run.gpus <= 0) return null;
    const start = this.timeline.earliestStart(run.gpus, this.open);
    if (!start) return null;
    const gaps = this.timeline.reserve(start, run.runforMs);
    this.cluster.take(start.nodeId, gaps);
    const free = new Set(gaps);
    // Held: its GPUs free now, whether this reservation or an earlier one keeps them free.
    const heldGpus = start.gpus.filter((g) => free.has(g) || this.timeline.isFreeNow(start.nodeId, g));
    return {
      runId: run.id,
      nodeId: start.nodeId,
      heldGpus,
      missing: run.gpus - heldGpus.length,
      startsAt: new Date(start.startsAtMs).toISOString(),
      gpus: start.gpus,
    };
  }

  /** A run of whole GPUs that ends in time placed into reserved GPUs free now (EASY backfill), or null. */
  backfill(run: Pick<PlannedRun, 'id' | 'gpus' | 'runforMs'>): Placement | null {
    if (run.gpus <= 0) return null;
    const end = endIfPlacedNow(run.runforMs, this.nowMs);
    const fit = this.timeline.backfill(run.gpus, end, (id) => this.cluster.openGpus(id) ?? [], this.open);
    if (!fit) return null;
    this.cluster.take(fit.nodeId, fit.fromOpen);
    this.timeline.placed(fit.nodeId, fit.gpus, end);
    return { runId: run.id, nodeId: fit.nodeId, gpus: fit.gpus };
  }

  /** A placement made elsewhere: its GPUs are busy until the run's end by `runfor`. */
  placed(placement: Placement, runforMs: number | undefined): void {
    if (placement.gpus.length > 0) this.timeline.placed(placement.nodeId, placement.gpus, endIfPlacedNow(runforMs, this.nowMs));
  }
}
