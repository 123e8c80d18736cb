/**
 * Where a queued run stands, in words a researcher reads on the run page and beside their commit:
 * `queued: 3rd in line for 2× H100, starts by 14:20 UTC at the latest`. Read off one plan: its
 * `waiting` list is in line order (plan.ts rule 6), its reservations carry start times.
 *
 * The line is counted per kind: GPU runs among the GPU runs waiting, CPU-only runs among the CPU-only
 * ones (they never wait for each other). A start time is said only where the plan holds one for the
 * run: every other place in the line may still be overtaken by a lighter user, so no time is promised.
 * Times are rounded up to the minute ("at the latest") and given in UTC, with the date when it is not
 * `now`'s day.
 */
import type { GpuRequest, Plan } from './plan-types.js';

/** One waiting run's place: 1-based position among waiting runs of its kind, and its start time if held. */
export interface QueuePlace {
  position: number;
  /** ISO-8601 time it starts by at the latest; null when the plan promises none. */
  startsBy: string | null;
}

/** The place of every waiting run of `plan`; `gpusOf` says how many GPUs a run asks for (0: CPU-only). */
export function queuePlaces(plan: Pick<Plan, 'waiting' | 'reservations'>, gpusOf: (runId: string) => number): Map<string, QueuePlace> {
  const startsBy = new Map(plan.reservations.flatMap((r) => (r.startsAt ? [[r.runId, r.startsAt] as const] : [])));
  const places = new Map<string, QueuePlace>();
  let gpuLine = 0;
  let cpuLine = 0;
  for (const runId of plan.waiting) {
    const position = gpusOf(runId) > 0 ? ++gpuLine : ++cpuLine;
    places.set(runId, { position, startsBy: startsBy.get(runId) ?? null });
  }
  return places;
}

/** The sentence for a queued run: its place, what it waits for, and its start time when one is held. */
export function queueNote(place: QueuePlace, gpus: number, request: GpuRequest | undefined, now: Date): string {
  const line = `queued: ${ordinal(place.position)} in line for ${wanted(gpus, request)}`;
  return place.startsBy === null ? line : `${line}, starts by ${latestTime(place.startsBy, now)} at the latest`;
}

function wanted(gpus: number, request: GpuRequest | undefined): string {
  if (gpus === 0) return 'a CPU slot';
  const what = request?.mig ?? request?.model;
  if (what) return `${gpus}× ${what}`;
  return gpus === 1 ? '1 GPU' : `${gpus} GPUs`;
}

/** 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 101st, 111th. */
export function ordinal(n: number): string {
  const tens = n % 100;
  if (tens >= 11 && tens <= 13) return `${n}th`;
  const suffix = ({ 1: 'st', 2: 'nd', 3: 'rd' } as Record<number, string>)[n % 10] ?? 'th';
  return `${n}${suffix}`;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `14:20 UTC`, or `2 Dec 14:20 UTC` on another day than `now`'s; rounded up to the minute. */
function latestTime(iso: string, now: Date): string {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new RangeError(`a start time must be an ISO-8601 time (got ${JSON.stringify(iso)})`);
  const t = new Date(Math.ceil(ms / 60_000) * 60_000);
  const hhmm = `${String(t.getUTCHours()).padStart(2, '0')}:${String(t.getUTCMinutes()).padStart(2, '0')}`;
  const sameDay = t.toISOString().slice(0, 10) === now.toISOString().slice(0, 10);
  return sameDay ? `${hhmm} UTC` : `${t.getUTCDate()} ${MONTHS[t.getUTCMonth()]} ${hhmm} UTC`;
}
