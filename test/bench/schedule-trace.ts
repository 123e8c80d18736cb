/**
 * Benchmark: how well does the planner schedule a GPU cluster's day-to-day load?
 *
 * A seeded synthetic trace shaped like the published GPU-cluster studies (Microsoft Philly, ATC'19;
 * SenseTime Helios, SC'21; Alibaba PAI, NSDI'22): most runs take 1 GPU, some 2 or 4, about one in
 * ten a whole 8-GPU node; durations are heavy-tailed (log-normal, median ~20 min, capped at the
 * 24 h `runfor` limit); `runfor` is what researchers ask for, one to four times what the run needs,
 * in quarter hours, and a few runs hit it; 40 users of very unequal activity submit in bursts.
 * 20,000 runs over 64 nodes × 8 GPUs, arrivals spread so the trace offers ~97 % of the cluster.
 *
 * Simulated time, a planning round a minute (as the leader plans on each event; builds and uploads
 * take no time here). The same trace goes through `planRuns` (fair share on decayed GPU-hours,
 * reservations with start times, EASY backfill) and through plain FIFO (the oldest run first; when
 * it does not fit, nothing behind it starts). Printed: GPU utilisation while runs arrive, mean and
 * p95 wait, the largest wait of an 8-GPU run, and for the planner how often a promised start time
 * was kept. Goal: utilisation ≥ 90 % while p95 wait beats FIFO's, and no 8-GPU run waits longer
 * than under FIFO (which never starves a run).
 *
 * Run: npm run build && node dist/test/bench/schedule-trace.js [runs] [seed] [head reservations]
 */
import { planRuns, type PlannedNode, type PlannedRun, type RunningRun } from '../../scheduler/plan/plan.js';
import { UsageLedger, DEFAULT_FAIR_SHARE_HALF_LIFE_HOURS } from '../../scheduler/plan/fair-share.js';
import { seededRandom } from './seeded-random.js';

const RUNS = Number(process.argv[2] ?? 20_000);
const SEED = Number(process.argv[3] ?? 7);
/** Head-of-line start times per round (plan.ts rule 6); the planner's default unless given. */
const HEAD = process.argv[4] === undefined ? undefined : Number(process.argv[4]);
const NODES = 64;
const GPUS_PER_NODE = 8;
const USERS = 40;
const LOAD = 0.97;
const ROUND_MS = 60_000;
const MIN = 60_000;
const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 0, 5, 0, 0, 0);

interface TraceRun {
  id: string;
  user: string;
  gpus: number;
  arriveMs: number;
  durationMs: number;
  runforMs: number;
}

