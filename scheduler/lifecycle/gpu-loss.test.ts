/**
 * A GPU lost under a run, as the leader handles it: the node's status says the GPU is lost, the next
 * planning round cancels the run on its node with the reason, the node's `cancelled` result is
 * recorded as `failed` naming the GPU, the machine's other GPUs go on running their work, and the
 * lost GPU is given to nobody.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { RunOutcome } from '../contract/run-spec.js';
import { fakeNode, lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';
import { plannedNode } from './plan-apply.js';

let t: LifecycleFixture | undefined;
afterEach(async () => t?.close());

const cancelled: RunOutcome = {
  end: 'cancelled',
  reason: 'cancelled: stopped by the leader',
  exitCode: 137,
  imageId: 'sha256:1',
  branch: 'secd-x',
  outputsPath: 'outputs/x',
  startedAt: '2026-01-01T00:00:01.000Z',
  finishedAt: '2026-01-01T00:00:09.000Z',
};

function lossyNode() {
  const troubles: Array<{ uuid: string; health: 'lost' | 'error'; problem: string }> = [];
  const node = fakeNode('gpu-01', { gpuCount: 3 });
  const handle = Object.assign(node, {
    gpuTroubles: () => troubles,
    // As the registry's node does: lost GPUs are among those given to nobody.
    foreignBusyGpus: () => troubles.map((x) => x.uuid),
  });
  return { handle, troubles };
}

describe('a GPU lost mid-run', () => {
  it('stops that run, records it failed with the reason, and leaves the other GPUs and their runs alone', async () => {
    const { handle, troubles } = lossyNode();
    t = await lifecycleFixture([handle]);
    const onLost = (await t.runIn('running', { user: 'ann', node: 'gpu-01', gpus: ['gpu-01-g0'] })).id;
    const onHealthy = (await t.runIn('running', { user: 'ben', node: 'gpu-01', gpus: ['gpu-01-g1'] })).id;

    troubles.push({ uuid: 'gpu-01-g0', health: 'lost', problem: 'nvidia-smi: Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost' });
    const queued = (await t.runIn('queued', { user: 'cyd', yml: 'gpu: 1\n' })).id;
    await t.plan();

    expect(handle.cancelled).toEqual([
      [onLost, 'stopped by secd: GPU gpu-01-g0 on node gpu-01 is lost (nvidia-smi: Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost)'],
    ]);
    // The queued run gets the free healthy GPU, never the lost one.
    expect(await t.store.get(queued)).toMatchObject({ state: 'assigned', gpus: ['gpu-01-g2'] });
    expect(plannedNode(handle).foreignBusyGpus).toEqual(['gpu-01-g0']);

    t.lifecycle.onResult('gpu-01', onLost, cancelled);
    await t.settle();
    expect(await t.store.get(onLost)).toMatchObject({
      state: 'failed',
      reason: 'failed: GPU gpu-01-g0 on node gpu-01 is lost (nvidia-smi: Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost)',
      branch: 'secd-x',
    });
    expect(t.statuses.at(-1)).toMatchObject({ state: 'failed', description: expect.stringContaining('GPU gpu-01-g0 on node gpu-01 is lost') });
    expect(await t.store.get(onHealthy)).toMatchObject({ state: 'running' });
  });

  it('a run cancelled while its GPUs are healthy stays cancelled', async () => {
    const { handle } = lossyNode();
    t = await lifecycleFixture([handle]);
    const run = (await t.runIn('running', { node: 'gpu-01', gpus: ['gpu-01-g0'] })).id;
    t.lifecycle.onResult('gpu-01', run, cancelled);
    await t.settle();
    expect(await t.store.get(run)).toMatchObject({ state: 'cancelled', reason: 'cancelled: stopped by the leader' });
  });
});
