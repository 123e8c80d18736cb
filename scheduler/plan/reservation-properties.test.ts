/**
 * The start times' promises over random clusters (fast-check): a reservation is never delayed by any
 * run a plan places (backfilled runs end by its start on the GPUs they take, or take GPUs it does
 * not need), nor by a running run; over rounds, a large run's start time never slips while smaller
 * runs backfill around it; and no run starves.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { planRuns, type PlannedNode, type PlannedRun, type RunningRun } from './plan.js';
import { NOW } from './plan-builders.js';
import { latestEndMs } from './reservations.js';
import { queuePlaces } from './queue-place.js';

const MIN = 60_000;
const USERS = ['ann', 'ben', 'cai', 'dee'];
const nowMs = NOW.getTime();

const clusterArb = fc
  .record({
    nodes: fc.array(fc.record({ gpus: fc.integer({ min: 1, max: 8 }), held: fc.array(fc.integer({ min: 0, max: 240 }), { minLength: 8, maxLength: 8 }), heldShare: fc.double({ min: 0, max: 1, noNaN: true }) }), { minLength: 1, maxLength: 5 }),
    runs: fc.array(fc.record({ user: fc.constantFrom(...USERS), gpus: fc.integer({ min: 0, max: 8 }), waitedMin: fc.integer({ min: 0, max: 30 }), runforMin: fc.option(fc.integer({ min: 1, max: 300 }), { nil: undefined }) }), { maxLength: 30 }),
    headReservations: fc.integer({ min: 0, max: 4 }),
    usage: fc.dictionary(fc.constantFrom(...USERS), fc.double({ min: 0, max: 50, noNaN: true })),
  })
  .map(({ nodes, runs, headReservations, usage }) => {
    const planned: PlannedNode[] = [];
    const running: RunningRun[] = [];
    nodes.forEach((n, i) => {
      const id = `n${i}`;
      const gpus = Array.from({ length: n.gpus }, (_, g) => `${id}-g${g}`);
      planned.push({ id, state: 'up', gpus, foreignBusyGpus: [], cpuSlots: 1, images: [] });
      gpus.forEach((g, k) => {
        // Held GPUs end 1-240 min from now (their run started 10 min ago); held[k] = 0: free.
        if (n.held[k]! > 0 && k / n.gpus < n.heldShare) {
          running.push({ id: `${g}-run`, user: USERS[k % USERS.length]!, nodeId: id, gpus: [g], startedAt: new Date(nowMs - 10 * MIN).toISOString(), runforMs: (n.held[k]! + 10) * MIN });
        }
      });
    });
    const queued: PlannedRun[] = runs.map((r, i) => ({
      id: `q${i}`,
      user: r.user,
      project: 'lab/a',
      gpus: r.gpus,
      queuedAt: new Date(nowMs - r.waitedMin * MIN).toISOString(),
      ...(r.runforMin === undefined ? {} : { runforMs: r.runforMin * MIN }),
    }));
    return { snapshot: { queued, running, nodes: planned, usage }, headReservations };
  });

describe('start-time invariants (property tests)', () => {
  it('no run placed by a plan, nor any running run, holds a reserved GPU past the reservation’s start', () => {
    fc.assert(
      fc.property(clusterArb, ({ snapshot, headReservations }) => {
        const plan = planRuns(snapshot, NOW, { headReservations });
        const runOf = new Map(snapshot.queued.map((r) => [r.id, r]));
        for (const r of plan.reservations) {
          if (!r.startsAt) continue;
          const start = Date.parse(r.startsAt);
          expect(r.gpus).toHaveLength(runOf.get(r.runId)!.gpus);
          const needs = new Set(r.gpus);
          for (const p of plan.placements) {
            if (p.nodeId !== r.nodeId || !p.gpus.some((g) => needs.has(g))) continue;
            const runfor = runOf.get(p.runId)!.runforMs;
            expect(runfor).toBeDefined();
            expect(nowMs + runfor!).toBeLessThanOrEqual(start);
          }
          for (const run of snapshot.running) {
            if (run.nodeId === r.nodeId && run.gpus.some((g) => needs.has(g))) expect(latestEndMs(run, nowMs)).toBeLessThanOrEqual(start);
          }
          // Two reservations sharing a GPU do not overlap in time.
          for (const other of plan.reservations) {
            if (other === r || !other.startsAt || other.nodeId !== r.nodeId || !other.gpus!.some((g) => needs.has(g))) continue;
            const [first, second] = Date.parse(other.startsAt) <= start ? [other, r] : [r, other];
            const firstRunfor = runOf.get(first.runId)!.runforMs!;
            expect(Date.parse(first.startsAt!) + firstRunfor).toBeLessThanOrEqual(Date.parse(second.startsAt!));
          }
        }
      }),
    );
  });

  it('every waiting run has one place in its line, numbered from 1 without gaps; start times only where reserved', () => {
    fc.assert(
      fc.property(clusterArb, ({ snapshot, headReservations }) => {
        const plan = planRuns(snapshot, NOW, { headReservations });
        const gpusOf = (id: string) => snapshot.queued.find((q) => q.id === id)!.gpus;
        const places = queuePlaces(plan, gpusOf);
        expect([...places.keys()].sort()).toEqual([...plan.waiting].sort());
        for (const kind of [true, false]) {
          const positions = plan.waiting.filter((id) => gpusOf(id) > 0 === kind).map((id) => places.get(id)!.position);
          expect(positions).toEqual(positions.map((_, i) => i + 1));
        }
        const timed = new Set(plan.reservations.filter((r) => r.startsAt).map((r) => r.runId));
        for (const [id, place] of places) expect(place.startsBy !== null).toBe(timed.has(id));
      }),
    );
  });
});

interface SimRun extends PlannedRun {
  durationMs: number;
}

/**
 * Rounds a minute apart over a fixed set of runs, each ending after its own duration (at most its
 * runfor); returns when each started and every start time it was told.
 */
