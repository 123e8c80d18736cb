/**
 * Benchmark: how fast does the planner decide?
 *
 * Plans 10,000 queued runs over 500 nodes × 8 GPUs with `planRuns` for a few mixes and prints
 * placement decisions per second (every queued run decided — placed, waiting or impossible — is one
 * decision). Goal: >= 50,000/s on one core (Slurm's validated rate is 500 jobs/s). Snapshot building
 * is not timed: the planner is. It also times the apply-time re-check of each plan's placements
 * (plan-check.ts) against the snapshot itself, which the leader pays once per round on top of the
 * plan. Pin it to one core to measure what the goal says:
 *
 * Run: npm run build && taskset -c 0 node dist/test/bench/planner.js [runs] [nodes]
 */
import { planRuns, DEFAULT_RESERVE_AFTER_MS, type Plan, type PlannedNode, type PlannedRun, type PlanSnapshot, type RunningRun } from '../../scheduler/plan/plan.js';
import { checkPlan, type FreshState } from '../../scheduler/plan/plan-check.js';
import { seededRandom } from './seeded-random.js';

const RUNS = Number(process.argv[2] ?? 10_000);
const NODES = Number(process.argv[3] ?? 500);
const GPUS_PER_NODE = 8;
const NOW = new Date('2026-01-01T12:00:00Z');

interface Mix {
  name: string;
  users: number;
  projects: number;
  /** Share of CPU-only runs. */
  cpuShare: number;
  /** Share of every node's GPUs held by running runs, and busy with foreign processes. */
  heldShare: number;
  foreignShare: number;
  /** Share of queued runs older than the claim bound. */
  overdueShare: number;
}

const MIXES: Mix[] = [
  { name: 'all GPU, idle cluster, 50 users', users: 50, projects: 200, cpuShare: 0, heldShare: 0, foreignShare: 0, overdueShare: 0 },
  { name: 'mixed: 40% CPU-only, 50 users', users: 50, projects: 200, cpuShare: 0.4, heldShare: 0, foreignShare: 0, overdueShare: 0 },
  { name: 'many users: 5,000 users, 20% CPU', users: 5_000, projects: 2_000, cpuShare: 0.2, heldShare: 0, foreignShare: 0, overdueShare: 0 },
  { name: 'busy: 90% GPUs held, 2% foreign, half overdue (claims)', users: 200, projects: 500, cpuShare: 0.2, heldShare: 0.9, foreignShare: 0.02, overdueShare: 0.5 },
];

function gpuSize(r: () => number): number {
  const x = r();
  return x < 0.5 ? 1 : x < 0.75 ? 2 : x < 0.9 ? 4 : 8;
}

function buildSnapshot(mix: Mix, seed: number): PlanSnapshot {
  const r = seededRandom(seed);
  const project = () => `group/project-${Math.floor(r() * mix.projects)}`;
  const nodes: PlannedNode[] = [];
  const running: RunningRun[] = [];
  for (let n = 0; n < NODES; n++) {
    const id = `gpu-${String(n).padStart(4, '0')}`;
    const gpus = Array.from({ length: GPUS_PER_NODE }, (_, g) => `GPU-${id}-${g}`);
    const foreign: string[] = [];
    for (const g of gpus) {
      const x = r();
      if (x < mix.foreignShare) foreign.push(g);
      else if (x < mix.foreignShare + mix.heldShare) running.push({ id: `running-${id}-${g}`, user: `user-${Math.floor(r() * mix.users)}`, nodeId: id, gpus: [g] });
    }
    const images = Array.from({ length: 10 }, project);
    nodes.push({ id, state: r() < 0.01 ? 'draining' : 'up', gpus, foreignBusyGpus: foreign, cpuSlots: 4, images });
  }
  const queued: PlannedRun[] = [];
  for (let i = 0; i < RUNS; i++) {
    const overdue = r() < mix.overdueShare;
    const waitedMs = overdue ? DEFAULT_RESERVE_AFTER_MS + r() * 3_600_000 : r() * (DEFAULT_RESERVE_AFTER_MS - 1);
    queued.push({
      id: `run-${i}`,
      user: `user-${Math.floor(r() * mix.users)}`,
      project: project(),
      gpus: r() < mix.cpuShare ? 0 : gpuSize(r),
      queuedAt: new Date(NOW.getTime() - waitedMs).toISOString(),
    });
  }
  return { queued, running, nodes };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median milliseconds of the apply-time check of `plan` against the snapshot it was made from. */
function checkMs(snapshot: PlanSnapshot, plan: Plan): number {
  const queued = new Set(snapshot.queued.map((r) => r.id));
  const fresh: FreshState = { runState: (id) => (queued.has(id) ? 'queued' : null), running: snapshot.running, nodes: snapshot.nodes };
  const times: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t = performance.now();
    const check = checkPlan(plan.placements, fresh);
    times.push(performance.now() - t);
    if (check.rejected.length > 0) throw new Error(`the check refused ${check.rejected.length} placements of an unchanged cluster`);
  }
  return median(times);
}

function main(): void {
  console.log(`planner: ${RUNS.toLocaleString('en')} queued runs, ${NODES} nodes x ${GPUS_PER_NODE} GPUs (goal >= 50,000 decisions/s on one core)`);
  for (const mix of MIXES) {
    const snapshot = buildSnapshot(mix, 42);
    for (let i = 0; i < 3; i++) planRuns(snapshot, NOW); // warm up the JIT
    const times: number[] = [];
    let plan = planRuns(snapshot, NOW);
    const until = performance.now() + 2_000;
    while (times.length < 10 || (performance.now() < until && times.length < 200)) {
      const t = performance.now();
      plan = planRuns(snapshot, NOW);
      times.push(performance.now() - t);
    }
    const ms = median(times);
    const decisions = plan.placements.length + plan.waiting.length + plan.impossible.length;
    const perSecond = Math.round(decisions / (ms / 1000));
    console.log(
      `  ${mix.name.padEnd(56)} ${perSecond.toLocaleString('en').padStart(11)} decisions/s  ` +
        `(median ${ms.toFixed(1)} ms over ${times.length} plans; ${plan.placements.length} placed, ` +
        `${plan.waiting.length} waiting, ${plan.reservations.length} claims, ${plan.impossible.length} impossible; ` +
        `apply check ${checkMs(snapshot, plan).toFixed(2)} ms)`,
    );
  }
}

main();
