import { afterEach, describe, expect, it } from 'vitest';
import { fakeNode, lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';
import { readSnapshot } from './plan-apply.js';
import { halfLifeOf, withKnownTimes } from './queue-times.js';
import { aNode } from '../plan/plan-builders.js';

// A planning round against a real (in-memory) run store: runfor and start times read from the runs,
// decayed usage from the runs that ended, and each waiting run told where it stands.

let t: LifecycleFixture | undefined;
afterEach(async () => t?.close());

const MIN = 60_000;
const hhmm = (ms: number) => new Date(Math.ceil(ms / MIN) * MIN).toISOString().slice(11, 16);

describe('where a queued run stands', () => {
  it('a waiting run’s reason names its place and start time, posted as its pending status', async () => {
    t = await lifecycleFixture([fakeNode('gpu-01', { gpuCount: 2 })]);
    const fixture = t;
    const nowMs = fixture.now().getTime();
    // bob's 1-hour run holds both GPUs since 30 minutes ago: they are free by 30 minutes from now.
    const bob = await fixture.runIn('running', { user: 'bob', yml: 'runfor: 1\ngpu: 2\n', node: 'gpu-01', gpus: ['gpu-01-g0', 'gpu-01-g1'] });
    await fixture.store.update(bob.id, { startedAt: new Date(nowMs - 30 * MIN).toISOString() });
    const alice = await fixture.runIn('queued', { user: 'alice', yml: 'runfor: 2\ngpu: 2\n' });
    const carol = await fixture.runIn('queued', { user: 'carol', yml: 'runfor: 3\ngpu: 1\n' });
    await fixture.plan();

    const aliceNote = `queued: 1st in line for 2 GPUs, starts by ${hhmm(nowMs + 30 * MIN)} UTC at the latest`;
    expect(await fixture.store.get(alice.id)).toMatchObject({ state: 'queued', reason: aliceNote });
    // carol's 3 h would outlast alice's start: she waits, with no time promised.
    expect(await fixture.store.get(carol.id)).toMatchObject({ state: 'queued', reason: 'queued: 2nd in line for 1 GPU' });
    expect(fixture.statuses.filter((s) => s.sha === alice.sha)).toEqual([expect.objectContaining({ state: 'pending', description: aliceNote })]);

    // Another round with nothing changed posts nothing more.
    fixture.advance(1000);
    await fixture.plan();
    expect(fixture.statuses.filter((s) => s.sha === alice.sha)).toHaveLength(1);
  });

  it('a run whose pending status GitLab already took gets its place as the same state again, with new words', async () => {
    t = await lifecycleFixture([fakeNode('gpu-01', { gpuCount: 1 })]);
    const fixture = t;
    await fixture.runIn('running', { user: 'bob', yml: 'runfor: 1\ngpu: 1\n', node: 'gpu-01', gpus: ['gpu-01-g0'] });
    const alice = await fixture.runIn('queued', { user: 'alice', yml: 'gpu: 1\n' });
    await fixture.store.update(alice.id, { statusPosted: 'pending' });
    await fixture.plan();
    const note = /^queued: 1st in line for 1 GPU, starts by \d\d:\d\d UTC at the latest$/;
    expect((await fixture.store.get(alice.id))?.reason).toMatch(note);
    // commit-statuses.ts decides how often (and whether: an older GitLab refuses a repeated pending).
    expect(fixture.statuses.filter((s) => s.sha === alice.sha)).toEqual([expect.objectContaining({ state: 'pending', description: expect.stringMatching(note) })]);
  });
});

describe('what the planner reads from the store', () => {
  it('runfor of queued runs, start and runfor of runs in flight, and decayed GPU-hours of runs that ended', async () => {
    t = await lifecycleFixture([]);
    const fixture = t;
    const nowMs = fixture.now().getTime();
    const done = await fixture.runIn('succeeded', { user: 'ann', yml: 'runfor: 2\ngpu: 2\n', gpus: ['g0', 'g1'] });
    await fixture.store.update(done.id, { startedAt: new Date(nowMs - 3 * 60 * MIN).toISOString(), finishedAt: new Date(nowMs - 60 * MIN).toISOString() });
    const running = await fixture.runIn('running', { user: 'ben', yml: 'runfor: 1\ngpu: 1\n', gpus: ['g2'] });
    await fixture.store.update(running.id, { startedAt: new Date(nowMs - 30 * MIN).toISOString() });
    const queued = await fixture.runIn('queued', { user: 'cai', yml: 'runfor: 0.5\ngpu: 1\n' });

    const snapshot = await withKnownTimes(fixture.store, await readSnapshot(fixture.store, () => [aNode({ gpuCount: 4 })]), fixture.now(), 24);
    expect(snapshot.queued).toEqual([expect.objectContaining({ id: queued.id, runforMs: 30 * MIN })]);
    expect(snapshot.running).toEqual([expect.objectContaining({ id: running.id, startedAt: new Date(nowMs - 30 * MIN).toISOString(), runforMs: 60 * MIN })]);
    // ann: 2 GPUs from 3 h ago to 1 h ago, half-life 24 h: ≈ 3.78 of its 4 GPU-hours; ben: half an hour of one GPU.
    expect(snapshot.usage!.ann).toBeCloseTo(((2 * 24) / Math.LN2) * (Math.pow(2, -1 / 24) - Math.pow(2, -3 / 24)), 9);
    expect(snapshot.usage!.ben).toBeGreaterThan(0.49);
    expect(snapshot.usage!.ben).toBeLessThan(0.5);
    expect(snapshot.usage!.cai).toBeUndefined();
  });

  it('the half-life comes from the settings where they carry it', () => {
    expect(halfLifeOf({ publicUrl: 'x' })).toBe(168);
    expect(halfLifeOf({ fairShareHalfLifeHours: 12 })).toBe(12);
    expect(halfLifeOf({ fairShareHalfLifeHours: -1 })).toBe(168);
  });
});
