import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { planRuns, DEFAULT_RESERVE_AFTER_MS, type Plan, type PlannedNode, type PlannedRun, type PlanSnapshot, type RunningRun } from './plan.js';
import { aNode, aRun, aRunning, PlanHarness, T0 } from './plan-builders.js';
import { checkPlan } from './plan-check.js';

const MIN = 60_000;
/** An hour after the builders' first queue time: runs built with defaults are ~1 h old. */
const now = new Date(T0 + 3_600_000);
/** Queued `ago` ms before `now`. */
const queuedAgo = (ago: number) => new Date(now.getTime() - ago).toISOString();
const fresh = () => queuedAgo(MIN);
const snapshot = (over: Partial<PlanSnapshot>): PlanSnapshot => ({ queued: [], running: [], nodes: [], ...over });
const nodeOf = (plan: Plan, runId: string) => plan.placements.find((p) => p.runId === runId)?.nodeId;

describe('where a run goes', () => {
  it.each([
    {
      rule: 'a GPU run goes to the node with the fewest free GPUs that fit',
      run: { gpus: 2, project: 'lab/a' },
      nodes: [aNode({ id: 'n1', gpuCount: 8 }), aNode({ id: 'n2', gpuCount: 2 }), aNode({ id: 'n3', gpuCount: 1 })],
      expected: { nodeId: 'n2', gpus: ['n2-g0', 'n2-g1'] },
    },
    {
      rule: 'among equally tight nodes, the one holding the project image wins',
      run: { gpus: 1, project: 'lab/a' },
      nodes: [aNode({ id: 'n1', gpuCount: 4 }), aNode({ id: 'n2', gpuCount: 4, images: ['lab/b', 'lab/a'] })],
      expected: { nodeId: 'n2', gpus: ['n2-g0'] },
    },
    {
      rule: 'best fit wins over the image when they disagree',
      run: { gpus: 1, project: 'lab/a' },
      nodes: [aNode({ id: 'n1', gpuCount: 2 }), aNode({ id: 'n2', gpuCount: 8, images: ['lab/a'] })],
      expected: { nodeId: 'n1', gpus: ['n1-g0'] },
    },
    {
      rule: 'equal nodes without the image: the lowest node id',
      run: { gpus: 1, project: 'lab/a' },
      nodes: [aNode({ id: 'n2', gpuCount: 4 }), aNode({ id: 'n1', gpuCount: 4 })],
      expected: { nodeId: 'n1', gpus: ['n1-g0'] },
    },
    {
      rule: 'a CPU-only run goes to a node holding the image, even a busier one',
      run: { gpus: 0, project: 'lab/a' },
      nodes: [aNode({ id: 'n1', cpuSlots: 4 }), aNode({ id: 'n2', cpuSlots: 1, images: ['lab/a'] })],
      expected: { nodeId: 'n2', gpus: [] },
    },
    {
      rule: 'a CPU-only run without an image holder goes to the node with the most free slots',
      run: { gpus: 0, project: 'lab/a' },
      nodes: [aNode({ id: 'n1', cpuSlots: 1 }), aNode({ id: 'n2', cpuSlots: 3 })],
      expected: { nodeId: 'n2', gpus: [] },
    },
    {
      rule: 'GPUs busy with processes that are not secd’s are not given out',
      run: { gpus: 2, project: 'lab/a' },
      nodes: [aNode({ id: 'n1', gpuCount: 4, foreignBusyGpus: ['n1-g0', 'n1-g2'] })],
      expected: { nodeId: 'n1', gpus: ['n1-g1', 'n1-g3'] },
    },
    {
      rule: 'draining and down nodes get nothing',
      run: { gpus: 1, project: 'lab/a' },
      nodes: [
        aNode({ id: 'n1', gpuCount: 8, state: 'draining' }),
        aNode({ id: 'n2', gpuCount: 8, state: 'down' }),
        aNode({ id: 'n3', gpuCount: 8 }),
      ],
      expected: { nodeId: 'n3', gpus: ['n3-g0'] },
    },
  ])('$rule', ({ run, nodes, expected }) => {
    const r = aRun(run);
    const plan = planRuns(snapshot({ queued: [r], nodes }), now);
    expect(plan.placements).toEqual([{ runId: r.id, ...expected }]);
  });

  it('GPUs and CPU slots held by running runs are not given out again', () => {
    const node = aNode({ id: 'n1', gpuCount: 2, cpuSlots: 1 });
    const running = [aRunning({ nodeId: 'n1', gpus: ['n1-g0'] }), aRunning({ nodeId: 'n1', gpus: [] })];
    const gpuRuns = [aRun({ gpus: 1 }), aRun({ gpus: 1 })];
    const cpuRun = aRun({ gpus: 0 });
    const plan = planRuns(snapshot({ queued: [...gpuRuns, cpuRun], running, nodes: [node] }), now);
    expect(plan.placements).toEqual([{ runId: gpuRuns[0]!.id, nodeId: 'n1', gpus: ['n1-g1'] }]);
    expect(plan.waiting.sort()).toEqual([gpuRuns[1]!.id, cpuRun.id].sort());
  });
});