function makeTrace(count: number, seed: number): TraceRun[] {
  const r = seededRandom(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  // Zipf-like activity: user k submits in proportion to 1/(k+1).
  const weights = Array.from({ length: USERS }, (_, k) => 1 / (k + 1));
  const total = weights.reduce((a, b) => a + b, 0);
  const pickUser = () => {
    let x = r() * total;
    for (let k = 0; k < USERS; k++) if ((x -= weights[k]!) <= 0) return k;
    return USERS - 1;
  };
  const runs: Array<Omit<TraceRun, 'arriveMs'> & { burst: number; offsetMs: number }> = [];
  let burst = 0;
  while (runs.length < count) {
    // A burst: one user pushes 1 to ~40 runs (geometric, mean 8) within a few minutes, all alike in size.
    const user = pickUser();
    const size = (() => {
      const x = r();
      return x < 0.72 ? 1 : x < 0.82 ? 2 : x < 0.9 ? 4 : 8;
    })();
    const n = Math.min(count - runs.length, 1 + Math.floor(Math.log(1 - r()) / Math.log(1 - 1 / 8)));
    for (let i = 0; i < n; i++) {
      const duration = Math.min(24 * HOUR, Math.max(MIN, 20 * MIN * Math.exp(1.5 * normal())));
      const asked = duration * (1 + 3 * r());
      let runforMs = Math.min(24 * HOUR, Math.ceil(asked / (15 * MIN)) * 15 * MIN);
      // One run in twenty runs into its limit.
      const timedOut = r() < 0.05;
      runs.push({
        id: `run-${String(runs.length).padStart(5, '0')}`,
        user: `user-${String(user).padStart(2, '0')}`,
        gpus: size,
        durationMs: timedOut ? runforMs : Math.min(duration, runforMs),
        runforMs,
        burst,
        offsetMs: i * r() * 30_000,
      });
    }
    burst++;
  }
  // Bursts arrive as a Poisson process over a span chosen so the trace offers LOAD of the cluster.
  const gpuMs = runs.reduce((sum, x) => sum + x.gpus * x.durationMs, 0);
  const spanMs = gpuMs / (NODES * GPUS_PER_NODE * LOAD);
  const starts: number[] = [0];
  for (let b = 1; b < burst; b++) starts.push(starts[b - 1]! - Math.log(1 - r()));
  const scale = spanMs / starts[burst - 1]!;
  return runs
    .map(({ burst: b, offsetMs, ...run }) => ({ ...run, arriveMs: T0 + Math.round(starts[b]! * scale + offsetMs) }))
    .sort((a, b) => a.arriveMs - b.arriveMs || (a.id < b.id ? -1 : 1));
}

interface Outcome {
  startMs: Map<string, number>;
  rounds: number;
  planMs: number;
  /** Planner only: runs given a start time, and those started later than it (beyond one round). */
  promised: number;
  late: number;
}

const nodes: PlannedNode[] = Array.from({ length: NODES }, (_, n) => {
  const id = `gpu-${String(n).padStart(2, '0')}`;
  return { id, state: 'up', gpus: Array.from({ length: GPUS_PER_NODE }, (_, g) => `${id}-g${g}`), foreignBusyGpus: [], cpuSlots: 0, images: [] };
});

/**
 * Rounds a minute apart until every run has started: arrivals join the queue, runs past their
 * duration end, then `decide` places runs. Guards that no GPU is given twice.
 */
function simulate(trace: TraceRun[], decide: (nowMs: number, queued: TraceRun[], running: Running[]) => Array<{ run: TraceRun; nodeId: string; gpus: string[] }>): Outcome {
  const startMs = new Map<string, number>();
  let queued: TraceRun[] = [];
  let running: Running[] = [];
  const busy = new Set<string>();
  let next = 0;
  let rounds = 0;
  let planMs = 0;
  for (let now = trace[0]!.arriveMs; startMs.size < trace.length; now += ROUND_MS) {
    let changed = false;
    while (next < trace.length && trace[next]!.arriveMs <= now) {
      queued.push(trace[next++]!);
      changed = true;
    }
    const still: Running[] = [];
    for (const r of running) {
      if (r.endMs <= now) {
        for (const g of r.gpus) busy.delete(g);
        changed = true;
      } else still.push(r);
    }
    running = still;
    if (!changed || queued.length === 0) continue;
    rounds++;
    const t = performance.now();
    const placed = decide(now, queued, running);
    planMs += performance.now() - t;
    const gone = new Set<string>();
    for (const p of placed) {
      for (const g of p.gpus) {
        if (busy.has(g)) throw new Error(`GPU ${g} given twice (run ${p.run.id})`);
        busy.add(g);
      }
      if (p.gpus.length !== p.run.gpus) throw new Error(`run ${p.run.id} got ${p.gpus.length} GPUs, asked for ${p.run.gpus}`);
      running.push({ run: p.run, nodeId: p.nodeId, gpus: p.gpus, startMs: now, endMs: now + p.run.durationMs });
      startMs.set(p.run.id, now);
      gone.add(p.run.id);
    }
    queued = queued.filter((q) => !gone.has(q.id));
  }
  return { startMs, rounds, planMs, promised: 0, late: 0 };
}

interface Running {
  run: TraceRun;
  nodeId: string;
  gpus: string[];
  startMs: number;
  endMs: number;
}

/** The planner, as the leader runs it: decayed usage from the runs that ended, start times from runfor. */
function withPlanner(trace: TraceRun[]): Outcome {
  const ledger = new UsageLedger(DEFAULT_FAIR_SHARE_HALF_LIFE_HOURS);
  const promise = new Map<string, number>();
  let late = 0;
  const settled = new Set<string>();
  let last: Running[] = [];
  const outcome = simulate(trace, (nowMs, queued, running) => {
    // Runs that were running last round and are gone now have ended: fold them into the ledger.
    const still = new Set(running.map((r) => r.run.id));
    for (const r of last) {
      if (!still.has(r.run.id) && !settled.has(r.run.id)) {
        settled.add(r.run.id);
        ledger.add({ user: r.run.user, gpus: r.gpus.length, startMs: r.startMs, endMs: r.endMs });
      }
    }
    const usage = ledger.usageAt(nowMs, running.map((r) => ({ user: r.run.user, gpus: r.gpus.length, startMs: r.startMs, endMs: nowMs })));
    const byId = new Map(queued.map((q) => [q.id, q]));
    const snapshot = {
      queued: queued.map((q): PlannedRun => ({ id: q.id, user: q.user, project: 'lab/p', gpus: q.gpus, queuedAt: new Date(q.arriveMs).toISOString(), runforMs: q.runforMs })),
      running: running.map((r): RunningRun => ({ id: r.run.id, user: r.run.user, nodeId: r.nodeId, gpus: r.gpus, startedAt: new Date(r.startMs).toISOString(), runforMs: r.run.runforMs })),
      nodes,
      usage,
    };
    const plan = planRuns(snapshot, new Date(nowMs), HEAD === undefined ? {} : { headReservations: HEAD });
    for (const res of plan.reservations) {
      // The first start time a run is told is the one it holds the planner to.
      if (res.startsAt && !promise.has(res.runId)) promise.set(res.runId, Date.parse(res.startsAt));
    }
    const placed = plan.placements.map((p) => ({ run: byId.get(p.runId)!, nodeId: p.nodeId, gpus: p.gpus }));
    for (const p of placed) {
      const by = promise.get(p.run.id);
      if (by !== undefined && nowMs > by + ROUND_MS) late++;
    }
    last = [...running, ...placed.map((p) => ({ ...p, startMs: nowMs, endMs: nowMs + p.run.durationMs }))];
    return placed;
  });
  return { ...outcome, promised: promise.size, late };
}

/** Plain FIFO: the oldest run first, best fit; when it does not fit, nothing behind it starts. */
function withFifo(trace: TraceRun[]): Outcome {
  return simulate(trace, (_nowMs, queued, running) => {
    const free = new Map(nodes.map((n) => [n.id, new Set(n.gpus)]));
    for (const r of running) for (const g of r.gpus) free.get(r.nodeId)!.delete(g);
    const placed: Array<{ run: TraceRun; nodeId: string; gpus: string[] }> = [];
    for (const run of queued) {
      let best: string | null = null;
      for (const [id, f] of free) if (f.size >= run.gpus && (best === null || f.size < free.get(best)!.size)) best = id;
      if (best === null) break;
      const f = free.get(best)!;
      const gpus = [...f].slice(0, run.gpus);
      for (const g of gpus) f.delete(g);
      placed.push({ run, nodeId: best, gpus });
    }
    return placed;
  });
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function report(name: string, trace: TraceRun[], o: Outcome) {
  const lastArrive = trace[trace.length - 1]!.arriveMs;
  const first = trace[0]!.arriveMs;
  let busyMs = 0;
  for (const run of trace) {
    const start = o.startMs.get(run.id)!;
    busyMs += run.gpus * Math.max(0, Math.min(start + run.durationMs, lastArrive) - Math.min(start, lastArrive));
  }
  const utilisation = busyMs / (NODES * GPUS_PER_NODE * (lastArrive - first));
  const waits = trace.map((run) => o.startMs.get(run.id)! - run.arriveMs).sort((a, b) => a - b);
  const bigWaits = trace.filter((run) => run.gpus === 8).map((run) => o.startMs.get(run.id)! - run.arriveMs);
  const mean = waits.reduce((a, b) => a + b, 0) / waits.length;
  const fig = {
    utilisation,
    meanMin: mean / MIN,
    p95Min: quantile(waits, 0.95) / MIN,
    max8Min: Math.max(...bigWaits) / MIN,
    p95of8Min: quantile([...bigWaits].sort((a, b) => a - b), 0.95) / MIN,
  };
  const promises = o.promised ? `; ${o.promised} runs given a start time, ${o.late} started more than a round after it` : '';
  console.log(
    `  ${name.padEnd(8)} utilisation ${(100 * fig.utilisation).toFixed(2)} %   wait mean ${fig.meanMin.toFixed(1)} min, p95 ${fig.p95Min.toFixed(1)} min   ` +
      `8-GPU runs: largest wait ${fig.max8Min.toFixed(1)} min, p95 ${fig.p95of8Min.toFixed(1)} min   ` +
      `(${o.rounds} rounds, ${(o.planMs / o.rounds).toFixed(2)} ms each${promises})`,
  );
  return fig;
}

function main(): void {
  const trace = makeTrace(RUNS, SEED);
  const spanH = (trace[trace.length - 1]!.arriveMs - trace[0]!.arriveMs) / HOUR;
  const sizes = [1, 2, 4, 8].map((g) => `${g}-GPU ${trace.filter((r) => r.gpus === g).length}`).join(', ');
  console.log(
    `schedule trace: ${RUNS.toLocaleString('en')} runs (${sizes}) from ${USERS} users over ${spanH.toFixed(1)} h, ` +
      `${NODES} nodes x ${GPUS_PER_NODE} GPUs, offered load ${Math.round(LOAD * 100)} %, seed ${SEED}`,
  );
  const planner = report('planner', trace, withPlanner(trace));
  const fifo = report('FIFO', trace, withFifo(trace));
  const goals = [
    [`utilisation >= 90 %`, planner.utilisation >= 0.9],
    [`p95 wait below FIFO's`, planner.p95Min < fifo.p95Min],
    [`no 8-GPU run waits longer than under FIFO`, planner.max8Min <= fifo.max8Min],
  ] as const;
  for (const [goal, met] of goals) console.log(`  goal: ${goal.padEnd(44)} ${met ? 'met' : 'NOT met'}`);
}

main();