function simulate(nodes: PlannedNode[], runs: SimRun[], maxRounds: number, headReservations?: number) {
  let now = nowMs;
  let queued = runs.filter((r) => Date.parse(r.queuedAt) <= now);
  let running: Array<RunningRun & { endMs: number }> = [];
  const started = new Map<string, number>();
  const promises = new Map<string, number[]>();
  for (let round = 0; round < maxRounds && started.size < runs.length; round++, now += MIN) {
    running = running.filter((r) => r.endMs > now);
    queued = [...queued, ...runs.filter((r) => !started.has(r.id) && !queued.includes(r) && Date.parse(r.queuedAt) <= now)];
    const plan = planRuns({ queued, running, nodes }, new Date(now), headReservations === undefined ? {} : { headReservations });
    for (const r of plan.reservations) if (r.startsAt) promises.set(r.runId, [...(promises.get(r.runId) ?? []), Date.parse(r.startsAt)]);
    for (const p of plan.placements) {
      const run = runs.find((r) => r.id === p.runId)!;
      started.set(run.id, now);
      running.push({ id: run.id, user: run.user, nodeId: p.nodeId, gpus: p.gpus, startedAt: new Date(now).toISOString(), runforMs: run.runforMs!, endMs: now + run.durationMs });
    }
    const placed = new Set(plan.placements.map((p) => p.runId));
    queued = queued.filter((q) => !placed.has(q.id));
  }
  return { started, promises };
}

