import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { planRuns, type PlannedNode, type PlannedRun } from './plan.js';

let seq = 0;
const aRun = (over: Partial<PlannedRun> = {}): PlannedRun => ({
  id: `run-${++seq}`,
  user: 'alice',
  gpus: 0,
  queuedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
  ...over,
});
const aNode = (over: Partial<PlannedNode> = {}): PlannedNode => ({
  id: 'gpu-01',
  state: 'up',
  freeGpus: [],
  freeCpuSlots: 2,
  ...over,
});
const now = new Date('2026-01-01T00:00:00Z');

describe('planRuns', () => {
  it('a GPU run gets GPUs from the node that fits most tightly', () => {
    const run = aRun({ gpus: 1 });
    const plan = planRuns(
      { queued: [run], nodes: [aNode({ id: 'big', freeGpus: ['a', 'b', 'c'] }), aNode({ id: 'small', freeGpus: ['d'] })] },
      now,
    );
    expect(plan.placements).toEqual([{ runId: run.id, nodeId: 'small', gpus: ['d'] }]);
  });

  it('a user with many queued runs does not make another user wait behind all of them', () => {
    const alice = [1, 2, 3].map(() => aRun({ user: 'alice' }));
    const bob = aRun({ user: 'bob' });
    const plan = planRuns({ queued: [...alice, bob], nodes: [aNode({ freeCpuSlots: 2 })] }, now);
    expect(plan.placements.map((p) => p.runId)).toEqual([alice[0]!.id, bob.id]);
    expect(plan.waiting).toEqual([alice[1]!.id, alice[2]!.id]);
  });

  it('draining and down nodes get nothing', () => {
    const run = aRun();
    const plan = planRuns({ queued: [run], nodes: [aNode({ state: 'draining' }), aNode({ id: 'x', state: 'down' })] }, now);
    expect(plan.placements).toEqual([]);
    expect(plan.waiting).toEqual([run.id]);
  });

  it('never gives a GPU to two runs and never more runs than CPU slots', () => {
    const runArb = fc.record({ user: fc.constantFrom('a', 'b', 'c'), gpus: fc.integer({ min: 0, max: 3 }) });
    const nodeArb = fc.record({ gpus: fc.integer({ min: 0, max: 4 }), slots: fc.integer({ min: 0, max: 2 }) });
    fc.assert(
      fc.property(fc.array(runArb, { maxLength: 30 }), fc.array(nodeArb, { maxLength: 5 }), (runs, nodes) => {
        const queued = runs.map((r) => aRun(r));
        const snapshotNodes = nodes.map((n, i) =>
          aNode({ id: `n${i}`, freeGpus: Array.from({ length: n.gpus }, (_, g) => `n${i}-g${g}`), freeCpuSlots: n.slots }),
        );
        const plan = planRuns({ queued, nodes: snapshotNodes }, now);
        const given = plan.placements.flatMap((p) => p.gpus);
        expect(new Set(given).size).toBe(given.length);
        for (const p of plan.placements) {
          const run = queued.find((r) => r.id === p.runId)!;
          expect(p.gpus.length).toBe(run.gpus);
          const node = snapshotNodes.find((n) => n.id === p.nodeId)!;
          for (const g of p.gpus) expect(node.freeGpus).toContain(g);
        }
        for (const node of snapshotNodes) {
          const cpuRuns = plan.placements.filter((p) => p.nodeId === node.id && p.gpus.length === 0).length;
          expect(cpuRuns).toBeLessThanOrEqual(node.freeCpuSlots);
        }
        expect(plan.placements.length + plan.waiting.length).toBe(queued.length);
      }),
    );
  });
});
