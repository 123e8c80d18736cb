/**
 * The planner's promises over random clusters (fast-check): every run decided once, no GPU given
 * twice, claims respected, a plan re-checked against its own snapshot applied whole, the same plan
 * whatever the order, users taking turns, and nobody waiting behind another user's whole queue.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { planRuns, DEFAULT_RESERVE_AFTER_MS, type PlannedNode, type PlannedRun, type PlanSnapshot, type RunningRun } from './plan.js';
import { aNode, aRun, aRunning, aSnapshot, NOW, PlanHarness, queuedAgo } from './plan-builders.js';
import { checkPlan } from './plan-check.js';

const MIN = 60_000;

const USERS = ['ann', 'ben', 'cai', 'dee'];
const PROJECTS = ['lab/a', 'lab/b', 'lab/c'];

const nodeArb = fc.record({
  state: fc.constantFrom<'up' | 'down' | 'draining'>('up', 'up', 'up', 'down', 'draining'),
  gpus: fc.integer({ min: 0, max: 8 }),
  cpuSlots: fc.integer({ min: 0, max: 3 }),
  images: fc.subarray(PROJECTS),
  // Per GPU: 0 free, 1 held by a running run, 2 busy with a foreign process.
  use: fc.array(fc.constantFrom(0, 0, 1, 2), { minLength: 8, maxLength: 8 }),
  runningUser: fc.constantFrom(...USERS),
  cpuRunning: fc.integer({ min: 0, max: 3 }),
});
const runArb = fc.record({
  user: fc.constantFrom(...USERS),
  project: fc.constantFrom(...PROJECTS),
  gpus: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 9 })),
  waitedMs: fc.integer({ min: 0, max: 30 * MIN }),
});
const snapshotArb = fc
  .record({
    nodes: fc.array(nodeArb, { maxLength: 6 }),
    runs: fc.array(runArb, { maxLength: 40 }),
    reserveAfterMs: fc.constantFrom(0, 5 * MIN, DEFAULT_RESERVE_AFTER_MS, Number.POSITIVE_INFINITY),
  })
  .map(({ nodes, runs, reserveAfterMs }) => {
    const planned: PlannedNode[] = [];
    const running: RunningRun[] = [];
    nodes.forEach((n, i) => {
      const id = `n${i}`;
      const gpus = Array.from({ length: n.gpus }, (_, g) => `${id}-g${g}`);
      planned.push({
        id,
        state: n.state,
        gpus,
        foreignBusyGpus: gpus.filter((_, g) => n.use[g] === 2),
        cpuSlots: n.cpuSlots,
        images: n.images,
      });
      const held = gpus.filter((_, g) => n.use[g] === 1);
      if (held.length) running.push({ id: `${id}-gpu-run`, user: n.runningUser, nodeId: id, gpus: held });
      for (let c = 0; c < n.cpuRunning; c++) running.push({ id: `${id}-cpu-run-${c}`, user: n.runningUser, nodeId: id, gpus: [] });
    });
    const queued: PlannedRun[] = runs.map((r, i) => ({
      id: `q${i}`,
      user: r.user,
      project: r.project,
      gpus: r.gpus,
      queuedAt: queuedAgo(r.waitedMs),
    }));
    return { snapshot: { queued, running, nodes: planned }, reserveAfterMs };
  });

function freeGpusOf(s: PlanSnapshot, nodeId: string): string[] {
  const node = s.nodes.find((n) => n.id === nodeId)!;
  const held = new Set(s.running.filter((r) => r.nodeId === nodeId).flatMap((r) => r.gpus));
  return node.gpus.filter((g) => !held.has(g) && !node.foreignBusyGpus.includes(g));
}

function shuffled<T>(xs: T[], seed: number): T[] {
  const out = [...xs];
  let s = seed || 1;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('planner invariants (property tests)', () => {
  it('every queued run is placed, waiting or impossible exactly once; impossible only when no node is big enough', () => {
    fc.assert(
      fc.property(snapshotArb, ({ snapshot: s, reserveAfterMs }) => {
        const plan = planRuns(s, NOW, { reserveAfterMs });
        const decided = [...plan.placements.map((p) => p.runId), ...plan.waiting, ...plan.impossible.map((r) => r.runId)];
        expect(decided.sort()).toEqual(s.queued.map((r) => r.id).sort());
        const largest = Math.max(0, ...s.nodes.map((n) => n.gpus.length));
        const anyCpu = s.nodes.some((n) => n.cpuSlots > 0);
        const expectedImpossible = s.nodes.length === 0 ? [] : s.queued.filter((r) => r.gpus > largest || (r.gpus === 0 && !anyCpu));
        expect(plan.impossible.map((r) => r.runId).sort()).toEqual(expectedImpossible.map((r) => r.id).sort());
      }),
    );
  });

  it('a GPU is never given twice, nor one that is held or foreign-busy; no node gets more than it has free; only up nodes get runs', () => {
    fc.assert(
      fc.property(snapshotArb, ({ snapshot: s, reserveAfterMs }) => {
        const plan = planRuns(s, NOW, { reserveAfterMs });
        const given = plan.placements.flatMap((p) => p.gpus);
        expect(new Set(given).size).toBe(given.length);
        for (const p of plan.placements) {
          const run = s.queued.find((r) => r.id === p.runId)!;
          expect(p.gpus).toHaveLength(run.gpus);
          expect(s.nodes.find((n) => n.id === p.nodeId)!.state).toBe('up');
          const free = freeGpusOf(s, p.nodeId);
          for (const g of p.gpus) expect(free).toContain(g);
        }
        for (const node of s.nodes) {
          const cpuRunning = s.running.filter((r) => r.nodeId === node.id && r.gpus.length === 0).length;
          const cpuPlaced = plan.placements.filter((p) => p.nodeId === node.id && p.gpus.length === 0).length;
          expect(cpuPlaced).toBeLessThanOrEqual(Math.max(0, node.cpuSlots - cpuRunning));
        }
      }),
    );
  });

  it('reserved GPUs are not taken by others; one claim per user, each on its own node, for a waiting overdue run', () => {
    fc.assert(
      fc.property(snapshotArb, ({ snapshot: s, reserveAfterMs }) => {
        const plan = planRuns(s, NOW, { reserveAfterMs });
        const claimedNodes = plan.reservations.map((r) => r.nodeId);
        expect(new Set(claimedNodes).size).toBe(claimedNodes.length);
        const claimUsers = plan.reservations.map((r) => s.queued.find((q) => q.id === r.runId)!.user);
        expect(new Set(claimUsers).size).toBe(claimUsers.length);
        for (const r of plan.reservations) {
          const run = s.queued.find((q) => q.id === r.runId)!;
          expect(plan.waiting).toContain(r.runId);
          expect(NOW.getTime() - Date.parse(run.queuedAt)).toBeGreaterThanOrEqual(reserveAfterMs);
          expect(r.heldGpus).toEqual(freeGpusOf(s, r.nodeId));
          expect(r.missing).toBe(run.gpus - r.heldGpus.length);
          expect(r.missing).toBeGreaterThan(0);
          expect(plan.placements.filter((p) => p.nodeId === r.nodeId && p.gpus.length > 0)).toEqual([]);
        }
      }),
    );
  });

  it('a plan re-checked against the very snapshot it was made from is applied whole (the apply check refuses only what changed)', () => {
    fc.assert(
      fc.property(snapshotArb, ({ snapshot: s, reserveAfterMs }) => {
        const plan = planRuns(s, NOW, { reserveAfterMs });
        const queued = new Set(s.queued.map((r) => r.id));
        const check = checkPlan(plan.placements, { runState: (id) => (queued.has(id) ? 'queued' : null), running: s.running, nodes: s.nodes });
        expect(check.rejected).toEqual([]);
        expect(check.accepted).toEqual(plan.placements);
      }),
    );
  });

  it('the same snapshot gives the same plan, whatever order it lists things in, and is not modified', () => {
    fc.assert(
      fc.property(snapshotArb, fc.integer({ min: 1, max: 1 << 30 }), ({ snapshot: s, reserveAfterMs }, seed) => {
        const before = structuredClone(s);
        const plan = planRuns(s, NOW, { reserveAfterMs });
        expect(s).toEqual(before);
        expect(planRuns(structuredClone(s), NOW, { reserveAfterMs })).toEqual(plan);
        const reordered = { queued: shuffled(s.queued, seed), running: shuffled(s.running, seed + 1), nodes: shuffled(s.nodes, seed + 2) };
        expect(planRuns(reordered, NOW, { reserveAfterMs })).toEqual(plan);
      }),
    );
  });

  it('users with equal usage take turns: while one user waits, no other gets more than one run more', () => {
    const sameSize = fc.record({
      gpus: fc.constantFrom(0, 1),
      users: fc.array(fc.constantFrom(...USERS), { minLength: 1, maxLength: 40 }),
      nodes: fc.array(fc.record({ gpus: fc.integer({ min: 0, max: 8 }), cpuSlots: fc.integer({ min: 0, max: 4 }) }), { minLength: 1, maxLength: 4 }),
    });
    fc.assert(
      fc.property(sameSize, ({ gpus, users, nodes }) => {
        const queued = users.map((user, i) => aRun({ id: `q${i}`, user, gpus, queuedAt: queuedAgo((40 - i) * 1000) }));
        const planned = nodes.map((n, i) => aNode({ id: `n${i}`, gpuCount: n.gpus, cpuSlots: n.cpuSlots }));
        const plan = planRuns(aSnapshot({ queued, nodes: planned }), NOW);
        const placed = (u: string) => plan.placements.filter((p) => queued.find((q) => q.id === p.runId)!.user === u).length;
        for (const waiter of new Set(plan.waiting.map((id) => queued.find((q) => q.id === id)!.user))) {
          for (const other of USERS) expect(placed(other)).toBeLessThanOrEqual(placed(waiter) + 1);
        }
      }),
    );
  });

  it('nobody waits behind another user’s whole queue: one run behind up to 60 of another’s starts within two rounds as slots free', () => {
    const scenario = fc.record({
      size: fc.constantFrom(0, 1, 2, 4),
      nodeCount: fc.integer({ min: 1, max: 3 }),
      aliceQueue: fc.integer({ min: 1, max: 60 }),
      aliceOverdue: fc.boolean(),
    });
    fc.assert(
      fc.property(scenario, ({ size, nodeCount, aliceQueue, aliceOverdue }) => {
        // Every node is full of alice's runs of `size`; each round the oldest ends, freeing one slot.
        const nodes = Array.from({ length: nodeCount }, (_, i) => aNode({ id: `n${i}`, gpuCount: 8, cpuSlots: 2 }));
        const running: RunningRun[] = [];
        for (const node of nodes) {
          const slots = size === 0 ? node.cpuSlots : 8 / size;
          for (let s = 0; s < slots; s++) {
            running.push(aRunning({ user: 'alice', nodeId: node.id, gpus: node.gpus.slice(s * size, (s + 1) * size) }));
          }
        }
        const waited = aliceOverdue ? 3 * DEFAULT_RESERVE_AFTER_MS : MIN;
        const alice = Array.from({ length: aliceQueue }, (_, i) => aRun({ user: 'alice', gpus: size, queuedAt: queuedAgo(waited - i) }));
        const bob = aRun({ user: 'bob', gpus: size, queuedAt: NOW.toISOString() });
        const h = new PlanHarness({ nodes, running, queued: [...alice, bob], now: NOW });
        for (let round = 0; round < 2; round++) {
          h.advance(1000);
          h.finishOldest();
          h.plan();
        }
        expect(h.historyOf(bob.id).placedInRound).toBeDefined();
      }),
    );
  });
});
