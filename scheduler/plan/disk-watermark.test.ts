/** A node under its disk watermark takes no new run (issue 13, finding 4): the planner and the plan check both skip it. */
import { describe, expect, it } from 'vitest';
import { aNode, aRun, aSnapshot, NOW } from './plan-builders.js';
import { planRuns } from './plan.js';
import { checkPlan } from './plan-check.js';

const LOW = 'node gpu-01 has 1.2 GiB free in /var/lib/secd-node, under its disk watermark of 2 GiB';

describe('nodes under their disk watermark', () => {
  it('a run goes to the node with room, not to the one under its watermark', () => {
    const plan = planRuns(aSnapshot({ queued: [aRun({ id: 'r1' })], nodes: [aNode({ id: 'gpu-01', diskLow: LOW }), aNode({ id: 'gpu-02' })] }), NOW);
    expect(plan.placements.map((p) => [p.runId, p.nodeId])).toEqual([['r1', 'gpu-02']]);
  });

  it('with only that node, the run waits (it is not rejected: the node comes back once it has room)', () => {
    const plan = planRuns(aSnapshot({ queued: [aRun({ id: 'r1' })], nodes: [aNode({ id: 'gpu-01', diskLow: LOW })] }), NOW);
    expect(plan.placements).toEqual([]);
    expect(plan.impossible).toEqual([]);
    const again = planRuns(aSnapshot({ queued: [aRun({ id: 'r1' })], nodes: [aNode({ id: 'gpu-01' })] }), NOW);
    expect(again.placements.map((p) => p.nodeId)).toEqual(['gpu-01']);
  });

  it('a placement made before the node fell under its watermark is refused when the plan is applied, with its sentence', () => {
    const placement = { runId: 'r1', nodeId: 'gpu-01', gpus: [] };
    const check = checkPlan([placement], { runState: () => 'queued', running: [], nodes: [aNode({ id: 'gpu-01', diskLow: LOW })] });
    expect(check.accepted).toEqual([]);
    expect(check.rejected).toEqual([{ placement, code: 'node_not_up', reason: `node gpu-01 is under its disk watermark now: ${LOW}` }]);
  });
});
