/**
 * Fair share on decayed GPU-hours (Slurm's `PriorityDecayHalfLife`): what a user ran counts less the
 * longer ago it ran, halving every `halfLifeHours`. A user who ran 500 GPU-hours last month and a user
 * who ran nothing are not equals today, though both may have nothing running right now; a week-long
 * half-life forgives the month, not yesterday.
 *
 * A run that used `g` GPUs from `start` to `end` adds, at time `now`,
 *
 *   g · ∫[start, end] 2^(-(now - t)/h) dt  =  g · h/ln 2 · (2^(-(now - end)/h) − 2^(-(now - start)/h))
 *
 * GPU-hours (h the half-life in hours, times in hours): the exact integral, so a run that has just
 * ended counts its full length and one that ended a half-life ago counts half, with no step at a
 * round's edge. A run still running counts up to `now`. Both the leader (from the store, each round)
 * and the trace benchmark (incrementally, `UsageLedger`) use these numbers; the planner only reads them.
 */

/** Default half-life of used GPU-hours: one week (Slurm's default is also 7 days). */
export const DEFAULT_FAIR_SHARE_HALF_LIFE_HOURS = 168;

const HOUR_MS = 3_600_000;

/** A span of GPU use: `gpus` GPUs from `startMs` to `endMs` (epoch ms). */
export interface GpuUse {
  user: string;
  gpus: number;
  startMs: number;
  endMs: number;
}

/** Decayed GPU-hours of one span at `nowMs`; a span ending after `nowMs` counts up to `nowMs`. */
export function decayedGpuHours(use: Omit<GpuUse, 'user'>, nowMs: number, halfLifeHours: number): number {
  checkHalfLife(halfLifeHours);
  const end = Math.min(use.endMs, nowMs);
  if (use.gpus <= 0 || !(end > use.startMs)) return 0;
  const k = Math.LN2 / halfLifeHours; // decay per hour
  const ageEnd = (nowMs - end) / HOUR_MS;
  const ageStart = (nowMs - use.startMs) / HOUR_MS;
  return (use.gpus / k) * (Math.exp(-k * ageEnd) - Math.exp(-k * ageStart));
}

/** Each user's decayed GPU-hours at `nowMs` over all their spans (users without use are absent). */
export function decayedUsage(uses: Iterable<GpuUse>, nowMs: number, halfLifeHours: number): Record<string, number> {
  checkHalfLife(halfLifeHours);
  const usage: Record<string, number> = {};
  for (const use of uses) {
    const hours = decayedGpuHours(use, nowMs, halfLifeHours);
    if (hours > 0) usage[use.user] = (usage[use.user] ?? 0) + hours;
  }
  return usage;
}

/**
 * Decayed usage kept incrementally: one number per user at a reference time, decayed on read. Adding
 * a finished span costs O(1), reading every user O(U), so a simulation over 20,000 runs does not sum
 * every span again each round. Spans still running are passed to `usageAt` as `running`.
 */
export class UsageLedger {
  private readonly settled = new Map<string, { hours: number; atMs: number }>();

  constructor(private readonly halfLifeHours: number = DEFAULT_FAIR_SHARE_HALF_LIFE_HOURS) {
    checkHalfLife(halfLifeHours);
  }

  /** Fold in a finished span (its `endMs` at or before the next read). */
  add(use: GpuUse): void {
    const hours = decayedGpuHours(use, use.endMs, this.halfLifeHours);
    if (hours <= 0) return;
    const entry = this.settled.get(use.user);
    if (!entry) {
      this.settled.set(use.user, { hours, atMs: use.endMs });
      return;
    }
    // Bring both to the later of the two times, then add.
    const at = Math.max(entry.atMs, use.endMs);
    entry.hours = this.decay(entry.hours, at - entry.atMs) + this.decay(hours, at - use.endMs);
    entry.atMs = at;
  }

  /** Every user's decayed GPU-hours at `nowMs`, counting `running` spans up to `nowMs`. */
  usageAt(nowMs: number, running: Iterable<GpuUse> = []): Record<string, number> {
    const usage: Record<string, number> = {};
    for (const [user, { hours, atMs }] of this.settled) usage[user] = this.decay(hours, Math.max(0, nowMs - atMs));
    for (const use of running) {
      const hours = decayedGpuHours(use, nowMs, this.halfLifeHours);
      if (hours > 0) usage[use.user] = (usage[use.user] ?? 0) + hours;
    }
    return usage;
  }

  private decay(hours: number, ms: number): number {
    return hours * Math.pow(2, -ms / HOUR_MS / this.halfLifeHours);
  }
}

function checkHalfLife(halfLifeHours: number): void {
  if (!(halfLifeHours > 0) || !Number.isFinite(halfLifeHours)) {
    throw new RangeError(`the fair-share half-life must be a positive number of hours (got ${halfLifeHours})`);
  }
}
