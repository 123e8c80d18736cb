/**
 * Benchmark: one planning round (read, plan, apply) on MariaDB vs SQLite, issue 11 item 8.
 *
 * For each engine: fresh migrated stores (test/support/scratch-state.ts: SQLite is a real file in a
 * temporary folder, opened as the leader opens it; MySQL a fresh database on the test MariaDB), 100
 * fake nodes of 8 GPUs and 2 CPU slots each, and 1,000 runs made as the lifecycle makes them
 * (createRun, `verified`, then `queued` with a resolved config). Runs ask for 1 or 2 GPUs, a share of
 * them none (CPU-only), seeded random (seeded-random.ts), from 50 users over 200 projects.
 *
 * Each timed round is what scheduler/lifecycle/plan-apply.ts's scheduleRound does for the database,
 * split in three: `readSnapshot` (one read transaction: queued + in-flight runs), `planRuns` (pure)
 * and `applyPlan` (one write transaction: claimQueued, re-check, then assignClaimed: the placements written in batches of 200, one UPDATE, one INSERT of their events and one read back per batch).
 * The queue-time estimates (withKnownTimes) and node messages are left out.
 *
 * Choice: every round sees a loaded queue of exactly 1,000 queued runs on an idle cluster. Between
 * rounds (untimed) the runs the round assigned are ended (`cancelled`) and as many new queued runs
 * are made, so the queue is back to 1,000. Draining one queue of 1,000 instead would time rounds on
 * a shrinking queue (730, then fewer) that say less about a loaded leader. The table of runs keeps
 * growing with the ended runs, as a leader's history does. Round 1 also pays the JIT warm-up; it is
 * shown in the per-round lines and counted in the max.
 *
 * Run: npx tsc -p tsconfig.build.json && node dist/test/bench/plan-apply-engines.js [rounds] [runs] [nodes]
 */
import { loadavg, cpus } from 'node:os';
import { applyPlan, plannedNode, readSnapshot } from '../../scheduler/lifecycle/plan-apply.js';
import { planRuns } from '../../scheduler/plan/plan.js';
import { silentLog } from '../../scheduler/common/log.js';
import { resolveRunConfig, type RunConfig } from '../../scheduler/policy/project-policy.js';
import type { RunStore } from '../../storage/run-store.js';
import type { StateEngine } from '../../storage/sql/state-database.js';
import { fakeNode } from '../support/lifecycle-fixtures.js';
import { scratchStores } from '../support/scratch-state.js';
import { seededRandom } from './seeded-random.js';

const ROUNDS = Number(process.argv[2] ?? 8);
const RUNS = Number(process.argv[3] ?? 1_000);
const NODES = Number(process.argv[4] ?? 100);
const GPUS_PER_NODE = 8;
const CPU_SLOTS = 2;
const CPU_SHARE = 0.15;
const USERS = 50;
const PROJECTS = 200;
const ENGINES: readonly StateEngine[] = ['sqlite', 'mysql'];

/** One timed round. */
interface Round {
  readMs: number;
  planMs: number;
  applyMs: number;
  totalMs: number;
  queued: number;
  assigned: number;
  refused: number;
}

/** The config `gpu: n` resolves to, as the lifecycle stores it on a queued run. */
function configFor(gpus: number): RunConfig {
  const policy = resolveRunConfig(`gpu: ${gpus}\n`, { maxRunforHours: 24, maxGpusPerRun: 8, largestNodeGpus: GPUS_PER_NODE });
  if (!policy.ok) throw new Error(`bench: secd.yml "gpu: ${gpus}" was refused: ${policy.reason}`);
  return policy.config;
}

/** Makes queued runs the way the lifecycle does: received, verified, queued with a config. */
class QueueFiller {
  private seq = 0;
  private readonly r = seededRandom(42);
  private readonly configs = [0, 1, 2].map(configFor);
  constructor(private readonly store: RunStore) {}

