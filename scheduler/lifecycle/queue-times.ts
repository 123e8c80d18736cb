/**
 * What the planner's time rules need from the store (scheduler/plan/reservations.ts, fair-share.ts),
 * and what a planning round tells queued runs about where they stand (queue-place.ts).
 *
 * - Each queued run's `runfor`, each run in flight's start and `runfor` (its latest end), and every
 *   user's decayed GPU-hours are read in one read transaction, at planning time: derived from the
 *   store, never remembered, so a restarted leader plans as the old one did. Runs ended more than
 *   twenty half-lives ago (a millionth of their weight) are skipped.
 * - A waiting run's place goes into its `reason` (the run page and the API show it) whenever the
 *   sentence changes, and is handed to its commit status each time: commit-statuses.ts decides
 *   when GitLab gets it (at once the first time, then at most once a minute, and not at all where
 *   GitLab refuses a repeated `pending`).
 */
import type { RunRow, RunStore } from '../../storage/run-store.js';
import { IN_FLIGHT_STATES, type RunState } from '../../storage/run-states.js';
import { decayedUsage, DEFAULT_FAIR_SHARE_HALF_LIFE_HOURS, type GpuUse } from '../plan/fair-share.js';
import type { Plan, PlanSnapshot } from '../plan/plan.js';
import { queueNote, queuePlaces } from '../plan/queue-place.js';
import type { RunConfig } from '../policy/project-policy.js';
import type { LifecycleContext } from './lifecycle-context.js';

/** States of runs that ran and ended (held runs ended running; their outputs wait for review). */
const ENDED: readonly RunState[] = ['succeeded', 'failed', 'timed_out', 'cancelled', 'lost', 'held', 'withheld'];

/** `snapshot` with runfor, start times and decayed usage from the store as it is now. */
export async function withKnownTimes(
  store: RunStore,
  snapshot: PlanSnapshot,
  now: Date,
  halfLifeHours: number = DEFAULT_FAIR_SHARE_HALF_LIFE_HOURS,
): Promise<PlanSnapshot> {
  if (snapshot.queued.length === 0) return snapshot;
  const { queued, inFlight, ended } = await store.inTransaction(async (runs) => ({
    queued: await runs.inStates(['queued']),
    inFlight: await runs.inStates(IN_FLIGHT_STATES),
    ended: await runs.inStates(ENDED),
  }));
  const rows = new Map<string, RunRow>([...queued, ...inFlight].map((r) => [r.id, r]));
  const nowMs = now.getTime();
  const horizonMs = nowMs - 20 * halfLifeHours * 3_600_000;
  const uses: GpuUse[] = [];
  for (const r of [...inFlight, ...ended]) {
    if (!r.startedAt || r.gpus.length === 0) continue;
    const endMs = r.finishedAt ? Date.parse(r.finishedAt) : nowMs;
    if (endMs < horizonMs) continue;
    uses.push({ user: r.user, gpus: r.gpus.length, startMs: Date.parse(r.startedAt), endMs });
  }
  return {
    ...snapshot,
    queued: snapshot.queued.map((q) => {
      const runforMs = runforOf(rows.get(q.id));
      return runforMs === undefined ? q : { ...q, runforMs };
    }),
    running: snapshot.running.map((run) => {
      const row = rows.get(run.id);
      const runforMs = runforOf(row);
      return { ...run, startedAt: row?.startedAt ?? null, ...(runforMs === undefined ? {} : { runforMs }) };
    }),
    usage: decayedUsage(uses, nowMs, halfLifeHours),
  };
}

function runforOf(row: RunRow | undefined): number | undefined {
  const ms = (row?.config as Partial<RunConfig> | null | undefined)?.runforMs;
  return typeof ms === 'number' && ms > 0 ? ms : undefined;
}

/** Tell each waiting run of `plan` where it stands when the sentence changed: its reason, and its pending status. */
export async function postQueuePlaces(ctx: LifecycleContext, snapshot: PlanSnapshot, plan: Pick<Plan, 'waiting' | 'reservations'>, now: Date): Promise<void> {
  const { store } = ctx.deps;
  const byId = new Map(snapshot.queued.map((q) => [q.id, q]));
  const places = queuePlaces(plan, (id) => byId.get(id)?.gpus ?? 0);
  if (places.size === 0) return;
  // Rerun whole on a lock conflict: what changed is what the committed run of it found.
  const changed = await store.inTransaction(async (runs) => {
    const found: Array<{ id: string; note: string }> = [];
    for (const [id, place] of places) {
      const run = byId.get(id);
      const row = await runs.get(id);
      if (!run || row?.state !== 'queued') continue;
      const note = queueNote(place, run.gpus, run.gpuRequest, now);
      if (row.reason === note) continue;
      await runs.update(id, { reason: note });
      found.push({ id, note });
    }
    return found;
  });
  for (const { id, note } of changed) ctx.postStatus(id, 'pending', note);
}

/** The leader's `limits.fair_share_half_life_hours` where the lifecycle's settings carry it, else the default. */
export function halfLifeOf(settings: object): number {
  const value = 'fairShareHalfLifeHours' in settings ? settings.fairShareHalfLifeHours : undefined;
  return typeof value === 'number' && value > 0 ? value : DEFAULT_FAIR_SHARE_HALF_LIFE_HOURS;
}
