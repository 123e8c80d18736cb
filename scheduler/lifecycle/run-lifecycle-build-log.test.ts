import { afterEach, describe, expect, it } from 'vitest';
import type { RunOutcome } from '../contract/run-spec.js';
import { fakeNode, lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';

// What the leader keeps of a failed build's log: the lines its node sent, for the run page.

let t: LifecycleFixture | undefined;
afterEach(async () => t?.close());

const failedBuild: RunOutcome = {
  end: 'failed',
  reason: 'docker build failed: step 2 exited 1',
  exitCode: null,
  imageId: null,
  branch: 'secd-x',
  outputsPath: 'outputs/x',
  startedAt: null,
  finishedAt: '2026-01-01T00:00:01.000Z',
  buildLogTail: 'Step 2/3 : RUN false\n[secd] docker build failed: step 2 exited 1',
};

describe('the result of a failed build', () => {
  it('keeps the last build.log lines its node sent on the run, and a run without them keeps none', async () => {
    t = await lifecycleFixture([fakeNode('gpu-01', { gpuCount: 1 })]);
    const failed = await t.runIn('building', { node: 'gpu-01', gpus: ['gpu-01-g0'] });
    t.lifecycle.onResult('gpu-01', failed.id, failedBuild);
    const plain = await t.runIn('running', { node: 'gpu-01', gpus: ['gpu-01-g0'] });
    const { buildLogTail: _omitted, ...withoutTail } = failedBuild;
    t.lifecycle.onResult('gpu-01', plain.id, { ...withoutTail, reason: 'the container exited with code 1', exitCode: 1, imageId: 'sha256:1' });
    await t.settle();
    expect(await t.store.get(failed.id)).toMatchObject({ state: 'failed', buildLogTail: failedBuild.buildLogTail });
    expect(await t.store.get(plain.id)).toMatchObject({ state: 'failed', buildLogTail: null });
  });
});
