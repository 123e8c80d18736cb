/**
 * When the background work of accepted pushes may start: not between two webhook answers of a burst.
 *
 * Each accepted push leaves work behind (its first commit status, then its checks: git fetches whose
 * spawns block the event loop for 2-30 ms each, fork of a large process on a loaded machine, GitLab
 * calls, SQLite writes). Started at once, that work runs while GitLab's next delivery waits: at 200
 * pushes in a row it was the webhook answer's p99. test/bench/webhook-latency.ts (split setup, 10
 * rounds on a 2-core machine shared with other test runs): accepted p99 6.9-23 ms (median 9.3) with
 * the work started at once, 3.0-11 ms (median 3.7) gated; a bare node:http server there 1.6-3.9 ms.
 * So work waits until the hooks pause for `quietMs`, or until it has waited `maxWaitMs` (a steady
 * stream of hooks must not starve verification); a single push pays `quietMs` once. The work is
 * deferred, not removed: a burst longer than `maxWaitMs` meets it (the benchmark's ignored burst,
 * right after the accepted one, does: p99 4-9.6 ms gated against 3.7-18.6 ms ungated). And at most `maxChecks` checks run at once
 * across projects (each project's own checks run one at a time anyway, in push order): a burst over
 * many projects does not start a fetch per project at the same moment.
 *
 * The clock is the process's monotonic one, not the lifecycle's: this is about the event loop, and a
 * test's frozen domain clock must not stop the work.
 */

/** How the gate paces work; see the header. */
export interface IntakeGateOptions {
  /** The pause in webhooks after which waiting work starts (ms). */
  quietMs: number;
  /** The longest any work waits for such a pause (ms). */
  maxWaitMs: number;
  /** How many checks may run at once across projects. */
  maxChecks: number;
}

/** The defaults: a pause of 10 ms, at most 1 s of waiting, 4 checks at once. */
export const INTAKE_GATE_DEFAULTS: IntakeGateOptions = { quietMs: 10, maxWaitMs: 1000, maxChecks: 4 };

/** How many waiters one turn of the loop starts. */
const RELEASE_BATCH = 4;

interface Waiter {
  since: number;
  start: () => void;
}

/** The gate of one lifecycle. */
export class IntakeGate {
  private readonly opts: IntakeGateOptions;
  private lastArrival = Number.NEGATIVE_INFINITY;
  private readonly waiting: Waiter[] = [];
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private running = 0;
  private readonly slotQueue: Array<() => void> = [];
  private opened = false;

  constructor(
    opts: Partial<IntakeGateOptions> = {},
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.opts = { ...INTAKE_GATE_DEFAULTS, ...opts };
    for (const [k, v] of Object.entries(this.opts)) {
      if (!Number.isFinite(v) || v < 0 || (k === 'maxChecks' && (!Number.isInteger(v) || v < 1))) {
        throw new Error(`IntakeGate: ${k} must be ${k === 'maxChecks' ? 'an integer of at least 1' : 'a number of ms ≥ 0'} (got ${v})`);
      }
    }
  }

  /** A webhook arrived (an accepted push, or any other delivery with the right token): the burst goes on. */
  arrived(): void {
    this.lastArrival = this.clock();
  }

  /**
   * Resolves once the hooks paused for quietMs, or maxWaitMs after `since` (default now: a check
   * passes the moment its push was accepted, so one that already waited behind its project's
   * earlier checks does not wait again); after open() (or with quietMs 0) on the next turn of the
   * loop. Never within the current turn: a webhook's answer is written first.
   */
  whenQuiet(since: number = this.clock()): Promise<void> {
    if (this.opened || this.opts.quietMs === 0) return new Promise((r) => setImmediate(r));
    return new Promise((start) => {
      this.waiting.push({ since, start });
      this.arm();
    });
  }

  /** The gate's clock now (what `whenQuiet` takes as `since`). */
  now(): number {
    return this.clock();
  }

  /** Run `fn` when one of the maxChecks slots is free. */
  async withSlot<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.opts.maxChecks) await new Promise<void>((r) => this.slotQueue.push(r));
    else this.running += 1;
    try {
      return await fn();
    } finally {
      const next = this.slotQueue.shift();
      // The slot passes straight to the next in line (running stays the same), or is freed.
      if (next) next();
      else this.running -= 1;
    }
  }

  /** Stop waiting for pauses (shutdown): whatever waits starts now, and so does anything later. */
  open(): void {
    this.opened = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
    for (const w of this.waiting.splice(0)) w.start();
  }

  private arm(): void {
    if (this.timer || this.immediate || this.waiting.length === 0) return;
    const now = this.clock();
    const quietAt = this.lastArrival + this.opts.quietMs;
    const overdueAt = Math.min(...this.waiting.map((w) => w.since)) + this.opts.maxWaitMs;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.release();
    }, Math.max(0, Math.min(quietAt, overdueAt) - now));
  }

  /**
   * Start a few waiters (in a pause the oldest, in a burst only what waited too long), then come
   * back on the next turn for more: the loop reads any hook that arrived in between first, and a
   * hook that did closes the gate again. Released all at once, 200 pushes' status posts would be
   * one long turn.
   */
  private release(): void {
    const now = this.clock();
    const quiet = now - this.lastArrival >= this.opts.quietMs;
    const ready = quiet ? this.waiting.splice(0, RELEASE_BATCH) : this.takeOverdue(now);
    for (const w of ready) w.start();
    if (ready.length > 0 && this.waiting.length > 0) {
      this.immediate = setImmediate(() => {
        this.immediate = null;
        this.release();
      });
      return;
    }
    this.arm();
  }

  private takeOverdue(now: number): Waiter[] {
    const overdue: Waiter[] = [];
    for (let i = 0; i < this.waiting.length && overdue.length < RELEASE_BATCH; ) {
      if (now - this.waiting[i]!.since >= this.opts.maxWaitMs) overdue.push(...this.waiting.splice(i, 1));
      else i++;
    }
    return overdue;
  }
}
