/**
 * Known start times and fair share on decayed GPU-hours, one story each (plan.ts rules 3, 4 and 6).
 * The invariants over random clusters are in reservation-properties.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { planRuns, DEFAULT_RESERVE_AFTER_MS } from './plan.js';
import { aNode, aRun, aRunning, aSnapshot, NOW, queuedAgo } from './plan-builders.js';
import { latestEndMs } from './reservations.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const at = (ms: number) => new Date(NOW.getTime() + ms).toISOString();
/** A run on `nodeId` holding `gpus` that started `ago` ms before NOW with a runfor of `runforMs`. */
const busy = (nodeId: string, gpus: number[], ago: number, runforMs: number, user = 'bob') =>
  aRunning({ user, nodeId, gpus: gpus.map((g) => `${nodeId}-g${g}`), startedAt: at(-ago), runforMs });

describe('a waiting run gets a start time from the runfor of what runs now', () => {
  // n1: 4 GPUs, g0-g1 free, g2 ends in 30 min, g3 in 2 h. n2: 4 GPUs, all busy until 3 h from now.
  const nodes = () => [aNode({ id: 'n1', gpuCount: 4 }), aNode({ id: 'n2', gpuCount: 4 })];
  const running = () => [busy('n1', [2], 30 * MIN, HOUR), busy('n1', [3], 0, 2 * HOUR), busy('n2', [0, 1, 2, 3], HOUR, 4 * HOUR)];

  it('the head of the line gets the node where its GPUs are all free soonest, and that time', () => {
    const big = aRun({ user: 'alice', gpus: 4, queuedAt: queuedAgo(MIN), runforMs: HOUR });
    const plan = planRuns(aSnapshot({ queued: [big], running: running(), nodes: nodes() }), NOW);
    expect(plan.reservations).toEqual([
      { runId: big.id, nodeId: 'n1', heldGpus: ['n1-g0', 'n1-g1'], missing: 2, startsAt: at(2 * HOUR), gpus: ['n1-g0', 'n1-g1', 'n1-g2', 'n1-g3'] },
    ]);
    expect(plan.waiting).toEqual([big.id]);
  });

  it('a run that ends by the start backfills into the reserved GPUs; one that would end later does not get them', () => {
    const big = aRun({ user: 'alice', gpus: 4, queuedAt: queuedAgo(3 * MIN), runforMs: HOUR });
    const short = aRun({ user: 'carol', gpus: 2, queuedAt: queuedAgo(2 * MIN), runforMs: 2 * HOUR });
    const long = aRun({ user: 'dave', gpus: 1, queuedAt: queuedAgo(MIN), runforMs: 2 * HOUR + MIN });
    const plan = planRuns(aSnapshot({ queued: [big, short, long], running: running(), nodes: nodes() }), NOW);
    expect(plan.reservations.map((r) => [r.runId, r.startsAt])).toEqual([[big.id, at(2 * HOUR)]]);
    expect(plan.placements).toEqual([{ runId: short.id, nodeId: 'n1', gpus: ['n1-g0', 'n1-g1'] }]);
    expect(plan.waiting).toEqual([big.id, long.id]);
  });

  it('without a runfor, a run never backfills into reserved GPUs (its end is not known)', () => {
    const big = aRun({ user: 'alice', gpus: 4, queuedAt: queuedAgo(2 * MIN), runforMs: HOUR });
    const unknown = aRun({ user: 'carol', gpus: 1, queuedAt: queuedAgo(MIN) });
    const plan = planRuns(aSnapshot({ queued: [big, unknown], running: running(), nodes: nodes() }), NOW);
    expect(plan.placements).toEqual([]);
    expect(plan.waiting).toEqual([big.id, unknown.id]);
  });

  it('GPUs the reservation does not need are taken as before, whatever the run’s length', () => {
    const nodes8 = [aNode({ id: 'n1', gpuCount: 8 })];
    const held = [busy('n1', [0, 1, 2, 3, 4, 5], 0, HOUR)];
    const big = aRun({ user: 'alice', gpus: 4, queuedAt: queuedAgo(2 * MIN), runforMs: HOUR });
    const long = aRun({ user: 'carol', gpus: 2, queuedAt: queuedAgo(MIN), runforMs: 24 * HOUR });
    // big waits for 4 of n1's GPUs: g6 and g7, free now, and two of g0-g5 in an hour; long would outlast that.
    const plan = planRuns(aSnapshot({ queued: [big, long], running: held, nodes: nodes8 }), NOW);
    expect(plan.reservations[0]).toMatchObject({ runId: big.id, startsAt: at(HOUR), heldGpus: ['n1-g6', 'n1-g7'] });
    expect(plan.placements).toEqual([]);
    // A node the reservation does not need: the long run takes it.
    const withN2 = [...nodes8, aNode({ id: 'n2', gpuCount: 2 })];
    const plan2 = planRuns(aSnapshot({ queued: [big, long], running: held, nodes: withN2 }), NOW);
    expect(plan2.reservations[0]).toMatchObject({ runId: big.id, nodeId: 'n1', startsAt: at(HOUR) });
    expect(plan2.placements).toEqual([{ runId: long.id, nodeId: 'n2', gpus: ['n2-g0', 'n2-g1'] }]);
  });

  it('only the head of the line gets a start time by default; headReservations gives more', () => {
    const a = aRun({ user: 'alice', gpus: 4, queuedAt: queuedAgo(2 * MIN), runforMs: HOUR });
    const b = aRun({ user: 'bob', gpus: 4, queuedAt: queuedAgo(MIN), runforMs: HOUR });
    const one = planRuns(aSnapshot({ queued: [a, b], running: running(), nodes: nodes() }), NOW);
    expect(one.reservations.map((r) => r.runId)).toEqual([a.id]);
    const two = planRuns(aSnapshot({ queued: [a, b], running: running(), nodes: nodes() }), NOW, { headReservations: 2 });
    // The second stacks after the first on n1 (free again at 2 h + 1 h) or takes n2 at 3 h: n2's is as early and emptier of others' time.
    expect(two.reservations.map((r) => [r.runId, r.startsAt])).toEqual([
      [a.id, at(2 * HOUR)],
      [b.id, at(3 * HOUR)],
    ]);
  });

  it('an overdue run whose GPUs are free starts before lighter users take them', () => {
    const n1 = [aNode({ id: 'n1', gpuCount: 4 })];
    const big = aRun({ user: 'alice', gpus: 4, queuedAt: queuedAgo(DEFAULT_RESERVE_AFTER_MS + MIN), runforMs: HOUR });
    const light = aRun({ user: 'carol', gpus: 1, queuedAt: queuedAgo(MIN), runforMs: HOUR });
    const usage = { alice: 500 };
    const plan = planRuns(aSnapshot({ queued: [big, light], nodes: n1, usage }), NOW);
    expect(plan.placements.map((p) => p.runId)).toEqual([big.id]);
  });

  it('a run still being built counts as started now; one past its runfor frees its GPUs any moment', () => {
    const nowMs = NOW.getTime();
    expect(latestEndMs({ startedAt: null, runforMs: HOUR }, nowMs)).toBe(nowMs + HOUR);
    expect(latestEndMs({ startedAt: at(-2 * HOUR), runforMs: HOUR }, nowMs)).toBe(nowMs);
    expect(latestEndMs({ startedAt: at(-MIN) }, nowMs)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('fair share on decayed GPU-hours', () => {
  it('the user who ran more lately waits, though both have nothing running now', () => {
    const alice = aRun({ user: 'alice', gpus: 1, queuedAt: queuedAgo(5 * MIN) });
    const bob = aRun({ user: 'bob', gpus: 1, queuedAt: queuedAgo(MIN) });
    const nodes = [aNode({ id: 'n1', gpuCount: 1 })];
    const plan = planRuns(aSnapshot({ queued: [alice, bob], nodes, usage: { alice: 40, bob: 3 } }), NOW);
    expect(plan.placements.map((p) => p.runId)).toEqual([bob.id]);
    // Without the history, the older run goes first.
    const fresh = planRuns(aSnapshot({ queued: [alice, bob], nodes }), NOW);
    expect(fresh.placements.map((p) => p.runId)).toEqual([alice.id]);
  });

  it('GPUs in use weigh one GPU-hour each by default: 3 in use beat 2.5 GPU-hours of history', () => {
    const alice = aRun({ user: 'alice', gpus: 1 });
    const bob = aRun({ user: 'bob', gpus: 1 });
    const nodes = [aNode({ id: 'n1', gpuCount: 4 })];
    const running = [aRunning({ user: 'alice', nodeId: 'n1', gpus: ['n1-g0', 'n1-g1', 'n1-g2'] })];
    const plan = planRuns(aSnapshot({ queued: [alice, bob], running, nodes, usage: { bob: 2.5 } }), NOW);
    expect(plan.placements.map((p) => p.runId)).toEqual([bob.id]);
    const heavier = planRuns(aSnapshot({ queued: [alice, bob], running, nodes, usage: { bob: 3.5 } }), NOW);
    expect(heavier.placements.map((p) => p.runId)).toEqual([alice.id]);
  });
});