describe('runs that can never start', () => {
  it.each([
    {
      rule: 'more GPUs than the largest node has is impossible, with a reason',
      run: { gpus: 9 },
      nodes: [aNode({ id: 'n1', gpuCount: 8 }), aNode({ id: 'n2', gpuCount: 4 })],
      expected: { code: 'more_gpus_than_any_node', reason: 'asks for 9 GPUs but the largest node has 8' },
    },
    {
      rule: 'a CPU-only run when no node takes CPU-only runs is impossible',
      run: { gpus: 0 },
      nodes: [aNode({ id: 'n1', gpuCount: 8, cpuSlots: 0 })],
      expected: { code: 'no_cpu_slots', reason: 'asks for no GPU but no node takes CPU-only runs' },
    },
  ])('$rule', ({ run, nodes, expected }) => {
    const r = aRun(run);
    const plan = planRuns(snapshot({ queued: [r], nodes }), now);
    expect(plan.impossible).toEqual([{ runId: r.id, ...expected }]);
    expect(plan.waiting).toEqual([]);
    expect(plan.placements).toEqual([]);
  });

  it.each([
    { rule: 'a run that only a down node is big enough for waits for it', nodes: [aNode({ id: 'n1', gpuCount: 8, state: 'down' }), aNode({ id: 'n2', gpuCount: 2 })] },
    { rule: 'a run that only a draining node is big enough for waits', nodes: [aNode({ id: 'n1', gpuCount: 8, state: 'draining' })] },
    { rule: 'a run whose node is busy with foreign processes waits', nodes: [aNode({ id: 'n1', gpuCount: 8, foreignBusyGpus: ['n1-g3'] })] },
    { rule: 'with no node known yet (a leader just restarted) every run waits', nodes: [] },
  ])('$rule', ({ nodes }) => {
    const r = aRun({ gpus: 8 });
    const plan = planRuns(snapshot({ queued: [r], nodes }), now);
    expect(plan).toEqual({ placements: [], waiting: [r.id], reservations: [], impossible: [] });
  });
});

