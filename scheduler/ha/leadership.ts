/**
 * Who of several `secd leader` processes is active (DESIGN §11): a loop over the lease row
 * (storage/sql/leader-lease.ts) that a standby tries to acquire and the active leader renews, both
 * every third of `ha.lease_ms`, and the one door every state change of the active leader goes
 * through (`inFencedTransaction`, storage/sql/fencing.ts).
 *
 * Choices made here:
 * - The active leader keeps its own deadline on the monotonic clock (performance.now, never the
 *   wall clock, which NTP may step): the moment an acquire or renewal was SENT plus 90% of the
 *   lease. The database sets the expiry later than that send, so the deadline falls before the
 *   lease ends by the database's clock; the 10% absorbs the two clocks running at slightly
 *   different rates. When the deadline passes without a renewal the leader stops leading at once
 *   and tells its listeners (active → standby), so no planning, node message or status follows.
 * - The deadline is checked where it matters, not only by a timer: `isActive()` and every fenced
 *   transaction look at it first, so a process continued after SIGSTOP, whose timers all fire late,
 *   cannot act on a role it lost while stopped. Its writes are refused by the database anyway
 *   (fencing); the monotonic deadline covers what the database cannot see (node messages).
 * - Database calls of the loop run one at a time; stepping down releases the lease (best effort,
 *   after any renewal in flight) so a standby need not wait for it to expire.
 * - A standby that steps down tries again at the next tick: it may lead again, with a new epoch.
 * - A standby's next try is at the lease's expiry (plus a few ms) when that comes before the next
 *   tick: the refused acquire says how long the lease has left by the database's clock, and that
 *   interval, measured from the moment the answer arrived on the monotonic clock, is what it waits.
 *   A takeover then follows the expiry within a round trip instead of up to a renewal later
 *   (test/bench/failover.ts); a holder that renews meanwhile just refuses that try.
 */
import type { Transaction } from 'kysely';
import { errorText } from '../common/errors.js';
import type { Log } from '../common/log.js';
import { FencedOut, inFencedTransaction, isFencedOut } from '../../storage/sql/fencing.js';
import { LeaderLease } from '../../storage/sql/leader-lease.js';
import type { StateDatabase } from '../../storage/sql/state-database.js';
import type { StateTables } from '../../storage/sql/state-tables.js';

/** What a leader process is now. */
export type LeaderRole = 'active' | 'standby';

/** A change of role, as listeners hear it. */
export interface RoleChange {
  role: LeaderRole;
  /** The epoch led (active) or just lost (standby). */
  epoch: number;
  /** Why, for the log: "acquired the lease", "lease not renewed before its deadline", … */
  reason: string;
}

/** What /healthz shows: the role, and the newest epoch this process knows of. */
export interface LeadershipView {
  role: LeaderRole;
  epoch: number;
}

/** What a Leadership is built from. */
export interface LeadershipOptions {
  state: StateDatabase;
  /** This process's name in the lease row (`<hostname>:<pid>:<random>`). */
  holder: string;
  /** `ha.lease_ms`. */
  leaseMs: number;
  log: Log;
  /** The monotonic clock in ms (default performance.now); tests may drive it. */
  monotonicMs?: () => number;
}

/** How long after the lease's expiry a standby tries (the database must see it expired). */
const EXPIRY_MARGIN_MS = 20;

/** Share of the lease the local deadline leaves for clock-rate drift between us and the database. */
const DRIFT_GUARD = 0.1;

/** The lease loop and the fenced door of one leader process. */
export class Leadership {
  readonly renewEveryMs: number;
  private readonly lease: LeaderLease;
  private readonly mono: () => number;
  private readonly listeners = new Set<(change: RoleChange) => void>();
  private role: LeaderRole = 'standby';
  private epoch: number | null = null;
  private seenEpoch = 0;
  private deadline = 0;
  private tickTimer: NodeJS.Timeout | null = null;
  private deadlineTimer: NodeJS.Timeout | null = null;
  private ops: Promise<unknown> = Promise.resolve();
  private running = false;
  /** After a refused acquire: when the lease it saw expires, on the monotonic clock (null: not known). */
  private seenExpiryMono: number | null = null;

  constructor(private readonly o: LeadershipOptions) {
    if (!Number.isInteger(o.leaseMs) || o.leaseMs < 3) throw new Error(`ha.lease_ms must be a whole number of at least 3 (got ${o.leaseMs})`);
    this.renewEveryMs = Math.floor(o.leaseMs / 3);
    this.lease = new LeaderLease(o.state);
    this.mono = o.monotonicMs ?? (() => performance.now());
  }

