import { afterEach, describe, expect, it } from 'vitest';
import { fakeNode, lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';
import type { NodeHandle } from './run-lifecycle.js';

// The lifecycle's scheduling step against a real (in-memory) run store and fake nodes: what the
// planner decides is what happens to the runs.

let t: LifecycleFixture | undefined;
afterEach(async () => t?.close());

async function setup(nodes: NodeHandle[]) {
  t = await lifecycleFixture(nodes);
  const fixture = t;
  /** A run that passed verification and policy with this secd.yml, as if its node was there then. */
  const queue = (project: string, yml: string, user = 'alice') => fixture.runIn('queued', { project, yml, user });
  return { store: fixture.store, statuses: fixture.statuses, queue, plan: fixture.plan };
}

describe('scheduling queued runs', () => {
  it('a run no node can ever take is rejected with the planner’s reason, and the researcher sees it', async () => {
    const { store, statuses, queue, plan } = await setup([fakeNode('gpu-01', { gpuCount: 2 }), fakeNode('gpu-02', { gpuCount: 1 })]);
    const run = await queue('lab/big', 'gpu: 4\n');
    await plan();
    expect(await store.get(run.id)).toMatchObject({ state: 'rejected', reason: 'no node can run it: asks for 4 GPUs but the largest node has 2' });
    expect(statuses).toEqual([expect.objectContaining({ sha: run.sha, state: 'failed', description: 'no node can run it: asks for 4 GPUs but the largest node has 2' })]);
  });

  it('a GPU run goes to the node holding its project image, and GPUs held by assigned runs are not given again', async () => {
    const plain = fakeNode('gpu-01', { gpuCount: 2 });
    const warm = fakeNode('gpu-02', { gpuCount: 2, images: ['lab/model'] });
    const { store, queue, plan } = await setup([plain, warm]);
    const first = await queue('lab/model', 'gpu: 1\n');
    await plan();
    expect(await store.get(first.id)).toMatchObject({ state: 'assigned', node: 'gpu-02', gpus: ['gpu-02-g0'] });
    const second = await queue('lab/other', 'gpu: 1\n', 'bob');
    await plan();
    // gpu-02 now has one free GPU: the tighter fit.
    expect(await store.get(second.id)).toMatchObject({ state: 'assigned', node: 'gpu-02', gpus: ['gpu-02-g1'] });
    const third = await queue('lab/other', 'gpu: 2\n', 'bob');
    await plan();
    expect(await store.get(third.id)).toMatchObject({ state: 'assigned', node: 'gpu-01', gpus: ['gpu-01-g0', 'gpu-01-g1'] });
    const fourth = await queue('lab/model', 'gpu: 1\n');
    await plan();
    expect((await store.get(fourth.id))?.state).toBe('queued');
    expect(warm.assigned.map((s) => s.runId)).toEqual([first.id, second.id]);
  });

  it('a planning round asked for just before shutdown does not run once the lifecycle is closed', async () => {
    const node = fakeNode('gpu-01', { gpuCount: 1 });
    t = await lifecycleFixture([node]);
    await t.runIn('queued');
    t.lifecycle.scheduleSoon();
    // The leader closes its database right after the lifecycle: the queued tick must not touch it.
    await t.close();
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(node.assigned).toEqual([]);
    t = undefined;
  });
});

describe('planning rounds', () => {
  it('never overlap: requests during a round give exactly one more round after it', async () => {
    // One GPU, busy with a process that is not secd's: the queued run waits, and every round reads
    // the nodes once (for its snapshot) and never applies anything.
    let rounds = 0;
    const node = fakeNode('gpu-01', { gpuCount: 1, foreignBusy: ['gpu-01-g0'] });
    let active = 0;
    let most = 0;
    t = await lifecycleFixture(
      () => {
        rounds++;
        return [node];
      },
      ({ store }) => {
        // Each of a round's transactions takes a few milliseconds: time for a second round to start, were one allowed to.
        const slow = Object.create(store) as typeof store;
        slow.inTransaction = async (fn) => {
          active++;
          most = Math.max(most, active);
          try {
            await new Promise((r) => setTimeout(r, 5));
            return await store.inTransaction(fn);
          } finally {
            active--;
          }
        };
        return { store: slow };
      },
    );
    const run = await t.runIn('queued');
    t.lifecycle.scheduleSoon();
    for (let i = 0; i < 200 && rounds === 0; i++) await new Promise((r) => setTimeout(r, 1));
    expect(rounds).toBe(1);
    // The first round is still going (its queue-place and snapshot writes wait): ask three times.
    t.lifecycle.scheduleSoon();
    t.lifecycle.scheduleSoon();
    t.lifecycle.scheduleSoon();
    await t.settle();
    expect(rounds).toBe(2);
    expect(most).toBe(1);
    expect((await t.store.get(run.id))?.state).toBe('queued');
  });
});
