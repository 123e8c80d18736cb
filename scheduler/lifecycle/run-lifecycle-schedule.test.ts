import { afterEach, describe, expect, it } from 'vitest';
import { fakeNode, lifecycleFixture, type LifecycleFixture } from './lifecycle-fixtures.js';
import type { NodeHandle } from './run-lifecycle.js';

// The lifecycle's scheduling step against a real (in-memory) run store and fake nodes: what the
// planner decides is what happens to the runs.

let t: LifecycleFixture | undefined;
afterEach(() => t?.close());

function setup(nodes: NodeHandle[]) {
  t = lifecycleFixture(nodes);
  const fixture = t;
  /** A run that passed verification and policy with this secd.yml, as if its node was there then. */
  const queue = (project: string, yml: string, user = 'alice') => fixture.runIn('queued', { project, yml, user });
  return { store: fixture.store, statuses: fixture.statuses, queue, plan: fixture.plan };
}

describe('scheduling queued runs', () => {
  it('a run no node can ever take is rejected with the planner’s reason, and the researcher sees it', async () => {
    const { store, statuses, queue, plan } = setup([fakeNode('gpu-01', { gpuCount: 2 }), fakeNode('gpu-02', { gpuCount: 1 })]);
    const run = queue('lab/big', 'gpu: 4\n');
    await plan();
    expect(store.get(run.id)).toMatchObject({ state: 'rejected', reason: 'no node can run it: asks for 4 GPUs but the largest node has 2' });
    expect(statuses).toEqual([expect.objectContaining({ sha: run.sha, state: 'failed', description: 'no node can run it: asks for 4 GPUs but the largest node has 2' })]);
  });

  it('a GPU run goes to the node holding its project image, and GPUs held by assigned runs are not given again', async () => {
    const plain = fakeNode('gpu-01', { gpuCount: 2 });
    const warm = fakeNode('gpu-02', { gpuCount: 2, images: ['lab/model'] });
    const { store, queue, plan } = setup([plain, warm]);
    const first = queue('lab/model', 'gpu: 1\n');
    await plan();
    expect(store.get(first.id)).toMatchObject({ state: 'assigned', node: 'gpu-02', gpus: ['gpu-02-g0'] });
    const second = queue('lab/other', 'gpu: 1\n', 'bob');
    await plan();
    // gpu-02 now has one free GPU: the tighter fit.
    expect(store.get(second.id)).toMatchObject({ state: 'assigned', node: 'gpu-02', gpus: ['gpu-02-g1'] });
    const third = queue('lab/other', 'gpu: 2\n', 'bob');
    await plan();
    expect(store.get(third.id)).toMatchObject({ state: 'assigned', node: 'gpu-01', gpus: ['gpu-01-g0', 'gpu-01-g1'] });
    const fourth = queue('lab/model', 'gpu: 1\n');
    await plan();
    expect(store.get(fourth.id)?.state).toBe('queued');
    expect(warm.assigned.map((s) => s.runId)).toEqual([first.id, second.id]);
  });

  it('a planning round asked for just before shutdown does not run once the lifecycle is closed', async () => {
    const node = fakeNode('gpu-01', { gpuCount: 1 });
    t = lifecycleFixture([node]);
    t.runIn('queued');
    t.lifecycle.scheduleSoon();
    await t.lifecycle.close();
    // The leader closes its database right after the lifecycle: the queued tick must not touch it.
    t.db.close();
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(node.assigned).toEqual([]);
    t = undefined;
  });
});