  /** Start contending (the first attempt is at once). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.scheduleTick(0);
  }

  /** Stop contending; an active leader steps down and releases the lease. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.tickTimer) clearTimeout(this.tickTimer);
    this.tickTimer = null;
    if (this.epoch !== null) this.stepDown(this.epoch, 'stopped');
    await this.ops.catch(() => undefined);
  }

  /** Hear every change of role; returns the function that stops it. */
  onRoleChange(listener: (change: RoleChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** True while this process leads and its monotonic deadline has not passed (checked now). */
  isActive(): boolean {
    if (this.role === 'active' && this.mono() >= this.deadline) this.stepDown(this.epoch!, 'lease not renewed before its deadline');
    return this.role === 'active';
  }

  /** Role and epoch for /healthz. */
  view(): LeadershipView {
    const role = this.isActive() ? 'active' : 'standby';
    return { role, epoch: role === 'active' ? this.epoch! : this.seenEpoch };
  }

  /**
   * Run `fn` as one state change of the active leader: refused with FencedOut (nothing written)
   * when this process is not active, and by the database when the lease has moved on — which also
   * makes this process step down at once.
   */
  async inFencedTransaction<T>(fn: (trx: Transaction<StateTables>) => Promise<T>): Promise<T> {
    if (!this.isActive()) throw new FencedOut(this.epoch ?? this.seenEpoch, null);
    const epoch = this.epoch!;
    try {
      return await inFencedTransaction(this.o.state, epoch, fn);
    } catch (err) {
      if (isFencedOut(err)) {
        if (err.lease) this.seenEpoch = Math.max(this.seenEpoch, err.lease.epoch);
        this.stepDown(epoch, `a fenced write was refused: ${err.message}`);
      }
      throw err;
    }
  }

  private scheduleTick(delayMs: number): void {
    if (!this.running) return;
    this.tickTimer = setTimeout(() => {
      this.tickTimer = null;
      const began = this.mono();
      void this.enqueue(() => (this.isActive() ? this.renewOnce() : this.acquireOnce())).then(() => {
        let wait = this.renewEveryMs - (this.mono() - began);
        if (this.role === 'standby' && this.seenExpiryMono !== null) wait = Math.min(wait, this.seenExpiryMono + EXPIRY_MARGIN_MS - this.mono());
        this.scheduleTick(Math.max(0, wait));
      });
    }, delayMs);
  }

  private enqueue(op: () => Promise<void>): Promise<void> {
    const next = this.ops.then(op, op);
    this.ops = next.catch(() => undefined);
    return next.catch(() => undefined);
  }

  private async acquireOnce(): Promise<void> {
    const sentAt = this.mono();
    try {
      const r = await this.lease.acquire(this.o.holder, this.o.leaseMs);
      this.seenEpoch = Math.max(this.seenEpoch, r.epoch);
      this.seenExpiryMono = r.won ? null : this.mono() + Math.max(0, r.expiresAtMs - r.nowMs);
      if (!r.won || !this.running) {
        if (r.won) await this.lease.release(this.o.holder, r.epoch).catch(() => undefined);
        return;
      }
      this.role = 'active';
      this.epoch = r.epoch;
      this.extendDeadline(sentAt);
      this.emit({ role: 'active', epoch: r.epoch, reason: 'acquired the lease' });
    } catch (err) {
      this.o.log.warn({ err: errorText(err) }, 'could not try the leader lease');
    }
  }

  private async renewOnce(): Promise<void> {
    const epoch = this.epoch!;
    const sentAt = this.mono();
    try {
      const ok = await this.lease.renew(this.o.holder, epoch, this.o.leaseMs);
      // Stepped down while the renewal was in flight: the release queued behind it undoes it.
      if (this.role !== 'active' || this.epoch !== epoch) return;
      if (ok) this.extendDeadline(sentAt);
      else this.stepDown(epoch, 'the lease was taken or expired before it could be renewed');
    } catch (err) {
      // Keep leading until the deadline: one failed renewal is not yet a lost lease.
      this.o.log.warn({ err: errorText(err), epoch }, 'could not renew the leader lease');
    }
  }

  private extendDeadline(sentAt: number): void {
    this.deadline = sentAt + this.o.leaseMs * (1 - DRIFT_GUARD);
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    const epoch = this.epoch!;
    this.deadlineTimer = setTimeout(
      () => {
        this.deadlineTimer = null;
        if (this.epoch === epoch) this.isActive();
      },
      Math.max(0, this.deadline - this.mono()) + 1,
    );
  }

  private stepDown(epoch: number, reason: string): void {
    if (this.role !== 'active' || this.epoch !== epoch) return;
    this.role = 'standby';
    this.epoch = null;
    this.deadline = 0;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = null;
    this.emit({ role: 'standby', epoch, reason });
    void this.enqueue(async () => {
      await this.lease.release(this.o.holder, epoch).catch(() => undefined);
    });
  }

  private emit(change: RoleChange): void {
    this.o.log[change.role === 'active' ? 'info' : 'warn']({ role: change.role, epoch: change.epoch, holder: this.o.holder }, change.reason);
    for (const l of this.listeners) {
      try {
        l(change);
      } catch (err) {
        this.o.log.error({ err: errorText(err) }, 'a role-change listener threw');
      }
    }
  }
}

/** A holder name unique to this process: `<hostname>:<pid>:<random>`. */
export function holderName(hostname: string, pid: number, random: string): string {
  return `${hostname}:${pid}:${random}`.slice(0, 255);
}
