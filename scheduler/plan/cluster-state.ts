/**
 * The cluster's free capacity while one plan is made (rules 2, 4 and 5 of plan.ts), indexed so that
 * best-fit and most-free queries never scan runs × nodes. Lives only for one `planRuns` call.
 */
import { FreeBuckets } from './free-buckets.js';
import { gpuMeets, gpuUnitsOf, isPlainRequest } from './gpu-eligibility.js';
import type { Placement, PlanSnapshot, PlannedGpu, PlannedRun, Reservation } from './plan-types.js';

/** The cluster's free capacity while one plan is being made, with indexes for best-fit queries. */
export class ClusterState {
  private readonly ids: string[];
  private readonly up: boolean[];
  /** Per node: free whole GPUs (what a plain `gpu: n` takes), in index order; the buckets count these. */
  private readonly freeGpus: string[][];
  /** Per node: free MIG devices, in index order (only runs asking for a profile take them). */
  private readonly freeMig: string[][];
  /** Per node: what each GPU and MIG device is (gpu-eligibility.ts). */
  private readonly units: Map<string, PlannedGpu>[];
  /** Per node: GPUs and MIG devices not foreign-busy, lost or in error (what it could free up for a claim). */
  private readonly usable: PlannedGpu[][];
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
    // A node under its disk watermark keeps its runs and gets no new one until it has room again.
    this.up = nodes.map((n) => n.state === 'up' && n.diskLow === undefined);
    // A GPU is free when it is usable (not foreign-busy, lost or in error) and no run holds it;
    // whole GPUs and MIG devices are kept apart (gpu-eligibility.ts: a plain count gets no slice).
    this.units = nodes.map((n) => new Map(gpuUnitsOf(n).map((u) => [u.uuid, u])));
    this.usable = nodes.map((n, i) => {
      const foreign = new Set(n.foreignBusyGpus);
      return [...this.units[i]!.values()].filter((u) => !foreign.has(u.uuid));
    });
    const free = (i: number) => this.usable[i]!.filter((u) => !held.get(i)?.has(u.uuid));
    this.freeGpus = nodes.map((_, i) => free(i).filter((u) => gpuMeets(u, undefined)).map((u) => u.uuid));
    this.freeMig = nodes.map((_, i) => free(i).filter((u) => u.mig !== null && !u.migMode).map((u) => u.uuid));
    this.capacity = nodes.map((_, i) => this.usable[i]!.filter((u) => gpuMeets(u, undefined)).length);
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

  /** Whether some open node has free GPUs for `run` now. */
  fitsSomewhere(run: PlannedRun): boolean {
    return isPlainRequest(run.gpuRequest) ? this.tightestFit(run.gpus) >= 0 : this.constrainedFit(run) !== null;
  }

  /** Take resources for a run by rule 5, or null when it fits nowhere now. */
  place(run: PlannedRun): Placement | null {
    if (run.gpus === 0) return this.placeCpuRun(run);
    return isPlainRequest(run.gpuRequest) ? this.placeGpuRun(run) : this.placeConstrainedRun(run);
  }

  /** Claim the node closest to fitting a run that fits nowhere now (rule 4). */
  claim(run: PlannedRun): Reservation | null {
    let best = -1;
    let bestFree: string[] = [];
    let bestImage = false;
    for (let i = 0; i < this.ids.length; i++) {
      if (!this.up[i] || this.claimed[i] || this.capacityFor(i, run) < run.gpus) continue;
      const free = this.freeFor(i, run);
      const image = this.images[i]!.has(run.project);
      if (best < 0 || free.length > bestFree.length || (free.length === bestFree.length && image && !bestImage)) {
        best = i;
        bestFree = free;
        bestImage = image;
      }
    }
    if (best < 0) return null;
    this.claimed[best] = true;
    return { runId: run.id, nodeId: this.ids[best]!, heldGpus: [...bestFree], missing: run.gpus - bestFree.length };
  }

