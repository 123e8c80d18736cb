/**
 * The cluster's free capacity while one plan is made (rules 2, 4 and 5 of plan.ts), indexed so that
 * best-fit and most-free queries never scan runs × nodes. Lives only for one `planRuns` call.
 */
import { FreeBuckets } from './free-buckets.js';
import type { Placement, PlanSnapshot, PlannedRun, Reservation } from './plan-types.js';

/** The cluster's free capacity while one plan is being made, with indexes for best-fit queries. */
export class ClusterState {
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