describe('fair share', () => {
  it('a user with many queued runs does not make another user wait behind all of them', () => {
    const alice = [1, 2, 3].map(() => aRun({ user: 'alice' }));
    const bob = aRun({ user: 'bob' });
    const plan = planRuns(snapshot({ queued: [...alice, bob], nodes: [aNode({ cpuSlots: 2 })] }), now);
    expect(plan.placements.map((p) => p.runId)).toEqual([alice[0]!.id, bob.id]);
    expect(plan.waiting).toEqual([alice[1]!.id, alice[2]!.id]);
  });

  it('the user with fewer GPUs in use goes first, even when queued later and running more runs', () => {
    const alice = aRun({ user: 'alice', gpus: 1 });
    const bob = aRun({ user: 'bob', gpus: 1 });
    const running = [
      aRunning({ user: 'alice', nodeId: 'n1', gpus: ['n1-g0', 'n1-g1', 'n1-g2'] }),
      aRunning({ user: 'bob', nodeId: 'n1', gpus: ['n1-g3'] }),
      aRunning({ user: 'bob', nodeId: 'n1', gpus: [] }),
    ];
    const plan = planRuns(snapshot({ queued: [alice, bob], running, nodes: [aNode({ id: 'n1', gpuCount: 5 })] }), now);
    expect(plan.placements.map((p) => p.runId)).toEqual([bob.id]);
    expect(plan.waiting).toEqual([alice.id]);
  });

  it('runs of one user start in the order they were queued', () => {
    const runs = [aRun({ queuedAt: queuedAgo(3 * MIN) }), aRun({ queuedAt: queuedAgo(9 * MIN) }), aRun({ queuedAt: queuedAgo(5 * MIN) })];
    const plan = planRuns(snapshot({ queued: runs, nodes: [aNode({ cpuSlots: 2 })] }), now);
    expect(plan.placements.map((p) => p.runId)).toEqual([runs[1]!.id, runs[2]!.id]);
    expect(plan.waiting).toEqual([runs[0]!.id]);
  });

  it('CPU-only and smaller GPU runs backfill around a GPU run that does not fit yet', () => {
    const big = aRun({ user: 'alice', gpus: 4, queuedAt: fresh() });
    const cpu = aRun({ user: 'alice', gpus: 0 });
    const small = aRun({ user: 'bob', gpus: 1 });
    const node = aNode({ id: 'n1', gpuCount: 4, foreignBusyGpus: ['n1-g0'] });
    const plan = planRuns(snapshot({ queued: [big, cpu, small], nodes: [node] }), now);
    expect(plan.placements.map((p) => p.runId).sort()).toEqual([cpu.id, small.id].sort());
    expect(plan.waiting).toEqual([big.id]);
    expect(plan.reservations).toEqual([]);
  });

  it('story: one run behind 50 of another user’s starts in the first round a slot frees', () => {
    const nodes = [aNode({ id: 'n1', gpuCount: 4 })];
    const running = [0, 1, 2, 3].map((g) => aRunning({ user: 'alice', nodeId: 'n1', gpus: [`n1-g${g}`] }));
    const alice = Array.from({ length: 50 }, () => aRun({ user: 'alice', gpus: 1 }));
    const bob = aRun({ user: 'bob', gpus: 1 });
    const h = new PlanHarness({ nodes, running, queued: [...alice, bob], now });
    h.finishOldest();
    h.plan();
    expect(h.historyOf(bob.id).placedInRound).toBe(1);
  });
});

