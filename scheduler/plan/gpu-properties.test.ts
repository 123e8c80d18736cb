/**
 * The planner's GPU promises over random clusters of mixed GPUs (fast-check): a placement never uses
 * a GPU that fails its run's request, never a MIG-mode GPU whole, never a MIG device for a plain
 * count, never a GPU that is lost, foreign-busy or held; and a run is impossible exactly when no node
 * has enough GPUs meeting its request. The checks below read the GPUs' fields directly rather than
 * asking gpu-eligibility.ts, so a wrong rule there shows here.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { planRuns, type GpuRequest, type PlannedGpu, type PlannedNode, type PlannedRun, type RunningRun } from './plan.js';
import { NOW, queuedAgo } from './plan-builders.js';

const MiB = 1024 * 1024;
const MODELS: Array<[string, number]> = [
  ['NVIDIA H100 80GB HBM3', 81559],
  ['NVIDIA A100-SXM4-40GB', 40960],
  ['NVIDIA L4', 23034],
];
const PROFILES: Array<[string, number]> = [
  ['3g.40gb', 40192],
  ['1g.10gb', 9728],
];

const gpuArb = fc.record({
  model: fc.integer({ min: 0, max: MODELS.length - 1 }),
  // MIG mode with these profiles (empty: MIG off).
  mig: fc.oneof(fc.constant<number[]>([]), fc.array(fc.integer({ min: 0, max: PROFILES.length - 1 }), { minLength: 1, maxLength: 3 })),
  // Per unit (the GPU, then its MIG devices): 0 free, 1 held, 2 foreign-busy or lost.
  use: fc.array(fc.constantFrom(0, 0, 0, 1, 2), { minLength: 4, maxLength: 4 }),
});
const requestArb: fc.Arbitrary<GpuRequest | undefined> = fc.oneof(
  fc.constant(undefined),
  fc.record({ model: fc.constantFrom('h100', 'A100', 'L4', 'V100') }, { requiredKeys: [] }),
  fc.record({ memoryBytes: fc.constantFrom(20e9, 40e9, 80e9) }),
  fc.record({ mig: fc.constantFrom('3g.40gb', '1g.10gb', '7g.80gb') }),
  fc.record({ model: fc.constantFrom('H100', 'a100'), memoryBytes: fc.constantFrom(10e9, 40e9), mig: fc.constantFrom('3g.40gb', '1g.10gb') }, { requiredKeys: ['mig'] }),
);
const clusterArb = fc.record({
  nodes: fc.array(fc.record({ gpus: fc.array(gpuArb, { maxLength: 4 }), up: fc.boolean() }), { minLength: 1, maxLength: 4 }),
  runs: fc.array(fc.record({ gpus: fc.integer({ min: 1, max: 4 }), request: requestArb, user: fc.constantFrom('ann', 'ben', 'cai') }), { maxLength: 12 }),
});

type Cluster = typeof clusterArb extends fc.Arbitrary<infer T> ? T : never;

function build(c: Cluster) {
  const nodes: PlannedNode[] = [];
  const running: RunningRun[] = [];
  const unusable = new Set<string>();
  c.nodes.forEach((n, i) => {
    const id = `n${i}`;
    const details: PlannedGpu[] = [];
    const held: string[] = [];
    n.gpus.forEach((g, j) => {
      const [name, mem] = MODELS[g.model]!;
      const parent: PlannedGpu = { uuid: `GPU-${id}-${j}`, name, memoryBytes: mem * MiB, mig: null, ...(g.mig.length ? { migMode: true } : {}) };
      const units = [parent, ...g.mig.map((p, k): PlannedGpu => ({ uuid: `MIG-${id}-${j}-${k}`, name, memoryBytes: PROFILES[p]![1] * MiB, mig: { profile: PROFILES[p]![0], gpu: parent.uuid } }))];
      units.forEach((u, k) => {
        details.push(u);
        if (g.use[k] === 1) held.push(u.uuid);
        if (g.use[k] === 2) unusable.add(u.uuid);
      });
    });
    nodes.push({
      id,
      state: n.up ? 'up' : 'down',
      gpus: details.map((d) => d.uuid),
      gpuDetails: details,
      foreignBusyGpus: details.filter((d) => unusable.has(d.uuid)).map((d) => d.uuid),
      cpuSlots: 1,
      images: [],
    });
    if (held.length) running.push({ id: `${id}-running`, user: 'zed', nodeId: id, gpus: held });
  });
  const queued: PlannedRun[] = c.runs.map((r, i) => ({
    id: `q${i}`,
    user: r.user,
    project: 'lab/a',
    gpus: r.gpus,
    ...(r.request ? { gpuRequest: r.request } : {}),
    queuedAt: queuedAgo(1000 - i),
  }));
  return { snapshot: { nodes, running, queued }, unusable, heldBefore: new Set(running.flatMap((r) => r.gpus)) };
}

// Written apart from gpu-eligibility.ts on purpose (see the header).
function fits(u: PlannedGpu, req: GpuRequest | undefined): boolean {
  if (u.migMode === true) return false;
  if (req?.mig) return u.mig !== null && u.mig.profile === req.mig.toLowerCase() && matchesRest(u, req);
  return u.mig === null && matchesRest(u, req);
}
function matchesRest(u: PlannedGpu, req: GpuRequest | undefined): boolean {
  if (req?.model && !u.name.toUpperCase().includes(req.model.toUpperCase())) return false;
  if (req?.memoryBytes !== undefined && (u.memoryBytes ?? -1) < req.memoryBytes) return false;
  return true;
}

describe('GPU promises of the planner', () => {
  it('a placement uses only free, healthy GPUs that meet its request, never a MIG-mode GPU whole, the right count', () => {
    fc.assert(
      fc.property(clusterArb, (c) => {
        const { snapshot, unusable, heldBefore } = build(c);
        const plan = planRuns(snapshot, NOW, { reserveAfterMs: 0 });
        const byUuid = new Map(snapshot.nodes.flatMap((n) => n.gpuDetails!.map((d) => [`${n.id}/${d.uuid}`, d] as const)));
        const used = new Set<string>();
        for (const p of plan.placements) {
          const run = snapshot.queued.find((r) => r.id === p.runId)!;
          expect(p.gpus).toHaveLength(run.gpus);
          for (const g of p.gpus) {
            const unit = byUuid.get(`${p.nodeId}/${g}`);
            expect(unit, `${g} is one of ${p.nodeId}'s GPUs`).toBeDefined();
            expect(fits(unit!, run.gpuRequest), `${g} meets ${JSON.stringify(run.gpuRequest ?? {})}`).toBe(true);
            expect(unit!.migMode).not.toBe(true);
            expect(unusable.has(g) || heldBefore.has(g)).toBe(false);
            expect(used.has(g)).toBe(false);
            used.add(g);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a run is impossible exactly when no node has enough GPUs meeting its request, in use or not', () => {
    fc.assert(
      fc.property(clusterArb, (c) => {
        const { snapshot } = build(c);
        const plan = planRuns(snapshot, NOW);
        const impossible = new Set(plan.impossible.map((r) => r.runId));
        for (const run of snapshot.queued) {
          const best = Math.max(0, ...snapshot.nodes.map((n) => n.gpuDetails!.filter((u) => fits(u, run.gpuRequest)).length));
          expect(impossible.has(run.id), `${run.id} asks ${run.gpus} × ${JSON.stringify(run.gpuRequest ?? {})}, best node has ${best}`).toBe(best < run.gpus);
        }
      }),
      { numRuns: 300 },
    );
  });
});
