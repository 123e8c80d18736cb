import { describe, expect, it } from 'vitest';
import { checkPlan, type FreshState } from './plan-check.js';
import { aNode, aRun, aRunning, PlanHarness } from './plan-builders.js';

// The plan is made from a snapshot; the cluster moves on before it is written. These stories change
// the cluster between the harness's propose() and apply(), the way the world does between the
// leader's read and its write, and check what stands, what is refused, and that nothing is lost.

describe('applying a plan against the cluster as it is now', () => {
  it('a placement on a node that went away is refused, the rest of the plan stands, and the run starts next round', () => {
    const h = new PlanHarness({ nodes: [aNode({ id: 'n1', gpuCount: 1 }), aNode({ id: 'n2', gpuCount: 2 })] });
    const small = aRun({ gpus: 1, user: 'ann' });
    const big = aRun({ gpus: 2, user: 'ben' });
    h.submit(small, big);
    const plan = h.propose();
    expect(plan.placements.map((p) => [p.runId, p.nodeId])).toEqual([[small.id, 'n1'], [big.id, 'n2']]);
    h.nodes = h.nodes.filter((n) => n.id !== 'n2'); // forgotten or revoked meanwhile
    const check = h.apply(plan);
    expect(check.accepted.map((p) => p.runId)).toEqual([small.id]);
    expect(check.rejected).toEqual([{ placement: plan.placements[1], code: 'node_gone', reason: 'node n2 is gone (forgotten or revoked)' }]);
    expect(h.queued.map((r) => r.id)).toEqual([big.id]);

    h.nodes.push(aNode({ id: 'n3', gpuCount: 2 }));
    h.plan();
    expect(h.historyOf(big.id)).toMatchObject({ placedInRound: 2, nodeId: 'n3' });
  });

  it('a GPU taken meanwhile by another run is not given twice; the run gets another GPU next round', () => {
    const h = new PlanHarness({ nodes: [aNode({ id: 'n1', gpuCount: 2 })] });
    const run = aRun({ gpus: 1 });
    h.submit(run);
    const plan = h.propose();
    expect(plan.placements[0]).toMatchObject({ nodeId: 'n1', gpus: ['n1-g0'] });
    h.running.push(aRunning({ id: 'other', nodeId: 'n1', gpus: ['n1-g0'] })); // e.g. a node reported it back
    const check = h.apply(plan);
    expect(check.rejected.map((r) => [r.code, r.reason])).toEqual([['gpu_taken', 'GPU n1-g0 on node n1 is held by run other']]);
    expect(h.historyOf(run.id).placedInRound).toBeUndefined();
    h.plan();
    expect(h.historyOf(run.id)).toMatchObject({ placedInRound: 2, gpus: ['n1-g1'] });
  });

  it('a run cancelled meanwhile is not started, and its GPUs go to the next run', () => {
    const h = new PlanHarness({ nodes: [aNode({ id: 'n1', gpuCount: 1 })] });
    const first = aRun({ gpus: 1, user: 'ann' });
    const second = aRun({ gpus: 1, user: 'ben' });
    h.submit(first, second);
    const plan = h.propose();
    h.cancel(first.id); // superseded by a newer push
    const check = h.apply(plan);
    expect(check.rejected.map((r) => [r.placement.runId, r.code, r.reason])).toEqual([
      [first.id, 'run_not_queued', `run ${first.id} is cancelled now, not queued`],
    ]);
    expect(h.running).toEqual([]);
    h.plan();
    expect(h.historyOf(second.id)).toMatchObject({ placedInRound: 2, gpus: ['n1-g0'] });
  });

  it('a node that started draining or went down, a GPU now busy with a foreign process, a CPU slot now taken: each is refused with its reason', () => {
    const before = [
      aNode({ id: 'drain', gpuCount: 1, cpuSlots: 0 }),
      aNode({ id: 'down', gpuCount: 1, cpuSlots: 0 }),
      aNode({ id: 'busy', gpuCount: 1, cpuSlots: 0 }),
      aNode({ id: 'cpu', cpuSlots: 1 }),
    ];
    const runs = [aRun({ gpus: 1, user: 'a' }), aRun({ gpus: 1, user: 'b' }), aRun({ gpus: 1, user: 'c' }), aRun({ gpus: 0, user: 'd' })];
    const h = new PlanHarness({ nodes: before, queued: runs });
    const plan = h.propose();
    expect(plan.placements).toHaveLength(4);
    h.nodes = [
      { ...before[0]!, state: 'draining' },
      { ...before[1]!, state: 'down' },
      { ...before[2]!, foreignBusyGpus: ['busy-g0'] },
      before[3]!,
    ];
    h.running.push(aRunning({ nodeId: 'cpu' }));
    const check = h.apply(plan);
    expect(check.accepted).toEqual([]);
    expect(Object.fromEntries(check.rejected.map((r) => [r.placement.nodeId, [r.code, r.reason]]))).toEqual({
      drain: ['node_not_up', 'node drain is draining now'],
      down: ['node_not_up', 'node down is down now'],
      busy: ['gpu_foreign_busy', "GPU busy-g0 on node busy is busy with a process that is not secd's"],
      cpu: ['no_cpu_slot', 'node cpu has no free CPU slot now'],
    });
    expect(h.queued).toHaveLength(4);
  });

  it('within one plan a GPU, a CPU slot and a run are each given once, and a GPU the node no longer has is refused', () => {
    const fresh: FreshState = {
      runState: (id) => (id === 'gone' ? null : 'queued'),
      running: [],
      nodes: [aNode({ id: 'n1', gpuCount: 2, cpuSlots: 1 })],
    };
    const check = checkPlan(
      [
        { runId: 'a', nodeId: 'n1', gpus: ['n1-g0'] },
        { runId: 'b', nodeId: 'n1', gpus: ['n1-g0'] },
        { runId: 'a', nodeId: 'n1', gpus: ['n1-g1'] },
        { runId: 'c', nodeId: 'n1', gpus: [] },
        { runId: 'd', nodeId: 'n1', gpus: [] },
        { runId: 'e', nodeId: 'n1', gpus: ['n1-g7'] },
        { runId: 'gone', nodeId: 'n1', gpus: ['n1-g1'] },
      ],
      fresh,
    );
    expect(check.accepted.map((p) => p.runId)).toEqual(['a', 'c']);
    expect(check.rejected.map((r) => [r.placement.runId, r.code, r.reason])).toEqual([
      ['b', 'gpu_taken', 'GPU n1-g0 on node n1 is held by run a'],
      ['a', 'run_not_queued', 'run a was already placed by this plan'],
      ['d', 'no_cpu_slot', 'node n1 has no free CPU slot now'],
      ['e', 'gpu_gone', 'GPU n1-g7 is no longer on node n1'],
      ['gone', 'run_not_queued', 'run gone no longer exists'],
    ]);
  });
});
