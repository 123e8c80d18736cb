/**
 * The planner's rules, one story each: where a run goes, which runs can never start, fair share
 * between users, and claims for GPU runs that waited too long. The invariants over random clusters
 * are in plan-properties.test.ts; applying a plan against a cluster that moved on, in plan-check.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { planRuns, DEFAULT_RESERVE_AFTER_MS, type Plan } from './plan.js';
import { aNode, aRun, aRunning, aSnapshot, NOW, PlanHarness, queuedAgo } from './plan-builders.js';

const MIN = 60_000;
const fresh = () => queuedAgo(MIN);
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
    const plan = planRuns(aSnapshot({ queued: [r], nodes }), NOW);
    expect(plan.placements).toEqual([{ runId: r.id, ...expected }]);
  });

  it('GPUs and CPU slots held by running runs are not given out again', () => {
    const node = aNode({ id: 'n1', gpuCount: 2, cpuSlots: 1 });
    const running = [aRunning({ nodeId: 'n1', gpus: ['n1-g0'] }), aRunning({ nodeId: 'n1', gpus: [] })];
    const gpuRuns = [aRun({ gpus: 1 }), aRun({ gpus: 1 })];
    const cpuRun = aRun({ gpus: 0 });
    const plan = planRuns(aSnapshot({ queued: [...gpuRuns, cpuRun], running, nodes: [node] }), NOW);
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
    const plan = planRuns(aSnapshot({ queued: [r], nodes }), NOW);
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
    const plan = planRuns(aSnapshot({ queued: [r], nodes }), NOW);
    expect(plan).toEqual({ placements: [], waiting: [r.id], reservations: [], impossible: [] });
  });
});

describe('fair share', () => {
  it('a user with many queued runs does not make another user wait behind all of them', () => {
    const alice = [1, 2, 3].map(() => aRun({ user: 'alice' }));
    const bob = aRun({ user: 'bob' });
    const plan = planRuns(aSnapshot({ queued: [...alice, bob], nodes: [aNode({ cpuSlots: 2 })] }), NOW);
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
    const plan = planRuns(aSnapshot({ queued: [alice, bob], running, nodes: [aNode({ id: 'n1', gpuCount: 5 })] }), NOW);
    expect(plan.placements.map((p) => p.runId)).toEqual([bob.id]);
    expect(plan.waiting).toEqual([alice.id]);
  });

  it('runs of one user start in the order they were queued', () => {
    const runs = [aRun({ queuedAt: queuedAgo(3 * MIN) }), aRun({ queuedAt: queuedAgo(9 * MIN) }), aRun({ queuedAt: queuedAgo(5 * MIN) })];
    const plan = planRuns(aSnapshot({ queued: runs, nodes: [aNode({ cpuSlots: 2 })] }), NOW);
    expect(plan.placements.map((p) => p.runId)).toEqual([runs[1]!.id, runs[2]!.id]);
    expect(plan.waiting).toEqual([runs[0]!.id]);
  });

  it('CPU-only and smaller GPU runs backfill around a GPU run that does not fit yet', () => {
    const big = aRun({ user: 'alice', gpus: 4, queuedAt: fresh() });
    const cpu = aRun({ user: 'alice', gpus: 0 });
    const small = aRun({ user: 'bob', gpus: 1 });
    const node = aNode({ id: 'n1', gpuCount: 4, foreignBusyGpus: ['n1-g0'] });
    const plan = planRuns(aSnapshot({ queued: [big, cpu, small], nodes: [node] }), NOW);
    expect(plan.placements.map((p) => p.runId).sort()).toEqual([cpu.id, small.id].sort());
    expect(plan.waiting).toEqual([big.id]);
    expect(plan.reservations).toEqual([]);
  });

  it('story: one run behind 50 of another user’s starts in the first round a slot frees', () => {
    const nodes = [aNode({ id: 'n1', gpuCount: 4 })];
    const running = [0, 1, 2, 3].map((g) => aRunning({ user: 'alice', nodeId: 'n1', gpus: [`n1-g${g}`] }));
    const alice = Array.from({ length: 50 }, () => aRun({ user: 'alice', gpus: 1 }));
    const bob = aRun({ user: 'bob', gpus: 1 });
    const h = new PlanHarness({ nodes, running, queued: [...alice, bob], now: NOW });
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
    const plan = planRuns(aSnapshot({ queued: [big, ...smalls, cpu], running: busyRunning(), nodes: busyNodes() }), NOW);
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
    const plan = planRuns(aSnapshot({ queued: [big], running, nodes }), NOW);
    expect(plan.reservations.map((r) => r.nodeId)).toEqual(['n2']);
  });

  it('before the bound, the same run claims nothing and smaller runs take the GPUs', () => {
    const big = aRun({ user: 'alice', gpus: 8, queuedAt: queuedAgo(DEFAULT_RESERVE_AFTER_MS - 1) });
    const smalls = [aRun({ user: 'carol', gpus: 2 }), aRun({ user: 'carol', gpus: 3 })];
    const plan = planRuns(aSnapshot({ queued: [big, ...smalls], running: busyRunning(), nodes: busyNodes() }), NOW);
    expect(plan.reservations).toEqual([]);
    expect(nodeOf(plan, smalls[1]!.id)).toBe('n2');
  });

  it('the bound is a planner option', () => {
    const big = aRun({ user: 'alice', gpus: 8, queuedAt: queuedAgo(2 * MIN) });
    const plan = planRuns(aSnapshot({ queued: [big], running: busyRunning(), nodes: busyNodes() }), NOW, { reserveAfterMs: MIN });
    expect(plan.reservations.map((r) => r.nodeId)).toEqual(['n2']);
  });

  it('an overdue run that fits now claims nothing and waits for its fair-share turn', () => {
    const big = aRun({ user: 'alice', gpus: 3, queuedAt: queuedAgo(DEFAULT_RESERVE_AFTER_MS * 2) });
    const running = [...busyRunning(), aRunning({ user: 'alice', nodeId: 'n3', gpus: ['n3-g0'] })];
    const light = aRun({ user: 'carol', gpus: 3, queuedAt: fresh() });
    const plan = planRuns(aSnapshot({ queued: [big, light], running, nodes: busyNodes() }), NOW);
    expect(plan.reservations).toEqual([]);
    expect(plan.placements).toEqual([{ runId: light.id, nodeId: 'n2', gpus: ['n2-g5', 'n2-g6', 'n2-g7'] }]);
  });

  it('each user holds at most one claim, and claims go to distinct nodes, lightest user first', () => {
    const overdue = queuedAgo(DEFAULT_RESERVE_AFTER_MS * 3);
    const alice = [aRun({ user: 'alice', gpus: 8, queuedAt: overdue }), aRun({ user: 'alice', gpus: 8, queuedAt: overdue })];
    const dave = aRun({ user: 'dave', gpus: 8, queuedAt: queuedAgo(DEFAULT_RESERVE_AFTER_MS) });
    const running = [...busyRunning(), aRunning({ user: 'alice', nodeId: 'n3', gpus: ['n3-g0'] })];
    const plan = planRuns(aSnapshot({ queued: [...alice, dave], running, nodes: busyNodes() }), NOW);
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
      const big = aRun({ user: 'alice', gpus: 8, queuedAt: NOW.toISOString() });
      const h = new PlanHarness({ nodes, running, queued: [...flood, big], now: NOW }, { reserveAfterMs });
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