describe('start times over rounds', () => {
  it('a large run’s start time never slips while other users’ small runs backfill, and it starts by the first one it was told', () => {
    const scenario = fc.record({
      nodeCount: fc.integer({ min: 1, max: 3 }),
      held: fc.array(fc.integer({ min: 5, max: 120 }), { minLength: 24, maxLength: 24 }),
      smalls: fc.array(fc.record({ user: fc.constantFrom('ben', 'cai'), gpus: fc.integer({ min: 1, max: 3 }), runforMin: fc.integer({ min: 1, max: 180 }), usedShare: fc.double({ min: 0.1, max: 1, noNaN: true }), arriveMin: fc.integer({ min: 0, max: 60 }) }), { maxLength: 40 }),
    });
    fc.assert(
      fc.property(scenario, ({ nodeCount, held, smalls }) => {
        const nodes = Array.from({ length: nodeCount }, (_, i): PlannedNode => ({ id: `n${i}`, state: 'up', gpus: Array.from({ length: 8 }, (_, g) => `n${i}-g${g}`), foreignBusyGpus: [], cpuSlots: 0, images: [] }));
        // Every GPU busy at first with a run of ben's ending within 2 h.
        const first: SimRun[] = nodes.flatMap((n, i) =>
          n.gpus.map((g, k) => ({ id: `${g}-first`, user: 'ben', project: 'lab/a', gpus: 1, queuedAt: new Date(nowMs).toISOString(), runforMs: held[i * 8 + k]! * MIN, durationMs: held[i * 8 + k]! * MIN })),
        );
        const big: SimRun = { id: 'big', user: 'ann', project: 'lab/a', gpus: 8, queuedAt: new Date(nowMs + MIN).toISOString(), runforMs: 60 * MIN, durationMs: 60 * MIN };
        const small = smalls.map((s, i): SimRun => ({ id: `s${i}`, user: s.user, project: 'lab/a', gpus: s.gpus, queuedAt: new Date(nowMs + (1 + s.arriveMin) * MIN).toISOString(), runforMs: s.runforMin * MIN, durationMs: Math.max(MIN, Math.round(s.usedShare * s.runforMin) * MIN) }));
        const { started, promises } = simulate(nodes, [...first, big, ...small], 24 * 60);
        const told = promises.get('big') ?? [];
        expect(started.has('big')).toBe(true);
        if (told.length === 0) return; // it fit when it arrived
        for (let i = 1; i < told.length; i++) expect(told[i]!).toBeLessThanOrEqual(told[i - 1]!);
        // Rounds are a minute apart: it starts in the first round at or after its time.
        expect(started.get('big')!).toBeLessThan(told[0]! + MIN);
      }),
      { numRuns: 60 },
    );
  });

  it('no run starves: in a finite workload of mixed sizes and users, every run starts', () => {
    const workload = fc.array(
      fc.record({ user: fc.constantFrom(...USERS), gpus: fc.constantFrom(1, 1, 1, 2, 4, 8), runforMin: fc.integer({ min: 1, max: 120 }), usedShare: fc.double({ min: 0.05, max: 1, noNaN: true }), arriveMin: fc.integer({ min: 0, max: 120 }) }),
      { minLength: 1, maxLength: 60 },
    );
    fc.assert(
      fc.property(workload, fc.integer({ min: 0, max: 3 }), (runs, headReservations) => {
        const nodes = [0, 1].map((i): PlannedNode => ({ id: `n${i}`, state: 'up', gpus: Array.from({ length: 8 }, (_, g) => `n${i}-g${g}`), foreignBusyGpus: [], cpuSlots: 0, images: [] }));
        const sim = runs.map((r, i): SimRun => ({ id: `r${i}`, user: r.user, project: 'lab/a', gpus: r.gpus, queuedAt: new Date(nowMs + r.arriveMin * MIN).toISOString(), runforMs: r.runforMin * MIN, durationMs: Math.max(MIN, Math.round(r.usedShare * r.runforMin) * MIN) }));
        // However the work is ordered, all of it fits end to end in the sum of the runfors plus the arrivals.
        const bound = 120 + sim.reduce((sum, r) => sum + r.runforMs! / MIN + 1, 0);
        const { started } = simulate(nodes, sim, bound, headReservations);
        expect(sim.filter((r) => !started.has(r.id)).map((r) => r.id)).toEqual([]);
      }),
      { numRuns: 60 },
    );
  });
});
