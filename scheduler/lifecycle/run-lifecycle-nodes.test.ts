import { afterEach, describe, expect, it } from 'vitest';
import type { RunState } from '../../storage/run-states.js';
import type { RunOutcome } from '../contract/run-spec.js';
import { fakeNode, lifecycleFixture, START, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';

// What the lifecycle does with what nodes say when they come back (hello), with nodes that stay
// away (lost_after), and with results whose phase reports were lost: a real (in-memory) run store,
// fake nodes and a fake clock.

const LOST_AFTER = 600_000;
let fixture: LifecycleFixture | undefined;
afterEach(async () => fixture?.close());

async function setup() {
  const node = fakeNode('gpu-01', { gpus: ['GPU-A', 'GPU-B'] });
  const downSince = new Map<string, Date>();
  fixture = await lifecycleFixture([node], () => ({
    nodeDownSince: (id) => downSince.get(id) ?? null,
    settings: { lostAfterMs: LOST_AFTER },
  }));
  const f = fixture;
  return {
    ...f,
    node,
    downSince,
    /** A run on gpu-01 that got as far as `state`. */
    runIn: async (state: RunState) => (await f.runIn(state)).id,
  };
}

const outcome: RunOutcome = {
  end: 'succeeded',
  reason: 'succeeded; results on branch secd-x',
  exitCode: 0,
  imageId: 'sha256:1',
  branch: 'secd-x',
  outputsPath: 'outputs/x',
  startedAt: '2026-01-01T00:00:01.000Z',
  finishedAt: '2026-01-01T00:00:09.000Z',
};

describe('the lifecycle and nodes that come and go', () => {
  it('a node back with its runs carries them on from the phase it reports', async () => {
    const t = await setup();
    const building = await t.runIn('building');
    const running = await t.runIn('running');
    t.lifecycle.onNodeHello('gpu-01', [
      { runId: building, phase: 'running' },
      { runId: running, phase: 'running' },
    ]);
    await t.settle();
    expect((await t.store.get(building))?.state).toBe('running');
    expect((await t.store.get(running))?.state).toBe('running');
    expect(t.node.assigned).toEqual([]);
    expect(t.node.cancelled).toEqual([]);
  });

  it('an assignment the node never received is sent again; a started run the node no longer holds is lost', async () => {
    const t = await setup();
    const assigned = await t.runIn('assigned');
    const running = await t.runIn('running');
    t.lifecycle.onNodeHello('gpu-01', []);
    await t.settle();
    expect(t.node.assigned.map((s) => s.runId)).toEqual([assigned]);
    expect(t.node.assigned[0]).toMatchObject({ gpus: ['GPU-A'], source: 'https://gitlab.example.org/lab/x.git' });
    const lost = (await t.store.get(running))!;
    expect(lost.state).toBe('lost');
    expect(lost.reason).toBe('node gpu-01 came back without this run (it no longer holds it)');
    expect(t.statuses.at(-1)).toMatchObject({ sha: lost.commit, state: 'failed', description: lost.reason });
  });

  it('a run the node holds but the leader already ended, or never gave it, is cancelled on the node', async () => {
    const t = await setup();
    const ended = await t.runIn('succeeded');
    t.lifecycle.onNodeHello('gpu-01', [
      { runId: ended, phase: 'running' },
      { runId: 'stranger01', phase: 'building' },
      { runId: 'finished01', phase: 'finished' },
    ]);
    await t.settle();
    expect(t.node.cancelled).toEqual([
      [ended, expect.stringContaining('already ended this run (succeeded')],
      ['stranger01', 'the leader has no record of this run on this node'],
    ]);
  });

  it('runs of a node down longer than lost_after end lost; a shorter absence changes nothing', async () => {
    const t = await setup();
    const running = await t.runIn('running');
    t.downSince.set('gpu-01', new Date(START));
    t.advance(LOST_AFTER - 1000);
    t.lifecycle.sweepLostRuns();
    await t.settle();
    expect((await t.store.get(running))?.state).toBe('running');
    t.advance(1000);
    t.lifecycle.sweepLostRuns();
    await t.settle();
    const lost = (await t.store.get(running))!;
    expect(lost.state).toBe('lost');
    expect(lost.reason).toBe('node gpu-01 has been unreachable for 10 min (lost_after is 10 min)');
    // A node that comes back later is told to stop the run it still has.
    t.lifecycle.onNodeHello('gpu-01', [{ runId: running, phase: 'running' }]);
    await t.settle();
    expect(t.node.cancelled[0]?.[0]).toBe(running);
  });

  it('a result that arrives while the run is still running (the uploading report was lost) ends it through uploading', async () => {
    const t = await setup();
    const running = await t.runIn('running');
    t.lifecycle.onResult('gpu-01', running, outcome);
    await t.settle();
    expect(await t.store.get(running)).toMatchObject({ state: 'succeeded', branch: 'secd-x', exitCode: 0 });
    expect((await t.store.events(running)).map((e) => e.to).slice(-3)).toEqual(['running', 'uploading', 'succeeded']);
    // The same result again (re-sent before the acknowledgement arrived) changes nothing.
    t.lifecycle.onResult('gpu-01', running, { ...outcome, reason: 'again' });
    await t.settle();
    expect((await t.store.get(running))?.reason).toBe(outcome.reason);
  });
});

describe('a node that reports fast', () => {
  it('phases and the result sent back to back are recorded in the order the node sent them', async () => {
    const t = await setup();
    const run = await t.runIn('assigned');
    const at = t.now().toISOString();
    t.lifecycle.onPhase('gpu-01', run, 'building', at);
    t.lifecycle.onPhase('gpu-01', run, 'running', at);
    t.lifecycle.onPhase('gpu-01', run, 'uploading', at);
    t.lifecycle.onResult('gpu-01', run, outcome);
    await t.settle();
    expect((await t.store.events(run)).map((e) => e.to).slice(-5)).toEqual(['assigned', 'building', 'running', 'uploading', 'succeeded']);
    expect(t.statuses[0]?.state).toBe('running');
    expect(t.statuses.at(-1)).toMatchObject({ state: 'success', description: outcome.reason });
  });

  it('onResult resolves once the result is recorded, so the node is acknowledged only then', async () => {
    const t = await setup();
    const run = await t.runIn('running');
    expect(await t.lifecycle.onResult('gpu-01', run, outcome)).toBe(true);
    expect(await t.store.get(run)).toMatchObject({ state: 'succeeded', branch: 'secd-x' });
  });

  it('onResult resolves false when the result could not be recorded, so the node sends it again', async () => {
    const t = await setup();
    const run = await t.runIn('running');
    // The state database refuses the write (a lost connection, a fenced-out leader).
    const transition = t.store.transition.bind(t.store);
    t.store.transition = () => Promise.reject(new Error('the state database is unreachable'));
    expect(await t.lifecycle.onResult('gpu-01', run, outcome)).toBe(false);
    t.store.transition = transition;
    expect((await t.store.get(run))?.state).toBe('running');
    // Sent again, it is recorded.
    expect(await t.lifecycle.onResult('gpu-01', run, outcome)).toBe(true);
    expect((await t.store.get(run))?.state).toBe('succeeded');
  });
});