describe('claims: a GPU run that waited too long gets GPUs reserved', () => {
  const busyNodes = () => [aNode({ id: 'n1', gpuCount: 8 }), aNode({ id: 'n2', gpuCount: 8 }), aNode({ id: 'n3', gpuCount: 2 })];
  /** n1 has 2 free GPUs, n2 has 3, n3 (too small for 8) has 2. */
  const busyRunning = () => [
    aRunning({ user: 'bob', nodeId: 'n1', gpus: ['n1-g0', 'n1-g1', 'n1-g2', 'n1-g3', 'n1-g4', 'n1-g5'] }),
    aRunning({ user: 'bob', nodeId: 'n2', gpus: ['n2-g0', 'n2-g1', 'n2-g2', 'n2-g3', 'n2-g4'] }),
  ];

  it('an overdue run that fits nowhere claims the node closest to fitting, and nobody else takes GPUs there', () => {
    const big = aRun({ user: 'alice', gpus: 8, queuedAt: queuedAgo(DEFAULT_RESERVE_AFTER_MS) });
    const smalls = [aRun({ user: 'carol', gpus: 1 }), aRun({ user: 'carol', gpus: 1 }), aRun({ user: 'carol', gpus: 1 })];
    const cpu = aRun({ user: 'carol', gpus: 0 });
    const plan = planRuns(snapshot({ queued: [big, ...smalls, cpu], running: busyRunning(), nodes: busyNodes() }), now);
    expect(plan.reservations).toEqual([{ runId: big.id, nodeId: 'n2', heldGpus: ['n2-g5', 'n2-g6', 'n2-g7'], missing: 5 }]);
    expect(plan.waiting).toContain(big.id);
    expect(plan.placements.filter((p) => p.gpus.length > 0).map((p) => p.nodeId).sort()).toEqual(['n1', 'n1', 'n3']);
    // The claim holds GPUs only: CPU-only runs still use the node's CPU slots.
    expect(nodeOf(plan, cpu.id)).toBeDefined();
  });

  it('between nodes equally close to fitting, the claim goes to the one holding the image', () => {
    const big = aRun({ user: 'alice', project: 'lab/x', gpus: 8, queuedAt: queuedAgo(DEFAULT_RESERVE_AFTER_MS) });
    const nodes = [aNode({ id: 'n1', gpuCount: 8 }), aNode({ id: 'n2', gpuCount: 8, images: ['lab/x'] })];
    const running = ['n1', 'n2'].map((id) => aRunning({ user: 'bob', nodeId: id, gpus: [`${id}-g0`] }));
    const plan = planRuns(snapshot({ queued: [big], running, nodes }), now);
    expect(plan.reservations.map((r) => r.nodeId)).toEqual(['n2']);
  });

  it('before the bound, the same run claims nothing and smaller runs take the GPUs', () => {
    const big = aRun({ user: 'alice', gpus: 8, queuedAt: queuedAgo(DEFAULT_RESERVE_AFTER_MS - 1) });
    const smalls = [aRun({ user: 'carol', gpus: 2 }), aRun({ user: 'carol', gpus: 3 })];
    const plan = planRuns(snapshot({ queued: [big, ...smalls], running: busyRunning(), nodes: busyNodes() }), now);
    expect(plan.reservations).toEqual([]);
    expect(nodeOf(plan, smalls[1]!.id)).toBe('n2');
  });

  it('the bound is a planner option', () => {
    const big = aRun({ user: 'alice', gpus: 8, queuedAt: queuedAgo(2 * MIN) });
    const plan = planRuns(snapshot({ queued: [big], running: busyRunning(), nodes: busyNodes() }), now, { reserveAfterMs: MIN });
    expect(plan.reservations.map((r) => r.nodeId)).toEqual(['n2']);
  });

  it('an overdue run that fits now claims nothing and waits for its fair-share turn', () => {
    const big = aRun({ user: 'alice', gpus: 3, queuedAt: queuedAgo(DEFAULT_RESERVE_AFTER_MS * 2) });
    const running = [...busyRunning(), aRunning({ user: 'alice', nodeId: 'n3', gpus: ['n3-g0'] })];
    const light = aRun({ user: 'carol', gpus: 3, queuedAt: fresh() });
    const plan = planRuns(snapshot({ queued: [big, light], running, nodes: busyNodes() }), now);
    expect(plan.reservations).toEqual([]);
    expect(plan.placements).toEqual([{ runId: light.id, nodeId: 'n2', gpus: ['n2-g5', 'n2-g6', 'n2-g7'] }]);
  });

  it('each user holds at most one claim, and claims go to distinct nodes, lightest user first', () => {
    const overdue = queuedAgo(DEFAULT_RESERVE_AFTER_MS * 3);
    const alice = [aRun({ user: 'alice', gpus: 8, queuedAt: overdue }), aRun({ user: 'alice', gpus: 8, queuedAt: overdue })];
    const dave = aRun({ user: 'dave', gpus: 8, queuedAt: queuedAgo(DEFAULT_RESERVE_AFTER_MS) });
    const running = [...busyRunning(), aRunning({ user: 'alice', nodeId: 'n3', gpus: ['n3-g0'] })];
    const plan = planRuns(snapshot({ queued: [...alice, dave], running, nodes: busyNodes() }), now);
    expect(plan.reservations.map((r) => [r.runId, r.nodeId])).toEqual([
      [dave.id, 'n2'],
      [alice[0]!.id, 'n1'],
    ]);
  });

  it('story: an 8-GPU run starts in a cluster flooded with 1-GPU runs, which it never would without claims', () => {
    const story = (reserveAfterMs: number) => {
      const nodes = [aNode({ id: 'n1', gpuCount: 8 }), aNode({ id: 'n2', gpuCount: 8 })];
      const running = Array.from({ length: 16 }, (_, i) =>
        aRunning({ user: 'bob', nodeId: `n${(i % 2) + 1}`, gpus: [`n${(i % 2) + 1}-g${i >> 1}`] }),
      );
      const flood = Array.from({ length: 200 }, () => aRun({ user: 'bob', gpus: 1, queuedAt: queuedAgo(30 * MIN) }));
      const big = aRun({ user: 'alice', gpus: 8, queuedAt: now.toISOString() });
      const h = new PlanHarness({ nodes, running, queued: [...flood, big], now }, { reserveAfterMs });
      for (let round = 0; round < 60 && h.historyOf(big.id).placedInRound === undefined; round++) {
        h.advance(MIN);
        h.finishOldest();
        h.plan();
      }
      return { h, big };
    };
    const without = story(Number.POSITIVE_INFINITY);
    expect(without.h.historyOf(without.big.id).placedInRound).toBeUndefined();

    const { h, big } = story(DEFAULT_RESERVE_AFTER_MS);
    const placedIn = h.historyOf(big.id).placedInRound;
    expect(placedIn).toBeDefined();
    expect(h.historyOf(big.id).gpus).toHaveLength(8);
    // From its first claim on, nobody else got GPUs on the node it claimed.
    const firstClaim = h.rounds.findIndex((r) => r.plan.reservations.some((c) => c.runId === big.id));
    expect(firstClaim).toBeGreaterThanOrEqual(0);
    for (const { plan } of h.rounds.slice(firstClaim, placedIn! - 1)) {
      const claimed = plan.reservations.find((c) => c.runId === big.id)!.nodeId;
      expect(plan.placements.filter((p) => p.nodeId === claimed && p.gpus.length > 0)).toEqual([]);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Properties over random clusters.

const USERS = ['ann', 'ben', 'cai', 'dee'];
const PROJECTS = ['lab/a', 'lab/b', 'lab/c'];

const nodeArb = fc.record({
  state: fc.constantFrom<'up' | 'down' | 'draining'>('up', 'up', 'up', 'down', 'draining'),
  gpus: fc.integer({ min: 0, max: 8 }),
  cpuSlots: fc.integer({ min: 0, max: 3 }),
  images: fc.subarray(PROJECTS),
  // Per GPU: 0 free, 1 held by a running run, 2 busy with a foreign process.
  use: fc.array(fc.constantFrom(0, 0, 1, 2), { minLength: 8, maxLength: 8 }),
  runningUser: fc.constantFrom(...USERS),
  cpuRunning: fc.integer({ min: 0, max: 3 }),
});
const runArb = fc.record({
  user: fc.constantFrom(...USERS),
  project: fc.constantFrom(...PROJECTS),
  gpus: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 9 })),
  waitedMs: fc.integer({ min: 0, max: 30 * MIN }),
});
const snapshotArb = fc
  .record({
    nodes: fc.array(nodeArb, { maxLength: 6 }),
    runs: fc.array(runArb, { maxLength: 40 }),
    reserveAfterMs: fc.constantFrom(0, 5 * MIN, DEFAULT_RESERVE_AFTER_MS, Number.POSITIVE_INFINITY),
  })
  .map(({ nodes, runs, reserveAfterMs }) => {
    const planned: PlannedNode[] = [];
    const running: RunningRun[] = [];
    nodes.forEach((n, i) => {
      const id = `n${i}`;
      const gpus = Array.from({ length: n.gpus }, (_, g) => `${id}-g${g}`);
      planned.push({
        id,
        state: n.state,
        gpus,
        foreignBusyGpus: gpus.filter((_, g) => n.use[g] === 2),
        cpuSlots: n.cpuSlots,
        images: n.images,
      });
      const held = gpus.filter((_, g) => n.use[g] === 1);
      if (held.length) running.push({ id: `${id}-gpu-run`, user: n.runningUser, nodeId: id, gpus: held });
      for (let c = 0; c < n.cpuRunning; c++) running.push({ id: `${id}-cpu-run-${c}`, user: n.runningUser, nodeId: id, gpus: [] });
    });
    const queued: PlannedRun[] = runs.map((r, i) => ({
      id: `q${i}`,
      user: r.user,
      project: r.project,
      gpus: r.gpus,
      queuedAt: queuedAgo(r.waitedMs),
    }));
    return { snapshot: { queued, running, nodes: planned }, reserveAfterMs };
  });

function freeGpusOf(s: PlanSnapshot, nodeId: string): string[] {
  const node = s.nodes.find((n) => n.id === nodeId)!;
  const held = new Set(s.running.filter((r) => r.nodeId === nodeId).flatMap((r) => r.gpus));
  return node.gpus.filter((g) => !held.has(g) && !node.foreignBusyGpus.includes(g));
}

function shuffled<T>(xs: T[], seed: number): T[] {
  const out = [...xs];
  let s = seed || 1;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('planner invariants (property tests)', () => {
  it('every queued run is placed, waiting or impossible exactly once; impossible only when no node is big enough', () => {
    fc.assert(
      fc.property(snapshotArb, ({ snapshot: s, reserveAfterMs }) => {
        const plan = planRuns(s, now, { reserveAfterMs });
        const decided = [...plan.placements.map((p) => p.runId), ...plan.waiting, ...plan.impossible.map((r) => r.runId)];
        expect(decided.sort()).toEqual(s.queued.map((r) => r.id).sort());
        const largest = Math.max(0, ...s.nodes.map((n) => n.gpus.length));
        const anyCpu = s.nodes.some((n) => n.cpuSlots > 0);
        const expectedImpossible = s.nodes.length === 0 ? [] : s.queued.filter((r) => r.gpus > largest || (r.gpus === 0 && !anyCpu));
        expect(plan.impossible.map((r) => r.runId).sort()).toEqual(expectedImpossible.map((r) => r.id).sort());
      }),
    );
  });

  it('a GPU is never given twice, nor one that is held or foreign-busy; no node gets more than it has free; only up nodes get runs', () => {
    fc.assert(
      fc.property(snapshotArb, ({ snapshot: s, reserveAfterMs }) => {
        const plan = planRuns(s, now, { reserveAfterMs });
        const given = plan.placements.flatMap((p) => p.gpus);
        expect(new Set(given).size).toBe(given.length);
        for (const p of plan.placements) {
          const run = s.queued.find((r) => r.id === p.runId)!;
          expect(p.gpus).toHaveLength(run.gpus);
          expect(s.nodes.find((n) => n.id === p.nodeId)!.state).toBe('up');
          const free = freeGpusOf(s, p.nodeId);
          for (const g of p.gpus) expect(free).toContain(g);
        }
        for (const node of s.nodes) {
          const cpuRunning = s.running.filter((r) => r.nodeId === node.id && r.gpus.length === 0).length;
          const cpuPlaced = plan.placements.filter((p) => p.nodeId === node.id && p.gpus.length === 0).length;
          expect(cpuPlaced).toBeLessThanOrEqual(Math.max(0, node.cpuSlots - cpuRunning));
        }
      }),
    );
  });

  it('reserved GPUs are not taken by others; one claim per user, each on its own node, for a waiting overdue run', () => {
    fc.assert(
      fc.property(snapshotArb, ({ snapshot: s, reserveAfterMs }) => {
        const plan = planRuns(s, now, { reserveAfterMs });
        const claimedNodes = plan.reservations.map((r) => r.nodeId);
        expect(new Set(claimedNodes).size).toBe(claimedNodes.length);
        const claimUsers = plan.reservations.map((r) => s.queued.find((q) => q.id === r.runId)!.user);
        expect(new Set(claimUsers).size).toBe(claimUsers.length);
        for (const r of plan.reservations) {
          const run = s.queued.find((q) => q.id === r.runId)!;
          expect(plan.waiting).toContain(r.runId);
          expect(now.getTime() - Date.parse(run.queuedAt)).toBeGreaterThanOrEqual(reserveAfterMs);
          expect(r.heldGpus).toEqual(freeGpusOf(s, r.nodeId));
          expect(r.missing).toBe(run.gpus - r.heldGpus.length);
          expect(r.missing).toBeGreaterThan(0);
          expect(plan.placements.filter((p) => p.nodeId === r.nodeId && p.gpus.length > 0)).toEqual([]);
        }
      }),
    );
  });

  it('a plan re-checked against the very snapshot it was made from is applied whole (the apply check refuses only what changed)', () => {
    fc.assert(
      fc.property(snapshotArb, ({ snapshot: s, reserveAfterMs }) => {
        const plan = planRuns(s, now, { reserveAfterMs });
        const queued = new Set(s.queued.map((r) => r.id));
        const check = checkPlan(plan.placements, { runState: (id) => (queued.has(id) ? 'queued' : null), running: s.running, nodes: s.nodes });
        expect(check.rejected).toEqual([]);
        expect(check.accepted).toEqual(plan.placements);
      }),
    );
  });

  it('the same snapshot gives the same plan, whatever order it lists things in, and is not modified', () => {
    fc.assert(
      fc.property(snapshotArb, fc.integer({ min: 1, max: 1 << 30 }), ({ snapshot: s, reserveAfterMs }, seed) => {
        const before = structuredClone(s);
        const plan = planRuns(s, now, { reserveAfterMs });
        expect(s).toEqual(before);
        expect(planRuns(structuredClone(s), now, { reserveAfterMs })).toEqual(plan);
        const reordered = { queued: shuffled(s.queued, seed), running: shuffled(s.running, seed + 1), nodes: shuffled(s.nodes, seed + 2) };
        expect(planRuns(reordered, now, { reserveAfterMs })).toEqual(plan);
      }),
    );
  });

  it('users with equal usage take turns: while one user waits, no other gets more than one run more', () => {
    const sameSize = fc.record({
      gpus: fc.constantFrom(0, 1),
      users: fc.array(fc.constantFrom(...USERS), { minLength: 1, maxLength: 40 }),
      nodes: fc.array(fc.record({ gpus: fc.integer({ min: 0, max: 8 }), cpuSlots: fc.integer({ min: 0, max: 4 }) }), { minLength: 1, maxLength: 4 }),
    });
    fc.assert(
      fc.property(sameSize, ({ gpus, users, nodes }) => {
        const queued = users.map((user, i) => aRun({ id: `q${i}`, user, gpus, queuedAt: queuedAgo((40 - i) * 1000) }));
        const planned = nodes.map((n, i) => aNode({ id: `n${i}`, gpuCount: n.gpus, cpuSlots: n.cpuSlots }));
        const plan = planRuns(snapshot({ queued, nodes: planned }), now);
        const placed = (u: string) => plan.placements.filter((p) => queued.find((q) => q.id === p.runId)!.user === u).length;
        for (const waiter of new Set(plan.waiting.map((id) => queued.find((q) => q.id === id)!.user))) {
          for (const other of USERS) expect(placed(other)).toBeLessThanOrEqual(placed(waiter) + 1);
        }
      }),
    );
  });

  it('nobody waits behind another user’s whole queue: one run behind up to 60 of another’s starts within two rounds as slots free', () => {
    const scenario = fc.record({
      size: fc.constantFrom(0, 1, 2, 4),
      nodeCount: fc.integer({ min: 1, max: 3 }),
      aliceQueue: fc.integer({ min: 1, max: 60 }),
      aliceOverdue: fc.boolean(),
    });
    fc.assert(
      fc.property(scenario, ({ size, nodeCount, aliceQueue, aliceOverdue }) => {
        // Every node is full of alice's runs of `size`; each round the oldest ends, freeing one slot.
        const nodes = Array.from({ length: nodeCount }, (_, i) => aNode({ id: `n${i}`, gpuCount: 8, cpuSlots: 2 }));
        const running: RunningRun[] = [];
        for (const node of nodes) {
          const slots = size === 0 ? node.cpuSlots : 8 / size;
          for (let s = 0; s < slots; s++) {
            running.push(aRunning({ user: 'alice', nodeId: node.id, gpus: node.gpus.slice(s * size, (s + 1) * size) }));
          }
        }
        const waited = aliceOverdue ? 3 * DEFAULT_RESERVE_AFTER_MS : MIN;
        const alice = Array.from({ length: aliceQueue }, (_, i) => aRun({ user: 'alice', gpus: size, queuedAt: queuedAgo(waited - i) }));
        const bob = aRun({ user: 'bob', gpus: size, queuedAt: now.toISOString() });
        const h = new PlanHarness({ nodes, running, queued: [...alice, bob], now });
        for (let round = 0; round < 2; round++) {
          h.advance(1000);
          h.finishOldest();
          h.plan();
        }
        expect(h.historyOf(bob.id).placedInRound).toBeDefined();
      }),
    );
  });
});
