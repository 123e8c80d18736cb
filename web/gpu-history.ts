/**
 * The leader's memory of each GPU's utilisation over the last 10 minutes, for the status page's
 * charts. Samples land in fixed time buckets (mean per bucket), so the memory per GPU is a constant
 * number of buckets however often nodes report, and GPUs that stop reporting are forgotten.
 */

/** One utilisation reading of one GPU, as a node's status report carries it. */
export interface GpuSample {
  uuid: string;
  /** 0..100, or null when the hardware reports N/A (never recorded as 0). */
  utilization_pct: number | null;
}

/** Bucketed utilisation series of one GPU: `values[i]` covers `[start + i*step, start + (i+1)*step)`. */
export interface GpuSeries {
  /** Start of the oldest bucket, seconds since the epoch. */
  start: number;
  /** Bucket width in seconds. */
  step: number;
  /** Mean utilisation per bucket, whole percent (0..100; enough for a chart, and a third smaller to send), null where nothing was reported. */
  values: Array<number | null>;
}

interface Track {
  /** Bucket number (epoch ms / stepMs) of the newest bucket written. */
  last: number;
  sums: Float64Array;
  counts: Uint16Array;
}

/** Bounds of the history; the defaults are what the status page shows. */
export interface GpuHistoryOptions {
  windowMs?: number;
  stepMs?: number;
  /** GPUs tracked at most (the oldest-updated are dropped first): bounds memory whatever nodes send. */
  maxGpus?: number;
}

/** Per-GPU utilisation history, bounded in time, resolution and number of GPUs. */
export class GpuHistory {
  readonly windowMs: number;
  readonly stepMs: number;
  private readonly buckets: number;
  private readonly maxGpus: number;
  // Map iteration order is insertion order: re-inserting on each write keeps the stalest first.
  private readonly tracks = new Map<string, Track>();

  constructor(opts: GpuHistoryOptions = {}) {
    this.windowMs = opts.windowMs ?? 10 * 60_000;
    this.stepMs = opts.stepMs ?? 5_000;
    this.buckets = Math.max(1, Math.ceil(this.windowMs / this.stepMs));
    this.maxGpus = opts.maxGpus ?? 20_000;
  }

  /** Record one reading taken at `atMs`; returns the bucket's start (seconds) and its new mean (whole percent), or null when nothing was recorded. */
  record(uuid: string, utilizationPct: number | null, atMs: number): { t: number; value: number } | null {
    if (utilizationPct === null || !Number.isFinite(utilizationPct)) return null;
    const value = Math.min(100, Math.max(0, utilizationPct));
    const bucket = Math.floor(atMs / this.stepMs);
    let track = this.tracks.get(uuid);
    if (!track) {
      track = { last: bucket, sums: new Float64Array(this.buckets), counts: new Uint16Array(this.buckets) };
    } else {
      this.tracks.delete(uuid);
      if (bucket < track.last - this.buckets + 1) {
        this.tracks.set(uuid, track);
        return null; // older than the window: a late report from a node whose clock lags
      }
      this.advance(track, bucket);
    }
    this.tracks.set(uuid, track);
    if (this.tracks.size > this.maxGpus) this.tracks.delete(this.tracks.keys().next().value!);
    const slot = mod(bucket, this.buckets);
    track.sums[slot]! += value;
    if (track.counts[slot]! < 65535) track.counts[slot]! += 1;
    else track.sums[slot]! -= value;
    return { t: (bucket * this.stepMs) / 1000, value: Math.round(track.sums[slot]! / track.counts[slot]!) };
  }

  /** A GPU's series over the window ending now, or null when it has no reading in the window. */
  series(uuid: string, nowMs: number): GpuSeries | null {
    const track = this.tracks.get(uuid);
    const end = Math.floor(nowMs / this.stepMs);
    if (!track || track.last <= end - this.buckets) return null;
    const first = end - this.buckets + 1;
    const values: Array<number | null> = [];
    for (let b = first; b <= end; b++) {
      if (b > track.last || b <= track.last - this.buckets) {
        values.push(null);
        continue;
      }
      const slot = mod(b, this.buckets);
      values.push(track.counts[slot] ? Math.round(track.sums[slot]! / track.counts[slot]!) : null);
    }
    return { start: (first * this.stepMs) / 1000, step: this.stepMs / 1000, values };
  }

  /** Forget GPUs with no reading in the window (called periodically by the feed). */
  prune(nowMs: number): void {
    const end = Math.floor(nowMs / this.stepMs);
    for (const [uuid, track] of this.tracks) if (track.last <= end - this.buckets) this.tracks.delete(uuid);
  }

  /** How many GPUs are tracked. */
  get size(): number {
    return this.tracks.size;
  }

  private advance(track: Track, bucket: number): void {
    if (bucket <= track.last) return;
    const gap = Math.min(bucket - track.last, this.buckets);
    for (let i = 1; i <= gap; i++) {
      const slot = mod(track.last + i, this.buckets);
      track.sums[slot] = 0;
      track.counts[slot] = 0;
    }
    track.last = bucket;
  }
}

function mod(n: number, m: number): number {
  return ((n % m) + m) % m;
}
