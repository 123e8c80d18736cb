import { afterEach, describe, expect, it } from 'vitest';
import { silentLog, type Log } from '../common/log.js';
import { planRuns, type PlannedNode } from '../plan/plan.js';
import { aNode } from '../plan/plan-builders.js';
import { applyPlan, readSnapshot } from './plan-apply.js';
import type { StateEngine } from '../../storage/sql/state-database.js';
import { STATE_ENGINES } from '../../test/support/scratch-state.js';
import { fakeNode, lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';

// applyPlan against a real (in-memory) run store: a plan made from one snapshot, the cluster changed
// before the write, and what the write does with each placement. The planner's own builders make the
// nodes; the runs are stored ones.

let t: LifecycleFixture | undefined;
afterEach(async () => t?.close());

async function setup(engine?: StateEngine) {
  t = await lifecycleFixture([], undefined, engine ? { engine } : {});
  const fixture = t;
  const warnings: string[] = [];
  const log: Log = { ...silentLog, warn: (_obj, msg) => void warnings.push(msg ?? '') };
  return {
    ...fixture,
    warnings,
    /** A queued run asking for `gpus` GPUs. */
    queued: async (user: string, gpus = 1) => (await fixture.runIn('queued', { user, yml: `gpu: ${gpus}\n` })).id,
    plan: async (nodes: PlannedNode[]) => planRuns(await readSnapshot(fixture.store, () => nodes), fixture.now()),
    apply: (plan: Parameters<typeof applyPlan>[0], nodes: PlannedNode[]) => applyPlan(plan, nodes, { store: fixture.store, log }),
  };
}

// The write is one transaction on either engine (MariaDB: what several leaders share, DESIGN §11).
describe.each(STATE_ENGINES)('applying a plan in one re-checked write (%s)', (engine) => {
  it('a placement on a node that went away is refused and logged, the rest is assigned, and the run starts next round', async () => {
    const s = await setup(engine);
    const ann = await s.queued('ann');
    const ben = await s.queued('ben');
    const n1 = aNode({ id: 'n1', gpuCount: 1 });
    const n2 = aNode({ id: 'n2', gpuCount: 1 });
    const plan = await s.plan([n1, n2]);
    expect(plan.placements.map((p) => [p.runId, p.nodeId])).toEqual([[ann, 'n1'], [ben, 'n2']]);

    const { applied, rejected } = await s.apply(plan, [n1]); // n2 revoked meanwhile
    expect(applied.map((a) => a.run)).toEqual([expect.objectContaining({ id: ann, state: 'assigned', node: 'n1', gpus: ['n1-g0'] })]);
    expect(rejected.map((r) => [r.placement.runId, r.code, r.reason])).toEqual([[ben, 'node_gone', 'node n2 is gone (forgotten or revoked)']]);
    expect(await s.store.get(ben)).toMatchObject({ state: 'queued', node: null, gpus: [] });
    expect((await s.store.events(ben)).at(-1)?.to).toBe('queued');
    expect(s.warnings).toEqual(['placement refused at apply, the run stays queued: node n2 is gone (forgotten or revoked)']);

    const n3 = aNode({ id: 'n3', gpuCount: 1 });
    const next = await s.apply(await s.plan([n1, n3]), [n1, n3]);
    expect(next.applied.map((a) => [a.run.id, a.run.node])).toEqual([[ben, 'n3']]);
  });

  it('a GPU another run took meanwhile is not given twice; the run gets the other GPU next round', async () => {
    const s = await setup(engine);
    const ann = await s.queued('ann');
    const n1 = aNode({ id: 'n1', gpuCount: 2 });
    const plan = await s.plan([n1]);
    expect(plan.placements).toEqual([{ runId: ann, nodeId: 'n1', gpus: ['n1-g0'] }]);
    const other = (await s.runIn('running', { user: 'ben', node: 'n1', gpus: ['n1-g0'] })).id;

    const { applied, rejected } = await s.apply(plan, [n1]);
    expect(applied).toEqual([]);
    expect(rejected.map((r) => [r.code, r.reason])).toEqual([['gpu_taken', `GPU n1-g0 on node n1 is held by run ${other}`]]);
    expect((await s.store.get(ann))?.state).toBe('queued');

    const next = await s.apply(await s.plan([n1]), [n1]);
    expect(next.applied.map((a) => a.run)).toEqual([expect.objectContaining({ id: ann, state: 'assigned', gpus: ['n1-g1'] })]);
  });

  it('a run cancelled meanwhile stays cancelled; the placements beside it are assigned', async () => {
    const s = await setup(engine);
    const ann = await s.queued('ann');
    const ben = await s.queued('ben', 0);
    const plan = await s.plan([aNode({ id: 'n1', gpuCount: 1 })]);
    expect(plan.placements.map((p) => p.runId).sort()).toEqual([ann, ben].sort());
    await s.store.transition(ann, 'cancelled', 'superseded by a newer push');

    const { applied, rejected } = await s.apply(plan, [aNode({ id: 'n1', gpuCount: 1 })]);
    expect(applied.map((a) => [a.run.id, a.run.state])).toEqual([[ben, 'assigned']]);
    expect(rejected.map((r) => [r.placement.runId, r.code, r.reason])).toEqual([[ann, 'run_not_queued', `run ${ann} is cancelled now, not queued`]]);
    expect(await s.store.get(ann)).toMatchObject({ state: 'cancelled', reason: 'superseded by a newer push', node: null });
  });
});

describe('a planning round whose plan is refused in part', () => {
  it('a run whose node went away between the plan and its write stays queued and starts on the round planned right after', async () => {
    const n1 = fakeNode('n1', { gpuCount: 2 });
    const n2 = fakeNode('n2', { gpuCount: 1 });
    // Each round reads the nodes twice: for the plan, then for its apply. n2 leaves in between.
    let reads = 0;
    t = await lifecycleFixture(() => (++reads === 1 ? [n1, n2] : [n1]));
    const run = (await t.runIn('queued', { yml: 'gpu: 1\n' })).id;
    await t.plan();
    expect(reads).toBeGreaterThanOrEqual(3);
    expect(n2.assigned).toEqual([]);
    expect(await t.store.get(run)).toMatchObject({ state: 'assigned', node: 'n1', gpus: ['n1-g0'] });
    expect(n1.assigned.map((s) => s.runId)).toEqual([run]);
    expect((await t.store.events(run)).map((e) => e.to)).toEqual(['received', 'verified', 'queued', 'assigned']);
  });
});