  // How many GPUs meeting the run's request the node could ever free up (usable ones, held or not).
  private capacityFor(i: number, run: PlannedRun): number {
    if (isPlainRequest(run.gpuRequest)) return this.capacity[i]!;
    return this.usable[i]!.filter((u) => gpuMeets(u, run.gpuRequest)).length;
  }

  // The node's free GPUs (or MIG devices) that meet the run's request, in index order.
  private freeFor(i: number, run: PlannedRun): string[] {
    if (isPlainRequest(run.gpuRequest)) return this.freeGpus[i]!;
    const pool = run.gpuRequest?.mig !== undefined ? this.freeMig[i]! : this.freeGpus[i]!;
    return pool.filter((uuid) => gpuMeets(this.units[i]!.get(uuid)!, run.gpuRequest));
  }

  /**
   * Rule 5 for a run that asks for a model, memory or MIG profile: the open node with the fewest
   * free GPUs meeting the request that still fit, then one with the image, then the lowest id. A
   * scan of the nodes (O(N·G)) rather than the buckets, which count whole GPUs only.
   */
  private constrainedFit(run: PlannedRun): { node: number; free: string[] } | null {
    let best: { node: number; free: string[]; image: boolean } | null = null;
    for (let i = 0; i < this.ids.length; i++) {
      if (!this.up[i] || this.claimed[i]) continue;
      const free = this.freeFor(i, run);
      if (free.length < run.gpus) continue;
      const image = this.images[i]!.has(run.project);
      if (best === null || free.length < best.free.length || (free.length === best.free.length && image && !best.image)) {
        best = { node: i, free, image };
      }
    }
    return best;
  }

  private placeConstrainedRun(run: PlannedRun): Placement | null {
    const fit = this.constrainedFit(run);
    if (!fit) return null;
    const node = fit.node;
    const taken = new Set(fit.free.slice(0, run.gpus));
    if (run.gpuRequest?.mig !== undefined) {
      this.freeMig[node] = this.freeMig[node]!.filter((g) => !taken.has(g));
    } else {
      // Whole GPUs: the buckets count them, so the node is filed again under its new count.
      const left = this.freeGpus[node]!.filter((g) => !taken.has(g));
      this.freeGpus[node]!.splice(0, this.freeGpus[node]!.length, ...left);
      this.gpuIndex.add(node);
      for (const index of this.nodeGpuIndexes[node]!) index.add(node);
    }
    return { runId: run.id, nodeId: this.ids[node]!, gpus: [...taken] };
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

  // Known start times (reservations.ts) ask for these three.

  /** The up nodes, each with its free whole GPUs in index order (where reservations are planned). */
  upNodes(): Array<{ id: string; free: readonly string[] }> {
    return this.ids.flatMap((id, i) => (this.up[i] ? [{ id, free: [...this.freeGpus[i]!] }] : []));
  }

  /** Free whole GPUs of a node that is up and not claimed, in index order; null for any other node. */
  openGpus(nodeId: string): readonly string[] | null {
    const i = this.indexOf(nodeId);
    return i >= 0 && this.up[i]! && !this.claimed[i]! ? this.freeGpus[i]! : null;
  }

  /** Stop offering these free GPUs of a node: reserved for a later start, or taken by a backfilled run. */
  take(nodeId: string, gpus: readonly string[]): void {
    const i = this.indexOf(nodeId);
    if (i < 0 || gpus.length === 0) return;
    const taken = new Set(gpus);
    const left = this.freeGpus[i]!.filter((g) => !taken.has(g));
    this.freeGpus[i]!.splice(0, this.freeGpus[i]!.length, ...left);
    this.gpuIndex.add(i);
    for (const index of this.nodeGpuIndexes[i]!) index.add(i);
  }

  private indexOf(nodeId: string): number {
    if (!this.byId) this.byId = new Map(this.ids.map((id, i) => [id, i]));
    return this.byId.get(nodeId) ?? -1;
  }

  private byId: Map<string, number> | undefined;
}