  async add(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const n = ++this.seq;
      const id = `run-${String(n).padStart(6, '0')}`;
      const project = Math.floor(this.r() * PROJECTS);
      const gpus = this.r() < CPU_SHARE ? 0 : this.r() < 0.5 ? 1 : 2;
      await this.store.createRun({
        id, projectId: project + 1, project: `lab/project-${project}`, ref: 'refs/heads/main', beforeSha: '0'.repeat(40),
        commit: n.toString(16).padStart(40, '0'), user: `user-${Math.floor(this.r() * USERS)}`, userId: 1, deliveryKey: id, fetchUrl: 'x',
      });
      await this.store.transition(id, 'verified', 'verified');
      const moved = await this.store.transition(id, 'queued', 'waiting for a node', { config: this.configs[gpus], warnings: [] });
      if (!moved.ok) throw new Error(`bench: run ${id} could not be queued (${moved.code})`);
    }
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function fmt(ms: number): string {
  return ms.toFixed(1);
}

/** Time `ROUNDS` rounds on fresh stores of `engine`. */
async function benchEngine(engine: StateEngine): Promise<{ rounds: Round[]; fillRunsPerSecond: number }> {
  const stores = await scratchStores(engine);
  try {
    const store = stores.runs;
    const handles = Array.from({ length: NODES }, (_, i) => fakeNode(`gpu-${String(i).padStart(3, '0')}`, { gpuCount: GPUS_PER_NODE, cpuSlots: CPU_SLOTS }));
    const nodes = () => handles.map(plannedNode);
    const filler = new QueueFiller(store);
    const fillStart = performance.now();
    await filler.add(RUNS);
    const fillRunsPerSecond = RUNS / ((performance.now() - fillStart) / 1000);
    const rounds: Round[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const t0 = performance.now();
      const snapshot = await readSnapshot(store, nodes);
      const t1 = performance.now();
      const plan = planRuns(snapshot, new Date());
      const t2 = performance.now();
      const { applied, rejected } = await applyPlan(plan, nodes(), { store, log: silentLog });
      const t3 = performance.now();
      if (snapshot.running.length !== 0) throw new Error(`bench: round ${i + 1} began with ${snapshot.running.length} runs in flight`);
      rounds.push({ readMs: t1 - t0, planMs: t2 - t1, applyMs: t3 - t2, totalMs: t3 - t0, queued: snapshot.queued.length, assigned: applied.length, refused: rejected.length });
      // Untimed: free the cluster and fill the queue back to RUNS.
      for (const { run } of applied) {
        const ended = await store.transition(run.id, 'cancelled', 'bench: round over');
        if (!ended.ok) throw new Error(`bench: run ${run.id} could not be ended (${ended.code})`);
      }
      await filler.add(applied.length);
    }
    return { rounds, fillRunsPerSecond };
  } finally {
    await stores.dispose();
  }
}

async function main(): Promise<void> {
  const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
  console.log(
    `plan+apply round: ${RUNS.toLocaleString('en')} queued runs (${Math.round(CPU_SHARE * 100)}% CPU-only, else 1-2 GPUs), ` +
      `${NODES} nodes x ${GPUS_PER_NODE} GPUs + ${CPU_SLOTS} CPU slots, ${ROUNDS} rounds per engine, queue refilled to ${RUNS} before each round`,
  );
  console.log(`machine: ${cpus().length} cores, load average (1/5/15 min) at start: ${load()}`);
  const results: Array<[StateEngine, Round[], number]> = [];
  for (const engine of ENGINES) {
    const { rounds, fillRunsPerSecond } = await benchEngine(engine);
    results.push([engine, rounds, fillRunsPerSecond]);
    console.log(`\n${engine}: made queued runs at ${Math.round(fillRunsPerSecond)} runs/s (3 write transactions each); load now ${load()}`);
    rounds.forEach((r, i) =>
      console.log(`  round ${i + 1}: read ${fmt(r.readMs)} plan ${fmt(r.planMs)} apply ${fmt(r.applyMs)} total ${fmt(r.totalMs)} ms; ${r.queued} queued, ${r.assigned} assigned, ${r.refused} refused`),
    );
  }
  console.log('\nengine  rounds  read med/max   plan med/max   apply med/max    total med/max    assigned/round med (min-max)');
  for (const [engine, rounds] of results) {
    const col = (pick: (r: Round) => number) => `${fmt(median(rounds.map(pick)))}/${fmt(Math.max(...rounds.map(pick)))}`.padEnd(15);
    const counts = rounds.map((r) => r.assigned);
    const assigned = `${median(counts)} (${Math.min(...counts)}-${Math.max(...counts)})`;
    console.log(`${engine.padEnd(8)}${String(rounds.length).padEnd(8)}${col((r) => r.readMs)}${col((r) => r.planMs)}${col((r) => r.applyMs)} ${col((r) => r.totalMs)}  ${assigned}`);
  }
  console.log(`\nload average (1/5/15 min) at end: ${load()}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
